"""Verification (SPEC §7.5): delivered records read back through the App API, paced at
`app_rate_limit`, compared under Customer.io's conversions; drift exits 6 and `sync errors`
lists it as kind `drift`. Customer.io answers 200 to what it then ignores: verification is how
an `_update` for an unknown person or a suppressed person comes to light."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support import PEOPLE_SYNC, Project, people_table, seed_people, track_requests

ROWS = [("u1", "A@x.io", "free", 1), ("u2", "b@x.io", "pro", 2), ("u3", "c@x.io", "free", None)]


def verify(project: Project, *args: str) -> tuple[int, dict[str, Any]]:
    code, output = project.cli("verify", *args, "--json")
    document = json.loads(output)
    assert document["exit_code"] == code
    return code, document["syncs"][0]


def drift(project: Project, sync: str) -> dict[str, str]:
    document = project.json("errors", sync)
    assert {e["kind"] for e in document["errors"]} <= {"drift"}
    return {e["key"]: e["reason"] for e in document["errors"]}


def app_requests(project: Project, since: int = 0) -> list[dict[str, Any]]:
    return [r for r in track_requests(project.emulator)[since:] if r["path"].startswith("/v1/")]


def test_a_clean_delivery_verifies_clean(project: Project) -> None:
    people_table(project, ROWS)
    project.write_sync("people", PEOPLE_SYNC.format(behavior="upsert"))
    project.run_json("people")
    code, found = verify(project, "people")
    assert code == 0, project.stderr
    assert (found["checked"], found["delivered"], found["drift"]) == (3, 3, [])
    assert found["status"] == "ok" and found["requests"] == 3
    assert drift(project, "people") == {}
    [checked, _] = project.json("history", "people")["runs"]
    assert (checked["kind"], checked["status"]) == ("verify", "ok")


def test_update_only_for_people_who_do_not_exist_is_drift(project: Project) -> None:
    seed_people(project.emulator, ["u1"])
    people_table(project, ROWS)
    project.write_sync("people", PEOPLE_SYNC.format(behavior="update_only"))
    assert project.run_json("people")["exit_code"] == 0  # Customer.io answered 200 to all
    code, found = verify(project, "people")
    assert code == 6 and found["status"] == "drift"
    assert (found["missing"], found["differ"]) == (2, 0)
    reasons = drift(project, "people")
    assert sorted(reasons) == ["u2", "u3"]
    assert reasons["u2"].startswith("missing: Customer.io has no person with id u2")
    assert "_update" in reasons["u2"]


def test_suppressed_and_changed_people_are_drift(project: Project) -> None:
    people_table(project, ROWS)
    project.write_sync("people", PEOPLE_SYNC.format(behavior="upsert"))
    project.run_json("people")
    assert project.cli("request", "POST", "/api/v1/customers/u2/suppress")[0] == 0
    changed = json.dumps({"plan": "team", "email": "a@X.IO"})  # an email differing in case only
    assert project.cli("request", "PUT", "/api/v1/customers/u1", "--data", changed)[0] == 0
    code, output = project.cli("verify", "people")
    assert code == 6
    assert "verified 3 of 3 delivered record(s): 1 missing, 1 different" in output
    reasons = drift(project, "people")
    assert sorted(reasons) == ["u1", "u2"]
    assert reasons["u1"] == 'differs: plan: delivered "free", Customer.io has "team"'
    assert reasons["u2"].startswith("missing: Customer.io has no person with id u2")


def test_verify_on_a_sync_checks_each_delivery(project: Project) -> None:
    seed_people(project.emulator, ["u1", "u2"])
    people_table(project, ROWS[:2])
    sync = PEOPLE_SYNC.format(behavior="update_only") + "verify: {sample: 10}\n"
    project.write_sync("people", sync)
    clean = project.run_json("people")["syncs"][0]
    assert clean["exit_code"] == 0 and clean["status"] == "ok"
    people_table(project, ROWS)  # u3 does not exist in Customer.io: its _update is ignored
    found = project.run_json("people")["syncs"][0]
    assert (found["exit_code"], found["status"], found["counts"]["sent"]) == (6, "drift", 1)
    assert sorted(drift(project, "people")) == ["u3"]  # only what this run delivered is read
    before = len(track_requests(project.emulator))
    assert project.run_json("people")["exit_code"] == 0  # nothing delivered: nothing read back
    assert len(track_requests(project.emulator)) == before


def test_reading_back_is_paced_at_the_app_rate_limit(duck_project: Project) -> None:
    project = duck_project
    project.write_project(app_rate_limit=4)
    people_table(project, [(f"u{i}", f"{i}@x.io", "free", i) for i in range(10)])
    project.write_sync("people", PEOPLE_SYNC.format(behavior="upsert"))
    project.run_json("people")
    before = len(track_requests(project.emulator))
    assert verify(project, "people")[0] == 0
    stamps = sorted(r["at"] for r in app_requests(project, before))
    assert len(stamps) == 10
    assert all(stamps[i + 4] - stamps[i] >= 1.0 for i in range(len(stamps) - 4))


OTHER_TYPES = {
    "devices": """\
