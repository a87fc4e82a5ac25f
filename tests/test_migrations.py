"""Schema migrations (`engine.migrations`) on state stores as earlier versions left them."""

from __future__ import annotations

import duckdb
from support import PEOPLE_SYNC, Project, people_table, track_requests

from engine.config import resolve_duckdb_url
from engine.state import SCHEMA_VERSION

# the snapshot and the plan as schema 6 created them on DuckDB: with primary keys
SCHEMA_6_TABLES = """
CREATE TABLE cio_sync_snapshot (
    sync VARCHAR NOT NULL, destination VARCHAR NOT NULL, key VARCHAR NOT NULL,
    fingerprint VARCHAR NOT NULL, payload TEXT, source BIGINT,
    PRIMARY KEY (sync, destination, key)
);
CREATE TABLE cio_sync_plan (
    run VARCHAR NOT NULL, seq BIGINT NOT NULL, op VARCHAR NOT NULL, key VARCHAR NOT NULL,
    fingerprint VARCHAR NOT NULL, payload TEXT, before TEXT, source BIGINT, prior VARCHAR,
    PRIMARY KEY (run, seq)
);
"""


def primary_keys(conn: duckdb.DuckDBPyConnection) -> set[str]:
    rows = conn.execute(
        "SELECT table_name FROM duckdb_constraints() WHERE constraint_type = 'PRIMARY KEY'"
    ).fetchall()
    return {name for (name,) in rows}


def test_a_duckdb_store_of_schema_6_loses_the_snapshots_primary_key_and_resends_nothing(
    duck_project: Project,
) -> None:
    project = duck_project
    people_table(project, [("u1", "a@x.io", "free", 1), ("u2", "b@x.io", "pro", 2)])
    project.write_sync("people", PEOPLE_SYNC.format(behavior="mirror"))
    assert project.run_json("people")["syncs"][0]["counts"]["sent"] == 2
    path = resolve_duckdb_url(project.state_url, project.root).removeprefix("duckdb:///")
    with duckdb.connect(path) as conn:  # back to schema 6's tables, rows kept
        conn.execute("CREATE TEMP TABLE held AS SELECT * FROM cio_sync_snapshot")
        conn.execute("DROP TABLE cio_sync_snapshot; DROP TABLE cio_sync_plan")
        conn.execute(SCHEMA_6_TABLES)
        conn.execute("INSERT INTO cio_sync_snapshot SELECT * FROM held")
        conn.execute("UPDATE cio_sync_meta SET value = '6' WHERE name = 'schema_version'")
        assert {"cio_sync_snapshot", "cio_sync_plan"} <= primary_keys(conn)
    requests = len(track_requests(project.emulator))

    again = project.run_json("people")["syncs"][0]

    assert again["counts"]["planned"] == 0 and len(track_requests(project.emulator)) == requests
    people_table(project, [("u1", "a@x.io", "pro", 1), ("u3", "c@x.io", "free", 3)])
    planned = project.json("plan", "people")["syncs"][0]["counts"]
    assert (planned["add"], planned["update"], planned["remove"]) == (1, 1, 1)
    changed = project.run_json("people", "--allow-removals")["syncs"][0]
    assert changed["exit_code"] == 0 and changed["counts"]["sent"] == 3
    with duckdb.connect(path, read_only=True) as conn:
        assert not {"cio_sync_snapshot", "cio_sync_plan"} & primary_keys(conn)
        version = conn.execute("SELECT value FROM cio_sync_meta WHERE name = 'schema_version'")
        assert version.fetchone() == (str(SCHEMA_VERSION),)
        keys = conn.execute("SELECT key, payload FROM cio_sync_snapshot ORDER BY key").fetchall()
    assert [key for key, _ in keys] == ["u1", "u3"]  # each once: the update replaced its row
    assert '"plan":"pro"' in keys[0][1]


def test_a_duckdb_store_of_schema_1_migrates_and_resends_nothing(duck_project: Project) -> None:
    """Schema 1 had no source hash in the snapshot; 1 → 2 adds it and remakes staging and the
    plan, which a run's own staging table must not get in the way of."""
    project = duck_project
    people_table(project, [("u1", "a@x.io", "free", 1), ("u2", "b@x.io", "pro", 2)])
    project.write_sync("people", PEOPLE_SYNC.format(behavior="mirror"))
    assert project.run_json("people")["syncs"][0]["counts"]["sent"] == 2
    path = resolve_duckdb_url(project.state_url, project.root).removeprefix("duckdb:///")
    with duckdb.connect(path) as conn:
        conn.execute("ALTER TABLE cio_sync_snapshot DROP COLUMN source")
        conn.execute("UPDATE cio_sync_meta SET value = '1' WHERE name = 'schema_version'")
    requests = len(track_requests(project.emulator))

    again = project.run_json("people")["syncs"][0]

    assert again["exit_code"] == 0 and again["counts"]["planned"] == 0
    assert len(track_requests(project.emulator)) == requests
    with duckdb.connect(path, read_only=True) as conn:
        version = conn.execute("SELECT value FROM cio_sync_meta WHERE name = 'schema_version'")
        assert version.fetchone() == (str(SCHEMA_VERSION),)
