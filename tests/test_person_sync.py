"""SPEC §4 guarantees for person syncs, end to end: DuckDB warehouse → engine → emulator over HTTP."""

from __future__ import annotations

from support import PEOPLE_SYNC, Project, emu_get, emu_post, people_table, track_requests

ROWS = [("u1", "a@x.io", "free", 1), ("u2", "b@x.io", "pro", 2), ("u3", "c@x.io", "free", None)]


def people_by_id(project: Project) -> dict[str, dict]:
    people = emu_get(project.emulator, "people")
    return {p["id"]: p for p in people if p.get("id") and not p["suppressed"]}


def test_first_run_delivers_then_unchanged_rerun_sends_nothing(project: Project) -> None:
    people_table(project, ROWS)
    project.write_sync("people", PEOPLE_SYNC.format(behavior="upsert"))
    first = project.run_json("people")
    assert first["exit_code"] == 0
    assert first["syncs"][0]["counts"]["sent"] == 3
    people = people_by_id(project)
    assert people["u1"]["attributes"]["plan"] == "free"
    assert "score" not in people["u3"]["attributes"]  # NULLs are omitted on a whole delivery
    requests = len(track_requests(project.emulator))
    again = project.run_json("people")
    assert again["syncs"][0]["counts"] == {
        "planned": 0,
        "sent": 0,
        "rejected": 0,
        "invalid": 0,
        "skipped": 0,
    }
    assert len(track_requests(project.emulator)) == requests
    assert all(not r["errors"] for r in track_requests(project.emulator))


def test_a_change_sends_only_that_records_changed_attributes(project: Project) -> None:
    people_table(project, ROWS)
    project.write_sync("people", PEOPLE_SYNC.format(behavior="upsert"))
    project.run_json("people")
    project.sql("UPDATE people SET plan = 'team' WHERE id = 'u2'")
    project.sql("UPDATE people SET score = NULL WHERE id = 'u1'")
    plan = project.json("plan", "people")["syncs"][0]
    assert plan["counts"]["update"] == 2
    changes = {s["key"]: s["changes"] for s in plan["samples"]["update"]}
    assert changes == {
        "u1": {"score": {"before": 1, "after": None}},
        "u2": {"plan": {"before": "pro", "after": "team"}},
    }
    before = len(track_requests(project.emulator))
    result = project.run_json("people")
    assert result["syncs"][0]["counts"]["sent"] == 2
    log = track_requests(project.emulator)[before:]
    assert [r["ops"] for r in log] == [2]
    people = people_by_id(project)
    assert people["u2"]["attributes"]["plan"] == "team"
    assert "score" not in people["u1"]["attributes"]  # cleared with null under nulls: clear


def test_changed_attributes_only_leave_other_attributes_alone(project: Project) -> None:
    people_table(project, ROWS)
    project.write_sync("people", PEOPLE_SYNC.format(behavior="upsert"))
    project.run_json("people")
    project.cli("request", "PUT", "/api/v1/customers/u2", "--data", '{"email": "edited@x.io"}')
    project.sql("UPDATE people SET plan = 'team' WHERE id = 'u2'")
    project.run_json("people")
    person = people_by_id(project)["u2"]
    assert person["attributes"]["plan"] == "team"
    assert person["email"] == "edited@x.io" or person["attributes"].get("email") == "edited@x.io"


def test_mirror_removes_and_the_guard_stops_before_sending(project: Project) -> None:
    people_table(project, [(f"u{i}", f"{i}@x.io", "free", i) for i in range(10)])
    project.write_sync(
        "people", PEOPLE_SYNC.format(behavior="mirror") + "guard:\n  max_removals: 2\n"
    )
    project.run_json("people")
    project.sql("DELETE FROM people WHERE id IN ('u1', 'u2', 'u3')")
    plan = project.json("plan", "people")["syncs"][0]
    assert plan["guard"] == {
        "limit": 2,
        "removals": 3,
        "would_trip": True,
        "reason": plan["guard"]["reason"],
    }
    before = len(track_requests(project.emulator))
    tripped = project.run_json("people")
    assert tripped["exit_code"] == 3 and tripped["syncs"][0]["counts"]["sent"] == 0
    assert len(track_requests(project.emulator)) == before
    allowed = project.run_json("people", "--allow-removals")
    assert allowed["exit_code"] == 0 and allowed["syncs"][0]["counts"]["sent"] == 3
    assert sorted(people_by_id(project)) == sorted(f"u{i}" for i in (0, 4, 5, 6, 7, 8, 9))


def test_mirror_with_an_empty_source_stops(project: Project) -> None:
    people_table(project, ROWS)
    project.write_sync(
        "people", PEOPLE_SYNC.format(behavior="mirror") + "guard:\n  max_removals: 100%\n"
    )
    project.run_json("people")
    people_table(project, [])
    before = len(track_requests(project.emulator))
    result = project.run_json("people")
    assert result["exit_code"] == 3
    assert "no rows" in result["syncs"][0]["message"]
    assert len(track_requests(project.emulator)) == before
    assert len(people_by_id(project)) == 3


