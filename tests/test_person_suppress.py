"""Person mirror with `on_remove: suppress` (SPEC §2.2): a person who leaves the source is
suppressed (profile deleted, identifier blocked) rather than deleted, and the plan says so."""

from __future__ import annotations

import pytest
from support import PEOPLE_SYNC, Project, emu_get, people_table, track_requests

pytestmark = pytest.mark.usefixtures("clean_request_log")

SYNC = PEOPLE_SYNC.format(behavior="mirror") + "on_remove: suppress\nguard:\n  max_removals: 1\n"
ROWS = [("u1", "a@x.io", "free", 1), ("u2", "b@x.io", "pro", 2), ("u3", "c@x.io", "free", 3)]


LOG_BODIES = True  # the emulator keeps request bodies, to check what was sent


def live_ids(project: Project) -> list[str]:
    return sorted(p["id"] for p in emu_get(project.emulator, "people") if not p["suppressed"])


def test_a_removed_person_is_suppressed_not_deleted(project: Project) -> None:
    people_table(project, ROWS)
    project.write_sync("people", SYNC)
    project.run_json("people")
    people_table(project, [ROWS[0], ROWS[2]])
    plan = project.json("plan", "people")["syncs"][0]
    assert plan["counts"]["remove"] == 1 and plan["samples"]["remove"] == [{"key": "u2"}]
    assert plan["on_remove"] == "suppress"
    code, text = project.cli("plan", "people")
    assert code == 0 and "  remove u2  (suppress)\n" in text

    before = len(track_requests(project.emulator))
    result = project.run_json("people")
    assert result["exit_code"] == 0 and result["syncs"][0]["counts"]["sent"] == 1
    (request,) = track_requests(project.emulator)[before:]
    assert request["body"] == {
        "batch": [{"type": "person", "action": "suppress", "identifiers": {"id": "u2"}}]
    }
    assert live_ids(project) == ["u1", "u3"]
    suppressed = [p for p in emu_get(project.emulator, "people") if p["suppressed"]]
    assert [p["id"] for p in suppressed] == ["u2"]
    assert [s["id"] for s in emu_get(project.emulator, "suppressions")] == ["u2"]

    before = len(track_requests(project.emulator))
    assert project.run_json("people")["syncs"][0]["counts"]["planned"] == 0
    assert len(track_requests(project.emulator)) == before

    people_table(project, ROWS)  # back in the source: identified, still suppressed (SPEC §4)
    assert project.run_json("people")["syncs"][0]["counts"]["sent"] == 1
    ops = [op for r in track_requests(project.emulator)[before:] for op in r["body"]["batch"]]
    assert [(op["action"], op["identifiers"]) for op in ops] == [("identify", {"id": "u2"})]
    assert live_ids(project) == ["u1", "u3"]


def test_the_guard_stops_suppressions_until_allowed(project: Project) -> None:
    people_table(project, ROWS)
    project.write_sync("people", SYNC)
    project.run_json("people")
    people_table(project, ROWS[:1])
    project.run_stopped_by_guard("people")
    assert emu_get(project.emulator, "suppressions") == []

    allowed = project.run_json("people", "--allow-removals")
    assert allowed["exit_code"] == 0 and allowed["syncs"][0]["counts"]["sent"] == 2
    assert sorted(s["id"] for s in emu_get(project.emulator, "suppressions")) == ["u2", "u3"]
    assert live_ids(project) == ["u1"]
