"""Source hashes: a DuckDB source row whose hash (with the sync's layout) matches the snapshot's is
staged without being encoded; anything that could change what is sent makes it encoded again.

They spare Python's encoding where records are encoded in Python: with a PostgreSQL state store.
A DuckDB state store encodes and compares rows by SQL (`tests/test_sql_staging.py`)."""

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

from engine import records
from engine.config import resolve_duckdb_url
from engine.state import SCHEMA_VERSION, StateStore, meta, snapshot


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres)])
def state_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """The real PostgreSQL only (a fresh schema for each test)."""
    schema = f"cio_sync_hashes_{os.getpid()}"
    yield private_schema(PG_URL, schema)
    drop_schema(PG_URL, schema)


ROWS = [("u1", "a@x.io", "free", 1), ("u2", "b@x.io", "pro", 2), ("u3", "c@x.io", None, None)]


@pytest.fixture
def encoded_rows(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """How many rows the extraction encoded since the last call."""
    calls = [0]
    original = records.fingerprint

    def counting(encoded: bytes) -> str:
        calls[0] += 1
        return original(encoded)

    monkeypatch.setattr(records, "fingerprint", counting)

    def taken() -> int:
        count, calls[0] = calls[0], 0
        return count

    return taken


def store_for(project: Project) -> StateStore:
    return StateStore(resolve_duckdb_url(project.state_url, project.root))


def sources(project: Project) -> dict[str, int | None]:
    store = store_for(project)
    try:
        with store.tx() as conn:
            rows = conn.execute(sa.select(snapshot.c.key, snapshot.c.source))
            return {r.key: r.source for r in rows}
    finally:
        store.dispose()


def delivered(project: Project, sync: str, encoded_rows: Callable[[], int]) -> dict[str, Any]:
    """Seed the people table, write the sync, run it once; the encoded-row count starts again."""
    people_table(project, ROWS)
    project.write_sync("people", sync)
    first: dict[str, Any] = project.run_json("people")["syncs"][0]
    assert first["counts"]["sent"] == 3, first["message"]
    encoded_rows()
    return first


def test_unchanged_rows_are_recognised_without_encoding(
    project: Project, encoded_rows: Callable[[], int]
) -> None:
    people_table(project, ROWS)
    project.write_sync("people", PEOPLE_SYNC.format(behavior="mirror"))
    assert project.run_json("people")["syncs"][0]["counts"]["sent"] == 3
    assert encoded_rows() == 3
    assert all(isinstance(h, int) for h in sources(project).values())

    plan = project.json("plan", "people")["syncs"][0]
    assert plan["counts"]["unchanged"] == 3 and plan["counts"]["remove"] == 0
    assert encoded_rows() == 0

    project.sql("UPDATE people SET plan = 'NULL' WHERE id = 'u3'")  # NULL → the text 'NULL'
    project.sql("DELETE FROM people WHERE id = 'u2'")
    again = project.run_json("people", "--allow-removals")["syncs"][0]
    assert again["counts"]["planned"] == 2 and again["counts"]["sent"] == 2
    assert encoded_rows() == 1  # u3 only; u1 was recognised, u2 is gone
    body = [r for r in track_requests(project.emulator)][-1]
    assert body["ops"] == 2


def test_a_changed_field_mapping_encodes_every_row_again(
    project: Project, encoded_rows: Callable[[], int]
) -> None:
    delivered(project, PEOPLE_SYNC.format(behavior="upsert"), encoded_rows)
    project.write_sync("people", PEOPLE_SYNC.format(behavior="upsert") + "fields:\n  tier: plan\n")
    requests = len(track_requests(project.emulator))
    result = project.run_json("people")["syncs"][0]
    assert encoded_rows() == 3
    assert result["counts"]["planned"] == 3
    assert track_requests(project.emulator)[-1]["ops"] == 2  # u3's tier is NULL: nothing to send
    assert len(track_requests(project.emulator)) == requests + 1
    people = {p["id"]: p["attributes"] for p in emu_get(project.emulator, "people")}
    assert (people["u1"]["tier"], people["u2"]["tier"]) == ("free", "pro")


def test_a_change_to_a_column_not_sent_is_learned_once(
    project: Project, encoded_rows: Callable[[], int]
) -> None:
    people_table(project, ROWS)
    project.write_sync("people", PEOPLE_SYNC.format(behavior="upsert") + "fields:\n  plan: plan\n")
    project.run_json("people")
    before = sources(project)
    encoded_rows()
    project.sql("UPDATE people SET score = 99 WHERE id = 'u1'")
    requests = len(track_requests(project.emulator))
    assert project.run_json("people")["syncs"][0]["counts"]["planned"] == 0
    assert encoded_rows() == 1
    after = sources(project)
    assert after["u1"] != before["u1"] and after["u2"] == before["u2"]
    assert project.run_json("people")["syncs"][0]["counts"]["planned"] == 0
    assert encoded_rows() == 0
    assert len(track_requests(project.emulator)) == requests


def test_full_runs_encode_and_send_every_row(
    project: Project, encoded_rows: Callable[[], int]
) -> None:
    delivered(project, PEOPLE_SYNC.format(behavior="upsert"), encoded_rows)
    assert project.run_json("people", "--full")["syncs"][0]["counts"]["sent"] == 3
    assert encoded_rows() == 3


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
                    "VALUES ('people', 'd', 'u1', 'f1', '{}')"
                )
            )
            conn.execute(sa.update(meta).where(meta.c.name == "schema_version").values(value="1"))
        store.migrate()
        with store.tx() as conn:
            row = conn.execute(sa.select(snapshot)).one()
            version = conn.execute(
                sa.select(meta.c.value).where(meta.c.name == "schema_version")
            ).scalar()
        assert (row.key, row.fingerprint, row.source) == ("u1", "f1", None)
        assert version == str(SCHEMA_VERSION) == "7"
    finally:
        store.dispose()


def test_a_recognised_row_and_a_changed_row_with_its_key_are_duplicates(
    project: Project, encoded_rows: Callable[[], int]
) -> None:
    delivered(project, PEOPLE_SYNC.format(behavior="mirror"), encoded_rows)
    project.sql("INSERT INTO people VALUES ('u1', 'a@x.io', 'pro', 1)")  # u1 as delivered, twice
    requests = len(track_requests(project.emulator))
    result = project.run_json("people")["syncs"][0]
    assert encoded_rows() == 1  # the new row; the delivered one is recognised by its hash
    assert result["exit_code"] == 6
    assert result["counts"]["invalid"] == 1 and result["counts"]["planned"] == 0
    assert len(track_requests(project.emulator)) == requests  # neither sent nor removed
    code, output = project.cli("errors", "people")
    assert code == 0 and "duplicate key" in output and "u1" in output


def test_a_query_ending_in_a_comment_is_still_hashed(
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