def test_invalid_rows_are_reported_and_valid_rows_go(project: Project) -> None:
    rows = [
        *ROWS,
        (None, "n@x.io", "free", 1),
        ("dup", "d1@x.io", "free", 1),
        ("dup", "d2@x.io", "pro", 2),
    ]
    people_table(project, rows)
    project.write_sync("people", PEOPLE_SYNC.format(behavior="mirror"))
    result = project.run_json("people")
    assert result["exit_code"] == 6
    counts = result["syncs"][0]["counts"]
    assert counts["sent"] == 3 and counts["invalid"] == 2
    assert sorted(people_by_id(project)) == ["u1", "u2", "u3"]
    errors = project.json("errors", "people")["errors"]
    reasons = {e["key"]: e["reason"] for e in errors}
    assert reasons["dup"] == "duplicate key: 2 rows share it"
    assert any("NULL" in r for r in reasons.values())


def test_a_duplicated_key_is_never_removed(project: Project) -> None:
    people_table(project, ROWS)
    project.write_sync(
        "people", PEOPLE_SYNC.format(behavior="mirror") + "guard:\n  max_removals: 100%\n"
    )
    project.run_json("people")
    project.sql("INSERT INTO people VALUES ('u1', 'again@x.io', 'pro', 9)")
    result = project.run_json("people")
    assert result["exit_code"] == 6
    assert result["syncs"][0]["counts"]["planned"] == 0
    assert "u1" in people_by_id(project)


def test_bad_credentials_exit_4_and_advance_nothing(project: Project) -> None:
    people_table(project, ROWS)
    project.write_project(track_api_key="wrong-key")
    project.write_sync("people", PEOPLE_SYNC.format(behavior="upsert"))
    result = project.run_json("people")
    assert result["exit_code"] == 4
    assert "track_api_key" in result["syncs"][0]["message"]
    assert "wrong-key" not in project.stderr + str(result)
    project.write_project()
    again = project.run_json("people")
    assert again["syncs"][0]["counts"]["sent"] == 3


def test_a_column_missing_from_the_result_is_a_config_error(project: Project) -> None:
    people_table(project, ROWS)
    project.write_sync("people", PEOPLE_SYNC.format(behavior="upsert") + "fields:\n  tier: tier\n")
    result = project.run_json("people")
    assert result["exit_code"] == 2
    assert "tier" in result["syncs"][0]["message"]
    assert track_requests(project.emulator) == []


def test_a_column_too_long_for_an_attribute_name_is_a_config_error(project: Project) -> None:
    people_table(project, ROWS)
    long_name = "a" * 151
    project.write_sync(
        "people", PEOPLE_SYNC.format(behavior="upsert").replace("*", f"*, 1 AS {long_name}")
    )
    result = project.run_json("people")
    assert result["exit_code"] == 2
    assert "151 bytes; attribute names take at most 150" in result["syncs"][0]["message"]
    assert track_requests(project.emulator) == []


def test_request_starts_never_exceed_the_rate_limit(project: Project) -> None:
    people_table(project, [(f"u{i}", f"{i}@x.io", "free", i) for i in range(600)])
    project.write_project(rate_limit=40, max_batch_ops=5)
    project.write_sync("people", PEOPLE_SYNC.format(behavior="upsert"))
    result = project.run_json("people")
    assert result["syncs"][0]["requests"] == 120
    stamps = sorted(r["at"] for r in track_requests(project.emulator))
    worst = max(sum(1 for t in stamps[i:] if t - s < 1.0) for i, s in enumerate(stamps))
    assert worst <= 40


def test_429_storm_is_retried_and_delivered(project: Project) -> None:
    people_table(project, ROWS)
    project.write_project(max_retries=8)
    project.write_sync("people", PEOPLE_SYNC.format(behavior="upsert"))
    emu_post(
        project.emulator, "faults", {"script": [{"count": 3, "status": 429}], "retry_after": 0}
    )
    result = project.run_json("people")
    assert result["exit_code"] == 0
    assert result["syncs"][0]["retries"] >= 3
    assert len(people_by_id(project)) == 3


def test_destination_down_after_retries_exits_1_and_records_nothing(project: Project) -> None:
    people_table(project, ROWS)
    project.write_project(max_retries=1)
    project.write_sync("people", PEOPLE_SYNC.format(behavior="upsert"))
    emu_post(project.emulator, "faults", {"script": [{"count": 10, "status": 503}]})
    result = project.run_json("people")
    assert result["exit_code"] == 1
    assert result["syncs"][0]["counts"]["sent"] == 0
    emu_post(project.emulator, "faults", {"script": []})
    again = project.run_json("people")
    assert again["syncs"][0]["counts"]["sent"] == 3


def test_update_only_never_creates(project: Project) -> None:
    people_table(project, ROWS)
    project.cli("request", "PUT", "/api/v1/customers/u1", "--data", '{"plan": "old"}')
    project.write_sync("people", PEOPLE_SYNC.format(behavior="update_only"))
    assert project.run_json("people")["exit_code"] == 0
    assert sorted(people_by_id(project)) == ["u1"]
    assert people_by_id(project)["u1"]["attributes"]["plan"] == "free"
