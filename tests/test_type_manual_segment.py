"""Manual segment syncs end to end (SPEC §2.2): the segment is found or created through the App
API, members are added and removed through v1 add_customers / remove_customers, at most 1000
ids a call."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support import Project, emu_get, seed_people, track_requests

pytestmark = pytest.mark.usefixtures("clean_request_log")

SYNC = """\
object: manual_segment
behavior: {behavior}
{segment}
identifier: {identifier}
key: {key}
query: SELECT * FROM paying
"""

IDS = ["u1", "u2", "u3", "u4", "u5"]


LOG_BODIES = True  # the emulator keeps request bodies, to check what was sent


def segment_sync(
    behavior: str = "mirror",
    segment: str = "segment: Paying customers",
    identifier: str = "id",
    key: str = "id",
    guard: str = "",
) -> str:
    text = SYNC.format(behavior=behavior, segment=segment, identifier=identifier, key=key)
    return text + (f"guard:\n  max_removals: {guard}\n" if guard else "")


def paying_table(project: Project, ids: list[str]) -> None:
    project.sql("CREATE OR REPLACE TABLE paying (id VARCHAR, email VARCHAR)")
    if ids:
        values = ", ".join(f"('{i}', '{i.upper()}@X.io ')" for i in ids)
        project.sql(f"INSERT INTO paying VALUES {values}")


def segments(project: Project) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in emu_get(project.emulator, "segments")}


def members(project: Project, name: str = "Paying customers") -> list[str]:
    return sorted(m["id"] for m in segments(project)[name]["members"])


def calls(project: Project, since: int) -> list[tuple[str, str, dict[str, str], Any]]:
    return [
        (r["method"], r["path"], r["query"], r["body"])
        for r in track_requests(project.emulator)[since:]
    ]


def test_a_named_segment_is_created_then_members_added_and_removed(project: Project) -> None:
    seed_people(project.emulator, IDS)
    paying_table(project, IDS[:3])
    project.write_sync("paying", segment_sync(guard="100%"))
    seeded = len(track_requests(project.emulator))
    plan = project.json("plan", "paying")["syncs"][0]
    assert (plan["object"], plan["behavior"]) == ("manual_segment", "mirror")
    assert plan["counts"] == {
        "add": 3,
        "update": 0,
        "remove": 0,
        "unchanged": 0,
        "invalid": 0,
        "skipped": 0,
    }
    assert [s["key"] for s in plan["samples"]["add"]] == ["u1", "u2", "u3"]
    assert len(track_requests(project.emulator)) == seeded  # plan creates no segment
    assert segments(project) == {}

    first = project.run_json("paying")
    assert first["exit_code"] == 0 and first["syncs"][0]["counts"]["sent"] == 3
    segment = segments(project)["Paying customers"]
    assert segment["type"] == "manual"
    assert calls(project, seeded) == [
        ("GET", "/v1/segments", {}, None),
        ("POST", "/v1/segments", {}, {"segment": {"name": "Paying customers"}}),
        (
            "POST",
            f"/api/v1/segments/{segment['id']}/add_customers",
            {"id_type": "id"},
            {"ids": ["u1", "u2", "u3"]},
        ),
    ]
    assert members(project) == ["u1", "u2", "u3"]

    before = len(track_requests(project.emulator))
    again = project.run_json("paying")
    assert again["syncs"][0]["counts"]["planned"] == 0
    project.sql("UPDATE paying SET email = 'changed@x.io'")  # not a key: membership is the same
    assert project.json("plan", "paying")["syncs"][0]["counts"]["unchanged"] == 3
    assert project.run_json("paying")["syncs"][0]["counts"]["planned"] == 0
    assert len(track_requests(project.emulator)) == before

    paying_table(project, ["u1", "u3", "u4"])
    plan = project.json("plan", "paying")["syncs"][0]
    assert (plan["counts"]["add"], plan["counts"]["remove"], plan["counts"]["unchanged"]) == (
        1,
        1,
        2,
    )
    assert plan["samples"]["add"] == [{"key": "u4", "attributes": {}}]
    assert plan["samples"]["remove"] == [{"key": "u2"}]
    changed = project.run_json("paying")
    assert changed["exit_code"] == 0 and changed["syncs"][0]["counts"]["sent"] == 2
    assert sorted(calls(project, before)) == [
        ("GET", "/v1/segments", {}, None),
        (
            "POST",
            f"/api/v1/segments/{segment['id']}/add_customers",
            {"id_type": "id"},
            {"ids": ["u4"]},
        ),
        (
            "POST",
            f"/api/v1/segments/{segment['id']}/remove_customers",
            {"id_type": "id"},
            {"ids": ["u2"]},
        ),
    ]
    assert members(project) == ["u1", "u3", "u4"]
    assert list(segments(project)) == ["Paying customers"]  # found by name, not created again


def test_segment_id_needs_no_app_api_and_ids_go_1000_a_call(project: Project) -> None:
    ids = [f"p{i:04d}" for i in range(2500)]
    seed_people(project.emulator, ids)
    code, out = project.cli(
        "request", "POST", "/v1/segments", "--data", '{"segment": {"name": "Big"}}'
    )
    assert code == 0
    segment_id = json.loads(out)["segment"]["id"]
    paying_table(project, ids)
    project.write_sync(
        "paying", segment_sync(behavior="upsert", segment=f"segment_id: {segment_id}")
    )
    before = len(track_requests(project.emulator))
    result = project.run_json("paying")
    assert result["exit_code"] == 0 and result["syncs"][0]["counts"]["sent"] == 2500
    log = track_requests(project.emulator)[before:]
    assert [(r["method"], r["path"], r["ops"]) for r in log] == [
        ("POST", f"/api/v1/segments/{segment_id}/add_customers", 1000),
        ("POST", f"/api/v1/segments/{segment_id}/add_customers", 1000),
        ("POST", f"/api/v1/segments/{segment_id}/add_customers", 500),
    ]
    sent = sorted(i for r in log for i in r["body"]["ids"])
    assert sent == ids
    assert len(segments(project)["Big"]["members"]) == 2500


def test_id_type_follows_the_identifier(project: Project) -> None:
    seed_people(project.emulator, IDS, email=True)
    paying_table(project, IDS[:2])
    project.write_sync("paying", segment_sync(behavior="upsert", identifier="email", key="email"))
    before = len(track_requests(project.emulator))
    assert project.run_json("paying")["exit_code"] == 0
    add = track_requests(project.emulator)[before:][-1]
    assert add["query"] == {"id_type": "email"}
    assert add["body"] == {"ids": ["u1@x.io", "u2@x.io"]}  # compared and sent as lower(trim())
    assert members(project) == ["u1", "u2"]


def test_the_guard_stops_removals_until_allowed(project: Project) -> None:
    seed_people(project.emulator, IDS)
    paying_table(project, IDS)
    project.write_sync("paying", segment_sync(guard="1"))
    project.run_json("paying")
    paying_table(project, IDS[:3])
    plan = project.json("plan", "paying")["syncs"][0]
    assert plan["guard"]["limit"] == 1 and plan["guard"]["removals"] == 2
    assert plan["guard"]["would_trip"] is True
    before = project.run_stopped_by_guard("paying")
    assert members(project) == IDS

    paying_table(project, [])
    empty = project.run_json("paying")
    assert empty["exit_code"] == 3 and "no rows" in empty["syncs"][0]["message"]
    assert len(track_requests(project.emulator)) == before

    paying_table(project, IDS[:3])
    allowed = project.run_json("paying", "--allow-removals")
    assert allowed["exit_code"] == 0 and allowed["syncs"][0]["counts"]["sent"] == 2
    removal = track_requests(project.emulator)[-1]
    assert removal["path"].endswith("/remove_customers")
    assert sorted(removal["body"]["ids"]) == ["u4", "u5"]
    assert members(project) == IDS[:3]


def test_an_id_over_150_bytes_is_rejected_locally(project: Project) -> None:
    seed_people(project.emulator, IDS[:2])
    long_id = "L" * 151
    paying_table(project, [*IDS[:2], long_id])
    project.write_sync("paying", segment_sync(behavior="upsert"))
    result = project.run_json("paying")
    assert result["exit_code"] == 6
    counts = result["syncs"][0]["counts"]
    assert (counts["sent"], counts["rejected"]) == (2, 1)
    sent = [
        i
        for r in track_requests(project.emulator)
        if r["path"].endswith("_customers")
        for i in r["body"]["ids"]
    ]
    assert long_id not in sent
    errors = project.json("errors", "paying")["errors"]
    assert [(e["key"], e["kind"]) for e in errors] == [(long_id, "rejected")]
    assert "151 bytes" in errors[0]["reason"]
    assert members(project) == IDS[:2]
