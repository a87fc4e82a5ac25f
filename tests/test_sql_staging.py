"""Records encoded by the state database's SQL (`engine.sqlstage`, DuckDB state): the same keys,
payloads and fingerprints as Python's encoding spelled by DuckDB's JSON writer, for every value
kind; pinned fingerprints; and a store made by the previous version moved onto the scheme
without resending anything."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest
import sqlalchemy as sa
from support import PEOPLE_SYNC, Project, track_requests

from engine import records, sqlstage
from engine.config import resolve_duckdb_url
from engine.diff import Scope
from engine.extract import Extracted, Layout, SourceBatch, encode
from engine.state import SCHEMA_VERSION, StateStore, meta, snapshot, staging

# One column of each kind a warehouse returns; the rows cover escapes, unicode, huge and tiny
# numbers, instants before 1970 with fractions, NaN and infinities, nesting and NULLs.
KINDS = """
    id VARCHAR, s VARCHAR, i INTEGER, big BIGINT, hi HUGEINT, ub UBIGINT, d DOUBLE, f FLOAT,
    dec DECIMAL(12, 2), dec0 DECIMAL(38, 0), wide DECIMAL(38, 2), ts TIMESTAMP, tstz TIMESTAMPTZ,
    tsn TIMESTAMP_NS, tsms TIMESTAMP_MS, dt DATE, b BOOLEAN, j JSON, l INTEGER[], st STRUCT(b INTEGER, a VARCHAR),
    m MAP(VARCHAR, DOUBLE), iv INTERVAL, t TIME, bl BLOB, u UUID, e ENUM('x', 'y')