object: device
person: {identifier: id, column: id}
key: token
platform: platform
fields: {app_version: app_version}
query: SELECT id, 'tok-' || id AS token, 'ios' AS platform, 7 AS app_version FROM people
""",
    "accounts": """\
object: object
object_type_id: 1
key: account_id
query: SELECT 'acct-' || id AS account_id, plan, score FROM people
""",
    "vips": """\
object: manual_segment
segment: VIP
identifier: email
key: email
query: SELECT email FROM people
""",
    "plans": """\
object: collection
collection: plans
query: SELECT id, plan FROM people ORDER BY id
""",
}
BREAKS = {  # a change made in Customer.io behind the sync's back, and the drift it makes
    "devices": (("DELETE", "/api/v1/customers/u2/devices/tok-u2"), '["u2","tok-u2"]'),
    "accounts": (("POST", "/api/v2/entity"), "acct-u1"),
    "vips": (("POST", "/api/v1/segments/1/remove_customers", "--query", "id_type=id"), "b@x.io"),
    "plans": (("PUT", "/v1/collections/1"), "plans"),
}
BODIES = {
    "accounts": {
        "type": "object",
        "action": "identify",
        "identifiers": {"object_type_id": "1", "object_id": "acct-u1"},
        "attributes": {"plan": "enterprise"},
    },
    "vips": {"ids": ["u2"]},
    "plans": {"data": [{"id": "u1", "plan": "free"}]},
}


@pytest.mark.parametrize("name", sorted(OTHER_TYPES))
def test_devices_objects_segments_and_collections_are_read_back(
    duck_project: Project, name: str
) -> None:
    project = duck_project
    people_table(project, ROWS)
    project.write_sync("people", PEOPLE_SYNC.format(behavior="upsert"))
    project.write_sync(name, OTHER_TYPES[name])
    assert project.run_json("--all")["exit_code"] == 0
    assert verify(project, name)[0] == 0, project.stderr
    call, key = BREAKS[name]
    data = ("--data", json.dumps(BODIES[name])) if name in BODIES else ()
    assert project.cli("request", *call, *data)[0] == 0, project.stderr
    code, found = verify(project, name)
    assert code == 6 and [d["key"] for d in found["drift"]] == [key], found


def test_events_and_relationships_cannot_be_verified(duck_project: Project) -> None:
    project = duck_project
    project.write_sync(
        "events",
        "object: event\nperson: {identifier: id, column: id}\nkey: id\nevent_name: e\n"
        "query: SELECT 'u1' AS id\n",
    )
    code, _ = project.cli("verify", "events")
    assert code == 2 and "events cannot be verified" in project.stderr
    project.write_sync(
        "events",
        "object: event\nperson: {identifier: id, column: id}\nkey: id\nevent_name: e\n"
        "verify: {sample: 5}\nquery: SELECT 'u1' AS id\n",
    )
    code, _ = project.cli("validate")
    assert code == 2 and "events.yml" in project.stderr and "cannot be verified" in project.stderr
