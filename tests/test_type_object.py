"""Object syncs end to end (SPEC §2.2): v2 batch object identify and delete, with
`object_type_id` sent as a string, changed attributes only, and the mirror's guard."""

from __future__ import annotations

from typing import Any

import pytest
from support import Project, emu_get, track_requests

pytestmark = pytest.mark.usefixtures("clean_request_log")

SYNC = """\
object: object
behavior: {behavior}
object_type_id: 2
key: account_id
query: SELECT * FROM accounts
"""

ROWS = [("a1", "Acme", 10, "retail"), ("a2", "Globex", 25, None), ("a3", "Initech", 5, "it")]


LOG_BODIES = True  # the emulator keeps request bodies, to check what was sent


def accounts_table(project: Project, rows: list[tuple[Any, ...]]) -> None:
    columns = "account_id VARCHAR, name VARCHAR, seats INTEGER, industry VARCHAR"
    project.table("accounts", columns, rows)


def objects(project: Project) -> dict[str, dict[str, Any]]:
    return {o["object_id"]: o for o in emu_get(project.emulator, "objects")}


def sent_ops(project: Project, since: int) -> list[dict[str, Any]]:
    log = track_requests(project.emulator)[since:]
    assert {(r["method"], r["path"]) for r in log} <= {("POST", "/api/v2/batch")}
    return [op for r in log for op in r["body"]["batch"]]


def test_first_run_identifies_objects_then_sends_only_changes(project: Project) -> None:
    accounts_table(project, ROWS)
    project.write_sync("accounts", SYNC.format(behavior="upsert"))
    plan = project.json("plan", "accounts")["syncs"][0]
    assert (plan["object"], plan["behavior"]) == ("object", "upsert")
    assert plan["counts"]["add"] == 3
    assert plan["samples"]["add"][1] == {
        "key": "a2",
        "attributes": {"name": "Globex", "seats": 25},
    }

    first = project.run_json("accounts")
    assert first["exit_code"] == 0 and first["syncs"][0]["counts"]["sent"] == 3
    ops = sorted(sent_ops(project, 0), key=lambda op: op["identifiers"]["object_id"])
    assert ops[1] == {
        "type": "object",
        "action": "identify",
        "identifiers": {"object_type_id": "2", "object_id": "a2"},
        "attributes": {"name": "Globex", "seats": 25},
    }
    stored = objects(project)
    assert sorted(stored) == ["a1", "a2", "a3"]
    assert stored["a1"]["object_type_id"] == "2"
    assert stored["a1"]["attributes"] == {"name": "Acme", "seats": 10, "industry": "retail"}

    before = len(track_requests(project.emulator))
    again = project.run_json("accounts")
    assert again["syncs"][0]["counts"]["planned"] == 0
    assert len(track_requests(project.emulator)) == before

    project.sql("UPDATE accounts SET seats = 12 WHERE account_id = 'a1'")
    project.sql("UPDATE accounts SET industry = NULL WHERE account_id = 'a3'")
    plan = project.json("plan", "accounts")["syncs"][0]
    assert (plan["counts"]["update"], plan["counts"]["unchanged"]) == (2, 1)
    assert {s["key"]: s["changes"] for s in plan["samples"]["update"]} == {
        "a1": {"seats": {"before": 10, "after": 12}},
        "a3": {"industry": {"before": "it", "after": None}},
    }
    changed = project.run_json("accounts")
    assert changed["syncs"][0]["counts"]["sent"] == 2
    ops = sent_ops(project, before)
    assert sorted((op["identifiers"]["object_id"], op["attributes"]) for op in ops) == [
        ("a1", {"seats": 12}),
        ("a3", {"industry": None}),
    ]
    stored = objects(project)
    assert stored["a1"]["attributes"] == {"name": "Acme", "seats": 12, "industry": "retail"}
    assert stored["a3"]["attributes"] == {"name": "Initech", "seats": 5}


def test_mirror_deletes_objects_under_the_guard(project: Project) -> None:
    accounts_table(project, [(f"a{i}", f"Co {i}", i, None) for i in range(6)])
    project.write_sync("accounts", SYNC.format(behavior="mirror") + "guard:\n  max_removals: 20%\n")
    project.run_json("accounts")
    project.sql("DELETE FROM accounts WHERE account_id IN ('a1', 'a2')")
    plan = project.json("plan", "accounts")["syncs"][0]
    assert plan["counts"]["remove"] == 2
    assert sorted(s["key"] for s in plan["samples"]["remove"]) == ["a1", "a2"]
    assert plan["guard"]["limit"] == 1 and plan["guard"]["would_trip"] is True
    before = project.run_stopped_by_guard("accounts")
    assert len(objects(project)) == 6

    allowed = project.run_json("accounts", "--allow-removals")
    assert allowed["exit_code"] == 0 and allowed["syncs"][0]["counts"]["sent"] == 2
    assert sorted(
        (op["action"], op["identifiers"]["object_type_id"], op["identifiers"]["object_id"])
        for op in sent_ops(project, before)
    ) == [("delete", "2", "a1"), ("delete", "2", "a2")]
    assert sorted(objects(project)) == ["a0", "a3", "a4", "a5"]

    accounts_table(project, [])
    empty = project.run_json("accounts")
    assert empty["exit_code"] == 3 and "no rows" in empty["syncs"][0]["message"]
    assert len(objects(project)) == 4


def test_an_object_id_over_150_bytes_is_rejected_locally(project: Project) -> None:
    long_id = "é" * 75 + "x"  # 76 characters, 151 bytes of UTF-8
    accounts_table(project, [*ROWS[:2], (long_id, "Too long", 1, None)])
    project.write_sync("accounts", SYNC.format(behavior="upsert"))
    result = project.run_json("accounts")
    assert result["exit_code"] == 6
    counts = result["syncs"][0]["counts"]
    assert (counts["sent"], counts["rejected"]) == (2, 1)
    assert long_id not in {op["identifiers"]["object_id"] for op in sent_ops(project, 0)}
    errors = project.json("errors", "accounts")["errors"]
    assert [(e["key"], e["kind"]) for e in errors] == [(long_id, "rejected")]
    assert "151 bytes" in errors[0]["reason"]
    assert sorted(objects(project)) == ["a1", "a2"]
