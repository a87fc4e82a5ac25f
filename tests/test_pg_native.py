"""Warehouse-native runs on PostgreSQL (SPEC §7.1): a sync whose source is the PostgreSQL state
database stages, diffs and plans inside it (`engine.pgstage.stage_in_database`); a DuckDB source
with a PostgreSQL state store is bulk-copied into it and staged by the same SQL. Neither encodes
a row in Python (`records.fingerprint` is never called)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from support import PEOPLE_SYNC, Project, emu_get, people_table, track_requests

pytestmark = pytest.mark.postgres
LOG_BODIES = True  # the emulator keeps request bodies, to check what was sent

PG_SYNC = PEOPLE_SYNC.format(behavior="mirror") + "source: pg\n"


def pg_sql(project: Project, *statements: str) -> None:
    """Run statements in the state database (the test's own schema is on its search path)."""
    engine = sa.create_engine(project.state_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(sa.text(statement))
    engine.dispose()


def with_pg_source(project: Project) -> None:
    """The project with a second source: the state database itself."""
    path = project.root / "syncs" / "project.yml"
    document = json.loads(path.read_text())
    document["sources"]["pg"] = {"url": project.state_url}
    path.write_text(json.dumps(document, indent=2))


def bodies(project: Project, since: int) -> list[dict[str, Any]]:
    return [op for r in track_requests(project.emulator)[since:] for op in r["body"]["batch"]]


def test_a_sync_whose_source_is_the_state_database_runs_inside_it(
    pg_project: Project, encoded_rows: Callable[[], int]
) -> None:
    project = pg_project
    with_pg_source(project)
    pg_sql(
        project,
        "CREATE TABLE people (id text, email text, plan text, score double precision, "
        "joined timestamptz, ltv numeric(12, 2))",
        "INSERT INTO people VALUES ('u1', 'a@x.io', 'free', 1.5, '2024-01-02 03:04:05+00', 10.5),"
        " ('u2', 'b@x.io', 'pro', 1e20, '1960-01-01 00:00:00.5', 12.00),"
        " ('u3', 'c@x.io', NULL, 'NaN', NULL, NULL), (NULL, 'nobody@x.io', 'free', 0, NULL, 1)",
    )
    project.write_sync("people", PG_SYNC)

    first = project.run_json("people")["syncs"][0]
    assert first["counts"]["sent"] == 3 and first["counts"]["invalid"] == 1
    assert first["exit_code"] == 6  # the NULL key is reported, the rest delivered
    assert encoded_rows() == 0
    people = {p["id"]: p["attributes"] for p in emu_get(project.emulator, "people")}
    assert set(people) == {"u1", "u2", "u3"}
    assert people["u2"]["joined"] == -315619200 and people["u2"]["ltv"] == 12
    code, errors = project.cli("errors", "people")
    assert code == 0 and "NULL or empty key" in errors and "row 4 of the query's result" in errors

    before = len(track_requests(project.emulator))
    again = project.run_json("people")["syncs"][0]
    assert again["counts"]["planned"] == 0 and again["counts"]["sent"] == 0
    assert len(track_requests(project.emulator)) == before and encoded_rows() == 0

    pg_sql(project, "UPDATE people SET plan = 'team' WHERE id = 'u1'")
    changed = project.run_json("people")["syncs"][0]
    assert changed["counts"]["planned"] == 1 and changed["counts"]["sent"] == 1
    (op,) = bodies(project, before)
    assert op["identifiers"] == {"id": "u1"} and op["attributes"] == {"plan": "team"}

    pg_sql(project, "DELETE FROM people WHERE id = 'u2'")
    removed = project.run_json("people", "--allow-removals")["syncs"][0]
    assert removed["counts"]["planned"] == 1 and removed["counts"]["sent"] == 1
    assert {p["id"] for p in emu_get(project.emulator, "people")} == {"u1", "u3"}
    assert encoded_rows() == 0


def test_the_plan_explains_the_statement_that_stages_inside_the_database(
    pg_project: Project,
) -> None:
    project = pg_project
    with_pg_source(project)
    pg_sql(
        project, "CREATE TABLE people (id text, plan text)", "INSERT INTO people VALUES ('u1', 'a')"
    )
    project.write_sync("people", PG_SYNC)
    code, output = project.cli("plan", "people", "--explain")
    assert code == 0, project.stderr
    assert "INSERT INTO cio_sync_staging" in output
    assert "FROM (SELECT * FROM people) AS cio_sync_source" in output.replace("\n", "")


def test_columns_the_sql_cannot_encode_fall_back_to_python(
    pg_project: Project, encoded_rows: Callable[[], int]
) -> None:
    """A JSON column is normalised by Python's rules: the sync is encoded in Python, with the
    store's fingerprint scheme all the same (an unchanged rerun sends nothing)."""
    project = pg_project
    with_pg_source(project)
    pg_sql(
        project,
        "CREATE TABLE people (id text, extra jsonb, score double precision)",
        """INSERT INTO people VALUES ('u1', '{"b": 1.0, "a": [1e20]}', 1e20), ('u2', NULL, 0.1)""",
    )
    project.write_sync("people", PG_SYNC)
    assert project.run_json("people")["syncs"][0]["counts"]["sent"] == 2
    assert encoded_rows() == 2
    again = project.run_json("people")["syncs"][0]
    assert again["counts"]["planned"] == 0 and encoded_rows() == 2


def test_a_duckdb_source_is_copied_into_the_postgresql_state_store(
    pg_project: Project, encoded_rows: Callable[[], int]
) -> None:
    project = pg_project
    people_table(
        project,
        [("u1", "a@x.io", "free", 1), ("u2", "b@x.io", "pro", 2), (None, "c@x.io", "x", 3)],
    )
    project.write_sync("people", PEOPLE_SYNC.format(behavior="mirror"))
    first = project.run_json("people")["syncs"][0]
    assert first["counts"]["sent"] == 2 and first["counts"]["invalid"] == 1
    assert encoded_rows() == 0
    before = len(track_requests(project.emulator))
    assert project.run_json("people")["syncs"][0]["counts"]["planned"] == 0
    assert len(track_requests(project.emulator)) == before

    project.sql("UPDATE people SET score = 5 WHERE id = 'u2'")
    changed = project.run_json("people")["syncs"][0]
    assert changed["counts"]["sent"] == 1
    (op,) = bodies(project, before)
    assert op["identifiers"] == {"id": "u2"} and op["attributes"] == {"score": 5}
    assert encoded_rows() == 0


EVENTS = """\
object: event
person: {column: user_id}
key: [user_id, event_id]
event_name_column: name
filter: {event_names: [signed_up, upgraded]}
query: SELECT user_id, event_id, name, amount::text AS amount FROM events
source: pg
"""


def test_events_set_aside_in_the_database(
    pg_project: Project, encoded_rows: Callable[[], int]
) -> None:
    """NULL persons and names are invalid (each reported), names outside the filter skipped,
    by SQL; the query's casts (`::`) reach PostgreSQL as written."""
    project = pg_project
    with_pg_source(project)
    pg_sql(
        project,
        "CREATE TABLE events (user_id text, event_id int, name text, amount numeric)",
        "INSERT INTO events VALUES ('u1', 1, 'signed_up', 1.5), ('u1', 2, 'viewed', 2),"
        " (NULL, 3, 'upgraded', 3), ('u2', 4, NULL, 4), ('u2', 5, 'upgraded', NULL),"
        " ('', 6, 'upgraded', 6)",
    )
    project.write_sync("events", EVENTS)
    result = project.run_json("events")["syncs"][0]
    counts = result["counts"]
    assert (counts["sent"], counts["invalid"], counts["skipped"]) == (2, 3, 1), result
    assert result["rows_read"] == 6 and encoded_rows() == 0
    code, errors = project.cli("errors", "events")
    assert code == 0
    assert errors.count("NULL or empty key") == 2  # the person is a key part
    assert errors.count("NULL or empty event name") == 1
    events = emu_get(project.emulator, "events")
    assert sorted(e["name"] for e in events) == ["signed_up", "upgraded"]
    assert project.run_json("events")["syncs"][0]["counts"]["planned"] == 0


def test_an_incremental_read_inside_the_database(pg_project: Project) -> None:
    project = pg_project
    with_pg_source(project)
    pg_sql(
        project,
        "CREATE TABLE people (id text, plan text, updated_at timestamp)",
        "INSERT INTO people VALUES ('u1', 'free', '2026-01-01 10:00'),"
        " ('u2', 'free', '2026-01-01 11:00')",
    )
    project.write_sync(
        "people",
        "object: person\nquery: SELECT id, plan, updated_at FROM people\nsource: pg\n"
        "incremental: {cursor: updated_at}\n",
    )
    assert project.run_json("people")["syncs"][0]["counts"]["sent"] == 2
    pg_sql(
        project, "UPDATE people SET plan = 'pro', updated_at = '2026-01-01 12:00' WHERE id = 'u1'"
    )
    before = len(track_requests(project.emulator))
    again = project.run_json("people")["syncs"][0]
    assert again["counts"]["sent"] == 1 and again["rows_read"] == 1, again
    (op,) = bodies(project, before)
    assert op["identifiers"] == {"id": "u1"} and op["attributes"]["plan"] == "pro"
    last = project.json("history", "people", "--limit", "1")["runs"][0]
    assert last["mode"] == "incremental" and last["cursor_to"] == "2026-01-01T12:00:00"


def test_a_query_with_percent_signs_and_a_failing_query(pg_project: Project) -> None:
    """`%` in the query reaches PostgreSQL as written; a query PostgreSQL refuses fails the
    sync with the source's message (exit 2), not as a defect of the engine."""
    project = pg_project
    with_pg_source(project)
    pg_sql(
        project,
        "CREATE TABLE people (id text, plan text)",
        "INSERT INTO people VALUES ('u1', '50%'), ('u2', 'x')",
    )
    query = "SELECT id, plan FROM people WHERE plan LIKE '%\\%'"
    project.write_sync("people", f"object: person\nsource: pg\nquery: {query}\n")
    result = project.run_json("people")["syncs"][0]
    assert result["counts"]["sent"] == 1, result["message"]
    project.write_sync("people", "object: person\nsource: pg\nquery: SELECT nope FROM people\n")
    failed = project.run_json("people")["syncs"][0]
    assert failed["exit_code"] == 2 and "nope" in failed["message"], failed
    assert "defect" not in failed["message"]