"""
ROWS = """
    ('k1', 'a"b\\c' || chr(10) || chr(9) || chr(1) || chr(127) || '/é😀' || chr(8232), -7,
     -9223372036854775808, 170141183460469231731687303715884105727, 18446744073709551615,
     1e20, 3.14, 12.50, 123456789012345678901234567890, 12345678901234567.89,
     TIMESTAMP '1960-01-01 00:00:00.5', TIMESTAMPTZ '2024-05-06 07:08:09.999+02',
     TIMESTAMP_NS '1969-12-31 23:59:59.999999999', TIMESTAMP_MS '2001-02-03 04:05:06.789',
     DATE '1900-03-04', true, '{"z": [1, 2.50, {"y": null, "x": "é"}], "a": 1e300}', [3, NULL, 1],
     {'b': 2, 'a': 'q'}, MAP {'z': 1.5, 'a': 'nan'::DOUBLE}, INTERVAL '1 month 2 days 3.5 seconds',
     TIME '12:34:56.123', '\\xAA\\x00'::BLOB, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'y'),
    ('k2', '', 0, 9223372036854775807, -170141183460469231731687303715884105727, 9223372036854775808,
     0.1, 'inf'::FLOAT, -0.01, -5, 0.00, TIMESTAMP '1970-01-01', NULL, NULL, NULL, DATE '1970-01-01',
     false, '[]', [], {'b': NULL, 'a': NULL}, MAP {}, INTERVAL '-1 day', NULL, NULL, NULL, 'x'),
    ('k3', NULL, NULL, NULL, NULL, NULL, 'nan'::DOUBLE, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
     NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
    ('k4', 'x', 1, 1, 1, 1, 1e-7, -0.0, 1.00, 0, 1e20, NULL, NULL, NULL, NULL, NULL, NULL,
     'null', [NULL], NULL, NULL, NULL, NULL, NULL, NULL, NULL),
    ('k5', 'y', 2, 2, 2, 2, 1.5e300, 1e16, 99.99, 1, 1.5, NULL, NULL, NULL, NULL, NULL, NULL,
     '"text"', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)
"""
# md5 of each row's payload as the SQL writes it: a change here resends every record
PINNED = {
    "k1": "78801c7503b1ccf470e19d6ddfa11ae2",
    "k2": "5a762280c2c9c57b7d8346742aaac4f2",
    "k3": "37119d126a2726fc1d8d5245969638f0",
    "k4": "5a1135097d6e8acee0890e525957adbe",
    "k5": "312007defd8dd7dd9b15c0f6deb4bf5d",
}


def kinds_batch(tmp_path: Path) -> tuple[SourceBatch, list[str]]:
    with duckdb.connect(str(tmp_path / "kinds.duckdb")) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute(f"CREATE TABLE kinds ({KINDS})")
        conn.execute(f"INSERT INTO kinds VALUES {ROWS}")
        relation = conn.sql("SELECT * FROM kinds ORDER BY id")
        types = [str(t) for t in relation.types]
        table = relation.to_arrow_table()
        names = list(relation.columns)
    json_columns = frozenset(n for n, t in zip(names, types, strict=True) if t == "JSON")
    batch = SourceBatch(
        names, table.num_rows, arrow=table.to_batches()[0], json_columns=json_columns
    )
    return batch, names


def layout(names: list[str], keys: tuple[str, ...] = ("id",)) -> Layout:
    fields = {n: n for n in names if n not in keys}
    return Layout(
        key_columns=keys, email_keys=frozenset(), roles={}, fields=dict(sorted(fields.items()))
    )


@pytest.fixture
def store(tmp_path: Path) -> Any:
    made = StateStore(f"duckdb:///{tmp_path / 'state.duckdb'}")
    made.migrate()
    yield made
    made.dispose()


def sql_staged(store: StateStore, shape: Layout, batch: SourceBatch) -> dict[str, tuple[str, str]]:
    scope = Scope("run-sql", "kinds", "d")
    out = Extracted()
    with store.tx() as conn:
        sqlstage.stage(conn, scope, shape, batch, iter(()), out, cursor=None, compare=False)
        rows = conn.execute(
            sa.select(staging.c.key, staging.c.payload, staging.c.fingerprint).where(
                staging.c.run == scope.run
            )
        )
        return {r.key: (r.payload, r.fingerprint) for r in rows}


def python_staged(
    store: StateStore, shape: Layout, batch: SourceBatch
) -> dict[str, tuple[str, str]]:
    """Python's encoding, as the DuckDB store stages it (`engine.state._stage_duckdb`)."""
    chunk = encode(shape, batch, 0, Extracted())
    with store.tx() as conn:
        store.stage(conn, "run-python", chunk)
        rows = conn.execute(
            sa.select(staging.c.key, staging.c.payload, staging.c.fingerprint).where(
                staging.c.run == "run-python"
            )
        )
        return {r.key: (r.payload, r.fingerprint) for r in rows}


def test_sql_encodes_every_value_kind_as_python_does(store: StateStore, tmp_path: Path) -> None:
    batch, names = kinds_batch(tmp_path)
    shape = layout(names)
    by_sql, by_python = sql_staged(store, shape, batch), python_staged(store, shape, batch)
    assert set(by_sql) == {"k1", "k2", "k3", "k4", "k5"}
    for key, (payload, fingerprint) in by_sql.items():
        assert (payload, fingerprint) == by_python[key], key
        assert fingerprint == hashlib.md5(payload.encode()).hexdigest()
        # the same values as Python's rules give (the spelling of doubles aside)
        python_values = orjson.loads(
            encode(shape, batch, 0, Extracted()).payloads[sorted(by_sql).index(key)]
        )
        assert orjson.loads(payload) == python_values, key


def test_the_sql_payload_spells_values_as_pinned(store: StateStore, tmp_path: Path) -> None:
    batch, names = kinds_batch(tmp_path)
    payload, _ = sql_staged(store, layout(names), batch)["k1"]
    attributes = orjson.loads(payload)["a"]
    assert attributes["ts"] == -315619200  # floored, before 1970
    assert attributes["tsn"] == -1 and attributes["dt"] == -2203632000
    assert attributes["hi"] == "170141183460469231731687303715884105727"  # beyond 64 bits
    assert attributes["ub"] == "18446744073709551615"
    assert attributes["dec0"] == "123456789012345678901234567890"
    assert attributes["st"] == {"a": "q", "b": 2} and attributes["m"] == {"a": None, "z": 1.5}
    assert attributes["iv"] == "P1M2DT3.5S" and attributes["bl"] == "aa00"
    assert '"d":100000000000000000000.0' in payload  # DuckDB's spelling of 1e20
    assert '"st":{"a":"q","b":2}' in payload  # nested keys sorted
    staged = sql_staged(store, layout(names), batch)
    assert {key: fingerprint for key, (_, fingerprint) in staged.items()} == PINNED


@pytest.mark.parametrize("keys", [("i",), ("dt", "b"), ("ts",), ("dec0",), ("d",), ("st",)])
def test_sql_keys_are_python_keys(store: StateStore, tmp_path: Path, keys: tuple[str, ...]) -> None:
    batch, names = kinds_batch(tmp_path)
    shape = layout(names, keys)
    by_sql, by_python = sql_staged(store, shape, batch), python_staged(store, shape, batch)
    assert by_sql == by_python and by_sql


def read_state(project: Project, query: sa.Select[Any]) -> list[Any]:
    """The rows of `query` in the project's DuckDB state store."""
    store = StateStore(resolve_duckdb_url(project.state_url, project.root))
    try:
        with store.tx() as conn:
            return list(conn.execute(query).all())
    finally:
        store.dispose()


def test_a_store_of_the_previous_version_is_moved_without_resending(
    tmp_path: Path, duck_project: Project
) -> None:
    """A snapshot fingerprinted by Python's spelling (schema 5) is re-fingerprinted from its
    stored values; an unchanged run then sends nothing."""
    project = duck_project
    project.table(
        "people",
        "id VARCHAR, ratio DOUBLE, tags VARCHAR[], extra STRUCT(z INTEGER, a VARCHAR)",
        [],
    )
    project.sql(
        "INSERT INTO people VALUES ('u1', 1e20, ['a', 'b'], {'z': 1, 'a': 'x'}), "
        "('u2', 0.1, [], NULL), ('u3', 1e-7, NULL, {'z': NULL, 'a': 'é'})"
    )
    project.write_sync("people", PEOPLE_SYNC.format(behavior="mirror"))
    assert project.run_json("people")["syncs"][0]["counts"]["sent"] == 3
    store = StateStore(resolve_duckdb_url(project.state_url, project.root))
    try:
        with store.tx() as conn:  # as the previous version left it: orjson's spelling, schema 5
            for key, payload in conn.execute(sa.select(snapshot.c.key, snapshot.c.payload)).all():
                old = records.canonical(orjson.loads(payload))
                conn.execute(
                    sa.update(snapshot)
                    .where(snapshot.c.key == key)
                    .values(payload=old.decode(), fingerprint=records.fingerprint(old))
                )
            conn.execute(sa.update(meta).where(meta.c.name == "schema_version").values(value="5"))
            spelled = conn.execute(sa.select(snapshot.c.payload).where(snapshot.c.key == "u1"))
            assert "1e+20" in spelled.scalar_one()
    finally:
        store.dispose()
    requests = len(track_requests(project.emulator))
    again = project.run_json("people")["syncs"][0]
    assert again["counts"]["planned"] == 0 and again["counts"]["sent"] == 0
    assert len(track_requests(project.emulator)) == requests
    stored = dict(read_state(project, sa.select(meta.c.name, meta.c.value)))
    assert stored == {"schema_version": str(SCHEMA_VERSION), "fingerprint_scheme": "json-sql-1"}


@pytest.mark.parametrize("budget", [sqlstage.TEXT_JOIN_BYTES, 1])
def test_staging_compares_stored_payload_texts_and_fingerprints_where_none_is_stored(
    duck_project: Project, monkeypatch: pytest.MonkeyPatch, budget: int
) -> None:
    """A DuckDB store compares each row's payload with the snapshot's stored text (`by_text`),
    or, when the texts would not fit the join's memory (a budget of 1 byte), fingerprints:
    equal text is unchanged; a row stored without its text is compared by its fingerprint; a
    row whose text differs is fingerprinted, and the plan decides by fingerprints as before."""
    monkeypatch.setattr(sqlstage, "TEXT_JOIN_BYTES", budget)
    project = duck_project
    project.table(
        "people", "id VARCHAR, plan VARCHAR", [("u1", "a"), ("u2", "b"), ("u3", "c"), ("u4", "d")]
    )
    project.write_sync("people", PEOPLE_SYNC.format(behavior="upsert"))
    assert project.run_json("people")["syncs"][0]["counts"]["sent"] == 4
    store = StateStore(resolve_duckdb_url(project.state_url, project.root))
    try:
        with store.tx() as conn:
            key = snapshot.c.key
            conn.execute(sa.update(snapshot).where(key == "u2").values(payload=None))
            conn.execute(
                sa.update(snapshot).where(key == "u3").values(payload=None, fingerprint="0" * 32)
            )
            conn.execute(sa.update(snapshot).where(key == "u4").values(payload='{"a":{},"r":{}}'))
    finally:
        store.dispose()
    requests = len(track_requests(project.emulator))
    again = project.run_json("people")["syncs"][0]
    assert again["counts"]["planned"] == 1 and again["counts"]["sent"] == 1
    assert sum(r["ops"] for r in track_requests(project.emulator)[requests:]) == 1
    held = dict(read_state(project, sa.select(snapshot.c.key, snapshot.c.fingerprint)))
    assert held["u3"] != "0" * 32  # the one resent: acknowledged with its real fingerprint
    assert project.run_json("people")["syncs"][0]["counts"]["planned"] == 0
