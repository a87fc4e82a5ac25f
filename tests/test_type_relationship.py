"""Relationship syncs end to end (SPEC §2.2): keyed by (person, object), v2 batch
add_relationships / delete_relationships with `fields` as relationship attributes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support import Project, emu_get, seed_people, track_requests

pytestmark = pytest.mark.usefixtures("clean_request_log")

SYNC = """\
object: relationship
behavior: {behavior}
object_type_id: 1
object_key: account_id
person: {{identifier: id, column: user_id}}
fields: {{role: role, seat: seat_no}}
query: SELECT * FROM memberships
"""

ROWS = [
    ("u1", "a1", "admin", 1, "ignored"),
    ("u1", "a2", "member", 2, "ignored"),
    ("u2", "a1", "member", None, "ignored"),
]


LOG_BODIES = True  # the emulator keeps request bodies, to check what was sent


def memberships_table(project: Project, rows: list[tuple[Any, ...]]) -> None:
    columns = "user_id VARCHAR, account_id VARCHAR, role VARCHAR, seat_no INTEGER, note VARCHAR"
    project.table("memberships", columns, rows)


def key(person: str, object_id: str) -> str:
    """A relationship's key as plan samples and `sync errors` show it."""
    return json.dumps([person, object_id], separators=(",", ":"))


def relationships(project: Project) -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    for rel in emu_get(project.emulator, "relationships"):
        assert rel["object_type_id"] == "1"
        found[(rel["person"]["id"], rel["object_id"])] = rel["attributes"]
    return found


def sent_ops(project: Project, since: int) -> list[dict[str, Any]]:
    log = track_requests(project.emulator)[since:]
    assert {(r["method"], r["path"]) for r in log} <= {("POST", "/api/v2/batch")}
    return [op for r in log for op in r["body"]["batch"]]


def by_key(ops: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    keyed = {}
    for op in ops:
        (relation,) = op["cio_relationships"]
        keyed[(op["identifiers"]["id"], relation["identifiers"]["object_id"])] = op
    return keyed


def test_first_run_relates_people_then_sends_only_changed_attributes(project: Project) -> None:
    seed_people(project.emulator, ["u1", "u2"])
    seeded = len(track_requests(project.emulator))
    memberships_table(project, ROWS)
    project.write_sync("members", SYNC.format(behavior="upsert"))
    plan = project.json("plan", "members")["syncs"][0]
    assert (plan["object"], plan["counts"]["add"]) == ("relationship", 3)
    assert {s["key"]: s["attributes"] for s in plan["samples"]["add"]} == {
        key("u1", "a1"): {"role": "admin", "seat": 1},
        key("u1", "a2"): {"role": "member", "seat": 2},
        key("u2", "a1"): {"role": "member"},
    }

    first = project.run_json("members")
    assert first["exit_code"] == 0 and first["syncs"][0]["counts"]["sent"] == 3
    ops = by_key(sent_ops(project, seeded))
    assert ops[("u2", "a1")] == {
        "type": "person",
        "action": "add_relationships",
        "identifiers": {"id": "u2"},
        "cio_relationships": [
            {
                "identifiers": {"object_type_id": "1", "object_id": "a1"},
                "relationship_attributes": {"role": "member"},
            }
        ],
    }
    assert relationships(project) == {
        ("u1", "a1"): {"role": "admin", "seat": 1},
        ("u1", "a2"): {"role": "member", "seat": 2},
        ("u2", "a1"): {"role": "member"},
    }

    before = len(track_requests(project.emulator))
    project.sql("UPDATE memberships SET note = 'not a field'")
    again = project.run_json("members")
    assert again["syncs"][0]["counts"]["planned"] == 0
    assert len(track_requests(project.emulator)) == before

    project.sql("UPDATE memberships SET role = 'owner' WHERE user_id = 'u1' AND account_id = 'a1'")
    project.sql("UPDATE memberships SET seat_no = 7 WHERE user_id = 'u2'")
    plan = project.json("plan", "members")["syncs"][0]
    assert {s["key"]: s["changes"] for s in plan["samples"]["update"]} == {
        key("u1", "a1"): {"role": {"before": "admin", "after": "owner"}},
        key("u2", "a1"): {"seat": {"before": None, "after": 7}},
    }
    changed = project.run_json("members")
    assert changed["syncs"][0]["counts"]["sent"] == 2
    ops = by_key(sent_ops(project, before))
    assert {k: op["cio_relationships"][0]["relationship_attributes"] for k, op in ops.items()} == {
        ("u1", "a1"): {"role": "owner"},
        ("u2", "a1"): {"seat": 7},
    }
    assert relationships(project) == {
        ("u1", "a1"): {"role": "owner", "seat": 1},
        ("u1", "a2"): {"role": "member", "seat": 2},
        ("u2", "a1"): {"role": "member", "seat": 7},
    }


def test_mirror_deletes_relationships_under_the_guard(project: Project) -> None:
    seed_people(project.emulator, ["u1", "u2"])
    memberships_table(project, ROWS)
    project.write_sync("members", SYNC.format(behavior="mirror") + "guard:\n  max_removals: 1\n")
    project.run_json("members")
    memberships_table(project, ROWS[2:])
    plan = project.json("plan", "members")["syncs"][0]
    assert plan["counts"]["remove"] == 2 and plan["guard"]["would_trip"] is True
    assert sorted(s["key"] for s in plan["samples"]["remove"]) == [key("u1", "a1"), key("u1", "a2")]
    before = project.run_stopped_by_guard("members")
    assert len(relationships(project)) == 3

    allowed = project.run_json("members", "--allow-removals")
    assert allowed["exit_code"] == 0 and allowed["syncs"][0]["counts"]["sent"] == 2
    ops = by_key(sent_ops(project, before))
    assert sorted(ops) == [("u1", "a1"), ("u1", "a2")]
    assert ops[("u1", "a2")] == {
        "type": "person",
        "action": "delete_relationships",
        "identifiers": {"id": "u1"},
        "cio_relationships": [{"identifiers": {"object_type_id": "1", "object_id": "a2"}}],
    }
    assert relationships(project) == {("u2", "a1"): {"role": "member"}}
    assert len(emu_get(project.emulator, "objects")) == 2  # the objects themselves stay

    memberships_table(project, [])
    empty = project.run_json("members")
    assert empty["exit_code"] == 3 and "no rows" in empty["syncs"][0]["message"]
    assert len(relationships(project)) == 1


def test_over_long_person_and_object_ids_are_rejected_locally(project: Project) -> None:
    long_person, long_object = "p" * 151, "o" * 151
    rows = [ROWS[0], (long_person, "a1", "member", 1, ""), ("u2", long_object, "member", 1, "")]
    memberships_table(project, rows)
    project.write_sync("members", SYNC.format(behavior="upsert"))
    result = project.run_json("members")
    assert result["exit_code"] == 6
    counts = result["syncs"][0]["counts"]
    assert (counts["sent"], counts["rejected"]) == (1, 2)
    assert list(by_key(sent_ops(project, 0))) == [("u1", "a1")]
    errors = {e["key"]: e for e in project.json("errors", "members")["errors"]}
    assert errors[key(long_person, "a1")]["reason"].startswith("person id is 151 bytes")
    assert errors[key("u2", long_object)]["reason"].startswith("object id is 151 bytes")
    assert {e["kind"] for e in errors.values()} == {"rejected"}
    assert list(relationships(project)) == [("u1", "a1")]
