"""A DuckDB source with a PostgreSQL state store: its Arrow rows are bulk-copied into the state
database and keyed, encoded and compared with the snapshot by its SQL (`engine.pgstage`), as a
DuckDB state store does; Python encodes none of them (`records.fingerprint` is never called),
and anything that changes what is sent still sends it. (Source hashes, which spared Python's
encoding of unchanged rows here before, are no longer computed.)"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from support import (
    PEOPLE_SYNC,
    PG_URL,
    Project,
    drop_schema,
    emu_get,
    people_table,
    private_schema,
    track_requests,
)

from engine.config import resolve_duckdb_url
from engine.state import SCHEMA_VERSION, StateStore, meta, snapshot

# md5 of a record without attributes, as schema 8 re-fingerprints it (`engine.pgjson`)
EMPTY_FP = "595d4d286f950ab836d9cc0200b9e25d"


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres)])
def state_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The real PostgreSQL only (a fresh schema for each test)."""
    schema = f"cio_sync_copied_{os.getpid()}"
    yield private_schema(PG_URL, schema)
    drop_schema(PG_URL, schema)


ROWS = [("u1", "a@x.io", "free", 1), ("u2", "b@x.io", "pro", 2), ("u3", "c@x.io", None, None)]


def delivered(project: Project, sync: str, encoded_rows: Callable[[], int]) -> dict[str, Any]:
    """Seed the people table, write the sync, run it once; the encoded-row count starts again."""
    people_table(project, ROWS)
    project.write_sync("people", sync)
    first: dict[str, Any] = project.run_json("people")["syncs"][0]
    assert first["counts"]["sent"] == 3, first["message"]
    encoded_rows()
    return first


def test_rows_are_compared_by_sql_without_encoding(
    project: Project, encoded_rows: Callable[[], int]
) -> None:
    people_table(project, ROWS)
    project.write_sync("people", PEOPLE_SYNC.format(behavior="mirror"))
    assert project.run_json("people")["syncs"][0]["counts"]["sent"] == 3
    plan = project.json("plan", "people")["syncs"][0]
    assert plan["counts"]["unchanged"] == 3 and plan["counts"]["remove"] == 0

    project.sql("UPDATE people SET plan = 'NULL' WHERE id = 'u3'")  # NULL → the text 'NULL'
    project.sql("DELETE FROM people WHERE id = 'u2'")
    again = project.run_json("people", "--allow-removals")["syncs"][0]
    assert again["counts"]["planned"] == 2 and again["counts"]["sent"] == 2
    body = [r for r in track_requests(project.emulator)][-1]
    assert body["ops"] == 2
    assert encoded_rows() == 0


def test_a_changed_field_mapping_plans_every_row_again(
    project: Project, encoded_rows: Callable[[], int]
) -> None:
    delivered(project, PEOPLE_SYNC.format(behavior="upsert"), encoded_rows)
    project.write_sync("people", PEOPLE_SYNC.format(behavior="upsert") + "fields:\n  tier: plan\n")
    requests = len(track_requests(project.emulator))
    result = project.run_json("people")["syncs"][0]
    assert encoded_rows() == 0
    assert result["counts"]["planned"] == 3
    assert track_requests(project.emulator)[-1]["ops"] == 2  # u3's tier is NULL: nothing to send
    assert len(track_requests(project.emulator)) == requests + 1
    people = {p["id"]: p["attributes"] for p in emu_get(project.emulator, "people")}
    assert (people["u1"]["tier"], people["u2"]["tier"]) == ("free", "pro")


def test_a_change_to_a_column_not_sent_sends_nothing(
    project: Project, encoded_rows: Callable[[], int]
) -> None:
    people_table(project, ROWS)
    project.write_sync("people", PEOPLE_SYNC.format(behavior="upsert") + "fields:\n  plan: plan\n")
    project.run_json("people")
    project.sql("UPDATE people SET score = 99 WHERE id = 'u1'")
    requests = len(track_requests(project.emulator))
    assert project.run_json("people")["syncs"][0]["counts"]["planned"] == 0
    assert len(track_requests(project.emulator)) == requests
    assert encoded_rows() == 0


def test_full_runs_send_every_row(project: Project, encoded_rows: Callable[[], int]) -> None:
    delivered(project, PEOPLE_SYNC.format(behavior="upsert"), encoded_rows)
    assert project.run_json("people", "--full")["syncs"][0]["counts"]["sent"] == 3
    assert encoded_rows() == 0


def test_schema_1_state_is_migrated_keeping_its_snapshot(state_url: str, tmp_path: Any) -> None:
    url = resolve_duckdb_url(state_url, tmp_path)
    store = StateStore(url)
    try:
        store.migrate()
        with store.tx() as conn:  # make it the version-1 shape, holding one delivered record
            conn.execute(sa.text("ALTER TABLE cio_sync_snapshot DROP COLUMN source"))
            conn.execute(
                sa.text(
                    "INSERT INTO cio_sync_snapshot (sync, destination, key, fingerprint, payload) "
                    "VALUES ('people', 'd', 'u1', 'f1', '{\"a\":{},\"r\":{}}')"
                )
            )
            conn.execute(sa.update(meta).where(meta.c.name == "schema_version").values(value="1"))
        store.migrate()
        with store.tx() as conn:
            row = conn.execute(sa.select(snapshot)).one()
            version = conn.execute(
                sa.select(meta.c.value).where(meta.c.name == "schema_version")
            ).scalar()
        assert (row.key, row.fingerprint, row.source) == ("u1", EMPTY_FP, None)
        assert version == str(SCHEMA_VERSION) == "8"
    finally:
        store.dispose()


def test_a_delivered_row_and_a_changed_row_with_its_key_are_duplicates(
    project: Project, encoded_rows: Callable[[], int]
) -> None:
    delivered(project, PEOPLE_SYNC.format(behavior="mirror"), encoded_rows)
    project.sql("INSERT INTO people VALUES ('u1', 'a@x.io', 'pro', 1)")  # u1 as delivered, twice
    requests = len(track_requests(project.emulator))
    result = project.run_json("people")["syncs"][0]
    assert encoded_rows() == 0
    assert result["exit_code"] == 6
    assert result["counts"]["invalid"] == 1 and result["counts"]["planned"] == 0
    assert len(track_requests(project.emulator)) == requests  # neither sent nor removed
    code, output = project.cli("errors", "people")
    assert code == 0 and "duplicate key" in output and "u1" in output


def test_a_query_ending_in_a_comment_is_read(
    project: Project, encoded_rows: Callable[[], int]
) -> None:
    people_table(project, ROWS)
    sync = PEOPLE_SYNC.format(behavior="upsert").replace(
        "SELECT * FROM people", "SELECT * FROM people -- every person"
    )
    project.write_sync("people", sync)
    assert project.run_json("people")["syncs"][0]["counts"]["sent"] == 3
    encoded_rows()
    assert project.run_json("people")["syncs"][0]["counts"]["planned"] == 0
    assert encoded_rows() == 0
