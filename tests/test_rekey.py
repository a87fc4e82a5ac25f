"""Re-keying by merge (SPEC §7.5): a person sync with `stable_key` that sees a person's identifier
change plans a `rekey` and merges the old person into the new one instead of deleting and
creating; the snapshot follows, and Customer.io keeps the person's history."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support import Project, emu_get, emu_post, track_requests

LOG_BODIES = True  # the emulator keeps request bodies: the merges sent are checked

SYNC = """\
object: person
behavior: {behavior}
identifier: email
key: email
stable_key: user_id
query: SELECT user_id, email, plan FROM users
"""

USERS = [(1, "a@x.io", "free"), (2, "b@x.io", "pro"), (3, "c@x.io", "free")]


def users_table(project: Project, rows: list[tuple[Any, ...]]) -> None:
    project.table("users", "user_id INTEGER, email VARCHAR, plan VARCHAR", rows)


def live(project: Project) -> dict[str, dict[str, Any]]:
    people = emu_get(project.emulator, "people")
    return {p["email"]: p for p in people if not p["suppressed"]}


def sent_ops(project: Project, since: int) -> list[dict[str, Any]]:
    log = track_requests(project.emulator)[since:]
    return [op for r in log if r["path"] == "/api/v2/batch" for op in r["body"]["batch"]]


def delivered_with_history(project: Project, behavior: str) -> None:
    users_table(project, USERS)
    project.write_sync("users", SYNC.format(behavior=behavior))
    assert project.run_json("users")["exit_code"] == 0
    event = json.dumps({"name": "ordered", "data": {"total": 12}})
    code, _ = project.cli("request", "POST", "/api/v1/customers/a@x.io/events", "--data", event)
    assert code == 0, project.stderr


@pytest.mark.parametrize("behavior", ["mirror", "upsert"])
def test_an_email_change_merges_the_person_into_the_new_email(
    project: Project, behavior: str
) -> None:
    delivered_with_history(project, behavior)
    users_table(project, [(1, "A2@x.io ", "pro"), (2, "b2@x.io", "pro"), USERS[2]])
    plan = project.json("plan", "users")["syncs"][0]
    assert plan["counts"] == {
        "add": 0,
        "update": 0,
        "remove": 0,
        "unchanged": 1,
        "invalid": 0,
        "skipped": 0,
        "rekey": 2,
    }
    rekeys = {s["key"]: s for s in plan["samples"]["rekey"]}
    assert rekeys["a2@x.io"]["identifier"] == {"before": "a@x.io", "after": "a2@x.io"}
    assert rekeys["a2@x.io"]["changes"] == {"plan": {"before": "free", "after": "pro"}}
    assert rekeys["b2@x.io"]["changes"] == {}
    before = len(track_requests(project.emulator))
    result = project.run_json("users")
    assert result["exit_code"] == 0 and result["syncs"][0]["counts"]["sent"] == 2
    ops = sent_ops(project, before)
    merges = [op for op in ops if op["action"] == "merge"]
    assert sorted(merges, key=lambda op: op["primary"]["email"]) == [
        {
            "type": "person",
            "action": "merge",
            "primary": {"email": "a2@x.io"},
            "secondary": {"email": "a@x.io"},
        },
        {
            "type": "person",
            "action": "merge",
            "primary": {"email": "b2@x.io"},
            "secondary": {"email": "b@x.io"},
        },
    ]
    assert sorted(op["action"] for op in ops) == ["identify", "identify", "merge", "merge"]
    people = live(project)
    assert sorted(people) == ["a2@x.io", "b2@x.io", "c@x.io"]
    assert people["a2@x.io"]["attributes"] == {"plan": "pro", "user_id": 1}
    [event] = emu_get(project.emulator, "events")
    assert event["name"] == "ordered"
    assert event["person"] == {"email": "a2@x.io", "merged_from": {"email": "a@x.io"}}
    again = project.json("plan", "users")["syncs"][0]["counts"]
    assert (again["rekey"], again["add"], again["remove"], again["unchanged"]) == (0, 0, 0, 3)


def test_the_text_and_markdown_plans_show_the_rekey(duck_project: Project) -> None:
    project = duck_project
    delivered_with_history(project, "mirror")
    users_table(project, [(1, "a2@x.io", "free"), *USERS[1:]])
    code, text = project.cli("plan", "users")
    assert code == 0 and "rekey  a@x.io → a2@x.io (merge)" in text
    code, markdown = project.cli("plan", "users", "--format", "markdown")
    assert code == 0
    assert "| add | update | remove | unchanged | invalid | skipped | rekey |" in markdown
    assert '| `a2@x.io` | _identifier (merged)_ | `"a@x.io"` | `"a2@x.io"` |' in markdown
    assert "1 person identify (rekey: the new identifier, whole)" in markdown
    assert (
        '{"type":"person","action":"merge","primary":{"email":"a2@x.io"},'
        '"secondary":{"email":"a@x.io"}}'
    ) in markdown


def test_a_new_person_and_a_departed_one_are_no_rekey(duck_project: Project) -> None:
    """Different stable keys: an add and a removal, as before."""
    project = duck_project
    users_table(project, USERS)
    project.write_sync("users", SYNC.format(behavior="mirror") + "guard: {max_removals: 1}\n")
    project.run_json("users")
    users_table(project, [*USERS[1:], (4, "d@x.io", "free")])
    counts = project.json("plan", "users")["syncs"][0]["counts"]
    assert (counts["add"], counts["remove"], counts["rekey"]) == (1, 1, 0)


def test_stable_key_is_checked(duck_project: Project) -> None:
    project = duck_project
    project.write_sync("users", SYNC.format(behavior="update_only"))
    code, _ = project.cli("validate")
    assert code == 2 and "stable_key needs a sync that creates people" in project.stderr
    project.write_sync("users", SYNC.format(behavior="upsert").replace("user_id\n", "email\n"))
    code, _ = project.cli("validate")
    assert code == 2 and "stable_key is the key column" in project.stderr


def test_a_rekey_whose_merge_failed_is_planned_again(duck_project: Project) -> None:
    """The identify was answered, the merge never was: the snapshot keeps the old key, and the
    next run identifies and merges again (both are safe to repeat)."""
    project = duck_project
    delivered_with_history(project, "upsert")
    users_table(project, [(1, "a2@x.io", "free"), *USERS[1:]])
    faults = {
        "script": [{"count": 1, "status": 200}, {"count": 3, "status": 500}],
        "script_paths": "/api/v2/batch",
    }
    emu_post(project.emulator, "faults", faults)
    failed = project.run_json("users")
    assert failed["exit_code"] == 1 and failed["syncs"][0]["counts"]["sent"] == 0
    assert project.json("plan", "users")["syncs"][0]["counts"]["rekey"] == 1
    assert project.run_json("users")["exit_code"] == 0
    assert sorted(live(project)) == ["a2@x.io", "b@x.io", "c@x.io"]
    assert project.json("plan", "users")["syncs"][0]["counts"]["rekey"] == 0


def test_adding_a_stable_key_sends_nothing(duck_project: Project) -> None:
    project = duck_project
    users_table(project, USERS)
    project.write_sync("users", SYNC.format(behavior="upsert").replace("stable_key: user_id\n", ""))
    project.run_json("users")
    project.write_sync("users", SYNC.format(behavior="upsert"))
    before = len(track_requests(project.emulator))
    result = project.run_json("users")["syncs"][0]
    assert result["exit_code"] == 0 and result["requests"] == 0
    assert len(track_requests(project.emulator)) == before
    assert project.json("plan", "users")["syncs"][0]["counts"]["unchanged"] == 3
