"""`sync teardown NAME` (SPEC §7.5): a plan without --yes; with it, the removal of exactly what
the sync delivered, under the guard, through the runner's delivery path, then `retired`."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support import PEOPLE_SYNC, Project, emu_get, people_table, seed_people, track_requests

LOG_BODIES = True  # the emulator keeps request bodies: the removals sent are checked one by one

ROWS = [(f"u{i}", f"{i}@x.io", "free", i) for i in range(4)]


def sent_ops(project: Project, since: int) -> list[dict[str, Any]]:
    log = track_requests(project.emulator)[since:]
    return [op for r in log if r["path"] == "/api/v2/batch" for op in r["body"]["batch"]]


def listed(project: Project) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in project.json("list")["syncs"]}


def live_ids(project: Project) -> set[str]:
    return {p["id"] for p in emu_get(project.emulator, "people") if not p["suppressed"]}


def delivered_people(project: Project, behavior: str = "upsert") -> None:
    seed_people(project.emulator, ["outsider"])  # a person this sync never delivered
    people_table(project, ROWS)
    project.write_sync("people", PEOPLE_SYNC.format(behavior=behavior))
    assert project.run_json("people")["exit_code"] == 0


def test_teardown_without_yes_is_a_plan_that_sends_nothing(project: Project) -> None:
    delivered_people(project)
    before = len(track_requests(project.emulator))
    code, output = project.cli("teardown", "people")
    assert code == 0, project.stderr
    assert "remove 4" in output and "WOULD STOP the run (exit 3)" in output
    assert "a plan only: `sync teardown people --yes`" in output
    plan = project.json("teardown", "people")["syncs"][0]
    assert plan["counts"]["remove"] == 4
    assert sorted(s["key"] for s in plan["samples"]["remove"]) == ["u0", "u1", "u2", "u3"]
    assert "4 person delete" in plan["calls"][0]["summary"]
    assert len(track_requests(project.emulator)) == before  # nothing sent, no App API call
    assert listed(project)["people"]["lifecycle"] == "active"
    assert project.run_json("people")["syncs"][0]["counts"]["planned"] == 0  # snapshot kept


def test_teardown_removes_exactly_what_the_sync_delivered_then_retires(project: Project) -> None:
    delivered_people(project)
    before = len(track_requests(project.emulator))
    stopped = project.cli("teardown", "people", "--yes")
    assert stopped[0] == 3 and "removals exceed guard.max_removals" in project.stderr
    assert len(track_requests(project.emulator)) == before  # the guard sent nothing
    assert listed(project)["people"]["lifecycle"] == "active"
    code, output = project.cli("teardown", "people", "--yes", "--allow-removals")
    assert code == 0, project.stderr
    assert "'people' is retired: its snapshot is forgotten" in output
    ops = sent_ops(project, before)
    assert sorted(json.dumps(op, sort_keys=True) for op in ops) == sorted(
        json.dumps(
            {"type": "person", "action": "delete", "identifiers": {"id": f"u{i}"}}, sort_keys=True
        )
        for i in range(4)
    )
    assert live_ids(project) == {"outsider"}
    assert listed(project)["people"]["lifecycle"] == "retired"
    [teardown, run] = project.json("history", "people")["runs"]
    assert (teardown["kind"], teardown["status"], teardown["sent"]) == ("teardown", "ok", 4)
    assert run["kind"] == "run" and run["definition"] == teardown["definition"]


def test_a_retired_sync_refuses_runs_until_reset(project: Project) -> None:
    delivered_people(project)
    project.cli("teardown", "people", "--yes", "--allow-removals")
    refused = project.run_json("people")
    assert refused["exit_code"] == 2 and "is retired" in refused["syncs"][0]["message"]
    everything = project.run_json("--all")
    assert everything["syncs"] == [] and everything["exit_code"] == 0  # --all passes it over
    code, output = project.cli("teardown", "people", "--yes")
    assert code == 0 and "already retired" in output
    code, output = project.cli("reset", "people", "--yes")
    assert code == 0 and "it is active again" in output
    assert project.run_json("people")["syncs"][0]["counts"]["sent"] == 4
    assert live_ids(project) == {"outsider", "u0", "u1", "u2", "u3"}


def test_a_suppressing_mirror_suppresses_on_teardown(project: Project) -> None:
    people_table(project, ROWS[:2])
    project.write_sync(
        "people",
        PEOPLE_SYNC.format(behavior="mirror")
        + "on_remove: suppress\nguard:\n  max_removals: 100%\n",
    )
    project.run_json("people")
    before = len(track_requests(project.emulator))
    code, _ = project.cli("teardown", "people", "--yes")
    assert code == 0, project.stderr
    assert {op["action"] for op in sent_ops(project, before)} == {"suppress"}
    assert {p["id"] for p in emu_get(project.emulator, "people") if p["suppressed"]} == {"u0", "u1"}


EVERY_TYPE = {
    "devices": """\
