"""Incremental extraction (SPEC §7.2) end to end: a DuckDB warehouse with `updated_at`, the engine,
the emulator over HTTP, on both state stores."""

from __future__ import annotations

from typing import Any

import pytest
from support import Project, emu_get, track_requests

LOG_BODIES = True
T0 = "2026-01-01 00:00:00"
PEOPLE = """\
object: person
behavior: {behavior}
query: SELECT id, plan, updated_at FROM people
incremental:
  cursor: updated_at
  lookback: 1h
"""


def people(project: Project, rows: list[tuple[str, str, str]]) -> None:
    project.table("people", "id VARCHAR, plan VARCHAR, updated_at TIMESTAMP", rows)


def sent_ids(project: Project, before: int) -> list[str]:
    ops = [op for r in track_requests(project.emulator)[before:] for op in r["body"]["batch"]]
    return sorted(op["identifiers"].get("id", "") for op in ops)


def last_run(project: Project, name: str) -> dict[str, Any]:
    return project.json("history", name, "--limit", "1")["runs"][0]  # type: ignore[no-any-return]


@pytest.fixture
def synced(project: Project) -> Project:
    rows = [(f"u{i}", "free", f"2026-01-01 {10 + i}:00:00") for i in range(5)]  # u4 at 14:00
    people(project, rows)
    project.write_sync("people", PEOPLE.format(behavior="mirror"))
    first = project.run_json("people")["syncs"][0]
    assert first["mode"] == "full" and first["counts"]["sent"] == 5 and first["rows_read"] == 5
    return project


def test_an_unchanged_incremental_run_reads_only_rows_past_the_mark(synced: Project) -> None:
    before = len(track_requests(synced.emulator))
    result = synced.run_json("people")["syncs"][0]
    assert result["mode"] == "incremental" and result["counts"]["planned"] == 0
    assert result["rows_read"] == 1  # u4 (14:00) is inside the hour of look-back: read, not sent
    assert len(track_requests(synced.emulator)) == before
    run = last_run(synced, "people")
    assert (run["mode"], run["rows_read"]) == ("incremental", 1)
    assert run["cursor_from"].startswith("2026-01-01T13:00") and run["cursor_to"].startswith(
        "2026-01-01T14:00"
    )


def test_new_and_late_rows_arrive_exactly_once(synced: Project) -> None:
    synced.sql("UPDATE people SET plan = 'pro', updated_at = '2026-01-01 15:00:00' WHERE id = 'u0'")
    synced.sql("INSERT INTO people VALUES ('late', 'free', '2026-01-01 13:30:00')")  # behind the mark
    synced.sql("INSERT INTO people VALUES ('old', 'free', '2026-01-01 09:00:00')")  # past the look-back
    before = len(track_requests(synced.emulator))
    result = synced.run_json("people")["syncs"][0]
    assert result["mode"] == "incremental" and result["rows_read"] == 3
    assert sent_ids(synced, before) == ["late", "u0"]
    before = len(track_requests(synced.emulator))
    again = synced.run_json("people")["syncs"][0]
    assert again["counts"]["planned"] == 0 and len(track_requests(synced.emulator)) == before


def test_a_deleted_row_is_removed_only_by_a_full_read(synced: Project) -> None:
    synced.sql("DELETE FROM people WHERE id = 'u1'")
    incremental = synced.run_json("people")["syncs"][0]
    assert incremental["mode"] == "incremental" and incremental["counts"]["planned"] == 0
    assert "u1" in {p["id"] for p in emu_get(synced.emulator, "people")}
    synced.write_sync(  # a changed query: the next read is a full one, and removes
        "people", PEOPLE.format(behavior="mirror").replace("FROM people", "FROM people WHERE true")
    )
    full = synced.run_json("people")["syncs"][0]
    assert full["mode"] == "full" and full["counts"]["planned"] == 1
    assert "u1" not in {p["id"] for p in emu_get(synced.emulator, "people")}


def test_full_every_makes_a_read_full_again(synced: Project) -> None:
    synced.write_sync("people", PEOPLE.format(behavior="mirror") + "  full_every: 1s\n")
    import time

    time.sleep(1.1)
    assert synced.run_json("people")["syncs"][0]["mode"] == "full"
    assert synced.run_json("people")["syncs"][0]["mode"] == "incremental"


def test_incremental_events_are_sent_once_and_full_resends_none(project: Project) -> None:
    rows = [(f"e{i}", f"u{i}", f"2026-01-01 10:0{i}:00") for i in range(3)]
    project.table("clicks", "id VARCHAR, user_id VARCHAR, happened TIMESTAMP", rows)
    project.write_sync(
        "clicks",
        "object: event\nperson: {column: user_id}\nkey: id\nevent_name: click\ntimestamp: happened\n"
        "query: SELECT * FROM clicks\nincremental: {cursor: happened, lookback: 1d}\n",
    )
    assert project.run_json("clicks")["syncs"][0]["counts"]["sent"] == 3
    project.sql("INSERT INTO clicks VALUES ('e9', 'u9', '2026-01-01 10:09:00')")
    second = project.run_json("clicks")["syncs"][0]
    assert second["mode"] == "incremental" and second["counts"]["sent"] == 1
    assert second["rows_read"] == 4  # the look-back re-reads all: none is sent twice
    full = project.run_json("clicks", "--full")["syncs"][0]
    assert full["mode"] == "full" and full["counts"]["sent"] == 0
    events = emu_get(project.emulator, "events")
    assert sorted(e["name"] for e in events) == ["click"] * 4


def test_the_plan_says_how_it_reads(synced: Project) -> None:
    plan = synced.json("plan", "people")["syncs"][0]
    assert plan["read"]["mode"] == "incremental"
    assert plan["read"]["after"].startswith("2026-01-01T13:00")


def test_a_collection_cannot_read_incrementally(project: Project) -> None:
    project.write_sync(
        "plans",
        "object: collection\ncollection: plans\nquery: SELECT 1 AS a\n"
        "incremental: {cursor: a}\n",
    )
    code, _ = project.cli("validate")
    assert code == 2 and "cannot read incrementally" in project.stderr
