"""`sync plan --explain` prints the SQL a run executes (SPEC §7.1), as it ran on each database."""

from __future__ import annotations

from support import PEOPLE_SYNC, Project, people_table, track_requests

ROWS = [("u1", "a@x.io", "free", 1), ("u2", "b@x.io", "pro", 2)]


def test_the_plan_explains_its_sql_on_the_source_and_the_state_store(project: Project) -> None:
    people_table(project, ROWS)
    project.write_sync("people", PEOPLE_SYNC.format(behavior="mirror"))
    code, output = project.cli("plan", "people", "--explain")
    assert code == 0
    assert "add 2" in output
    source, _, state = output.partition("SELECT * FROM people")
    assert "-- on duckdb" in source and str(project.warehouse) in source
    # rows keyed, encoded and compared by SQL (PostgreSQL: after a bulk copy of the rows)
    assert "md5(" in state and "to_json(" in state and "FROM cio_sync_rows" in state
    if not project.state_url.startswith("duckdb"):
        assert "COPY cio_sync_rows" in state
    assert "INSERT INTO cio_sync_staging" in state and "INSERT INTO cio_sync_plan" in state
    assert "duckdb_tables()" not in output and "pg_catalog." not in output
    assert track_requests(project.emulator) == []  # explaining sends nothing


def test_an_incremental_read_shows_its_bound(project: Project) -> None:
    project.table("people", "id VARCHAR, updated_at TIMESTAMP", [("u1", "2026-01-01 10:00:00")])
    project.write_sync(
        "people",
        "object: person\nquery: SELECT * FROM people\nincremental: {cursor: updated_at, lookback: 1h}\n",
    )
    assert project.run_json("people")["exit_code"] == 0
    code, output = project.cli("plan", "people", "--explain", "--format", "markdown")
    assert code == 0
    assert "```sql" in output
    assert "WHERE updated_at > TIMESTAMP '2026-01-01 09:00:00'" in output