object: device
person: {identifier: id, column: id}
key: token
platform: platform
query: SELECT id, 'tok-' || id AS token, 'ios' AS platform FROM people
""",
    "accounts": """\
object: object
object_type_id: 1
key: account_id
query: SELECT 'acct-' || id AS account_id, plan FROM people
""",
    "members": """\
object: relationship
object_type_id: 1
object_key: account_id
person: {identifier: id, column: id}
query: SELECT id, 'acct-' || id AS account_id, plan AS role FROM people
""",
    "vips": """\
object: manual_segment
segment: VIP
key: id
query: SELECT id FROM people
""",
}


def state(project: Project) -> dict[str, Any]:
    people = [p for p in emu_get(project.emulator, "people") if not p["suppressed"]]
    return {
        "devices": sorted(d["token"] for d in emu_get(project.emulator, "devices")),
        "accounts": sorted(o["object_id"] for o in emu_get(project.emulator, "objects")),
        "members": sorted(
            (r["person"]["id"], r["object_id"]) for r in emu_get(project.emulator, "relationships")
        ),
        "vips": sorted(
            m["id"] for s in emu_get(project.emulator, "segments") for m in s["members"]
        ),
        "people": sorted(p["id"] for p in people),
    }


def test_every_type_tears_down_what_it_delivered(duck_project: Project) -> None:
    project = duck_project
    people_table(project, ROWS[:2])
    project.write_sync("people", PEOPLE_SYNC.format(behavior="upsert"))
    for name, text in EVERY_TYPE.items():
        project.write_sync(name, text)
    assert project.run_json("--all")["exit_code"] == 0
    delivered = state(project)
    assert delivered["devices"] == ["tok-u0", "tok-u1"] and delivered["vips"] == ["u0", "u1"]
    for name in EVERY_TYPE:
        code, _ = project.cli("teardown", name, "--yes", "--allow-removals")
        assert code == 0, project.stderr
        now = state(project)
        assert now[name] == [], name
        assert now["people"] == ["u0", "u1"]  # nothing else was touched
    assert [s["name"] for s in emu_get(project.emulator, "segments")] == ["VIP"]  # it stays


def test_events_cannot_be_removed_and_the_sync_still_retires(duck_project: Project) -> None:
    project = duck_project
    project.write_sync(
        "events",
        "object: event\nperson: {identifier: id, column: id}\nkey: id\nevent_name: signed_up\n"
        "query: SELECT 'u' || i AS id FROM range(3) t(i)\n",
    )
    project.run_json("events")
    before = len(track_requests(project.emulator))
    code, output = project.cli("teardown", "events", "--yes")
    assert code == 0, project.stderr
    assert "events cannot be removed from Customer.io: the 3 event(s)" in output
    assert len(track_requests(project.emulator)) == before
    assert len(emu_get(project.emulator, "events")) == 3
    assert listed(project)["events"]["lifecycle"] == "retired"


def test_a_collection_teardown_deletes_the_collection(duck_project: Project) -> None:
    project = duck_project
    project.write_sync(
        "plans",
        "object: collection\ncollection: plans\nquery: SELECT 1 AS plan_id, 'Free' AS name\n",
    )
    project.run_json("plans")
    assert [c["name"] for c in emu_get(project.emulator, "collections")] == ["plans"]
    plan = project.json("teardown", "plans")["syncs"][0]
    assert "1 DELETE /v1/collections/{id}" in plan["calls"][0]["summary"]
    assert project.cli("teardown", "plans", "--yes")[0] == 3  # one removal of one: the guard
    code, _ = project.cli("teardown", "plans", "--yes", "--allow-removals")
    assert code == 0, project.stderr
    assert emu_get(project.emulator, "collections") == []


@pytest.mark.parametrize("behavior", ["update_only"])
def test_an_update_only_sync_removes_no_one(duck_project: Project, behavior: str) -> None:
    project = duck_project
    seed_people(project.emulator, ["u0", "u1"])
    people_table(project, ROWS[:2])
    project.write_sync("people", PEOPLE_SYNC.format(behavior=behavior))
    project.run_json("people")
    code, output = project.cli("teardown", "people", "--yes")
    assert code == 0 and "an update_only sync created no one" in output
    assert live_ids(project) == {"u0", "u1"}
