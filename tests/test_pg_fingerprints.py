"""The PostgreSQL fingerprint scheme `json-sql-pg-1` (SPEC §4.9, `engine.pgjson`): the SQL of a
PostgreSQL state store and Python's encoding respelled by SQL give the same payload text, so the
same fingerprint, for every value kind, whichever way the rows came (in the database, copied from
Arrow, encoded in Python); pinned fingerprints; and a store of schema 7 (Python's orjson-1) moved
onto the scheme without resending anything."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from support import (
    PEOPLE_SYNC,
    PG_URL,
    Project,
    drop_schema,
    load_project,
    pg_available,
    private_schema,
    track_requests,
)
from test_pg_native import PG_SYNC, pg_sql, with_pg_source
from test_sql_staging import kinds_batch, layout

from engine import pgstage
from engine.diff import Scope
from engine.extract import Extracted, Layout, SourceBatch, encode, layout_for, read_source
from engine.pgjson import stage_encoded
from engine.state import SCHEMA_VERSION, StateStore, meta, snapshot, staging

pytestmark = pytest.mark.postgres

# the kinds a PostgreSQL source returns, with rows covering escapes, unicode, huge and tiny
# numbers, integral doubles, NaN and infinities, instants before 1970 with fractions, and NULLs
PG_KINDS = """
    id text, s text, v varchar(20), i2 smallint, i integer, big bigint, n numeric,
    dec numeric(12, 2), dec0 numeric(38, 0), d double precision, f real, b boolean,
    ts timestamp, tstz timestamptz, dt date
"""
PG_ROWS = r"""
    ('k1', E'a"b\\c\n\t\x01\x7f/é😀' || chr(8232), 'x', -7, -7, -9223372036854775808,
     123456789012345678901234567890.5, 12.50, 123456789012345678901234567890, 1e20, 3.14, true,
     '1960-01-01 00:00:00.5', '2024-05-06 07:08:09.999+02', '1900-03-04'),
    ('k2', '', '', 0, 0, 9223372036854775807, 0.1, -0.01, -99999999999999999999999999999999999999,
     0.1, 'Infinity', false, '1969-12-31 23:59:59.999999', '1969-07-21 02:56:15.123456+00',
     '1970-01-01'),
    ('k3', NULL, NULL, NULL, NULL, NULL, 'NaN', NULL, NULL, 'NaN', NULL, NULL, NULL, NULL, NULL),
    ('k4', 'é', 'y', 1, 1, 1, 1.000, 1.00, 0, 1.0, -0.0, NULL, '1970-01-01', NULL, NULL),
    ('k5', 'z', 'z', 2, 2, 9007199254740993, 100000000000000000000, 99.99, 1, 1e-7, 1e16, NULL,
     NULL, NULL, NULL),
    ('k6', 'w', 'w', 3, 3, 3, -0.5, 0.5, 2, -0.0, 1.5, NULL, NULL, NULL, NULL),
    ('k7', 'q', 'q', 4, 4, 4, 2.5e-10, 0.07, 3, 1.5e300, 0.1, NULL, NULL, NULL, NULL)
"""
# md5 of each row's payload as a PostgreSQL state store spells it: a change here resends every
# record of every PostgreSQL store
PINNED_IN_DATABASE = {
    "k1": "b2d4b89af298cbf7e7d83599289b6e95",
    "k2": "9f93efcfa3d65dbe24b04e1de68a5b88",
    "k4": "a2c413f9ab9d8c5870dec26c4094ad44",
    "k5": "4a77ac75ef8d0d676e86ac32da918d06",
}
PINNED_COPIED = {  # the rows of `tests/test_sql_staging.py` (k2 and k3 hold no double: DuckDB's)
    "k1": "2c70932866e7609af7494075d479291c",
    "k2": "5a762280c2c9c57b7d8346742aaac4f2",
    "k3": "37119d126a2726fc1d8d5245969638f0",
    "k4": "0c87eaefb6f2f0df30db0ee9371db6a2",
    "k5": "aad8ee53ce16b183bc2f97759c2f410d",
}
# the sync as the source reader and its error messages see it
KINDS_SYNC: Any = SimpleNamespace(name="kinds", source="pg", sql="SELECT * FROM kinds")


@pytest.fixture
def store() -> Iterator[StateStore]:
    if not pg_available():
        pytest.skip("PostgreSQL is not reachable at SYNC_TEST_PG_URL")
    schema = f"cio_sync_pgfp_{os.getpid()}"
    made = StateStore(private_schema(PG_URL, schema))
    made.migrate()
    yield made
    made.dispose()
    drop_schema(PG_URL, schema)


def staged(store: StateStore, run: str) -> dict[str, tuple[str, str]]:
    with store.tx() as conn:
        rows = conn.execute(
            sa.select(staging.c.key, staging.c.payload, staging.c.fingerprint).where(
                staging.c.run == run
            )
        )
        return {r.key: (r.payload, r.fingerprint) for r in rows}


def python_staged(store: StateStore, shape: Layout, batches: list[SourceBatch]) -> dict[str, Any]:
    """Python's encoding (`engine.extract.encode`), as the store stages it (respelled)."""
    out = Extracted()
    with store.tx() as conn:
        for batch in batches:
            stage_encoded(conn, "run-python", encode(shape, batch, out.staged, out))
    return staged(store, "run-python")


def test_copied_rows_are_staged_as_python_encodes_them(store: StateStore, tmp_path: Path) -> None:
    """Every DuckDB kind (JSON, lists, structs, maps, intervals, blobs, UUIDs, HUGEINT...)."""
    batch, names = kinds_batch(tmp_path)
    shape = layout(names)
    with store.tx() as conn:
        scope = Scope("run-sql", "kinds", "d")
        pgstage.stage_copied(
            conn, scope, shape, batch, iter(()), Extracted(), cursor=None, compare=False
        )
    by_sql, by_python = staged(store, "run-sql"), python_staged(store, shape, [batch])
    assert set(by_sql) == {"k1", "k2", "k3", "k4", "k5"}
    for key, (payload, fingerprint) in by_sql.items():
        assert (payload, fingerprint) == by_python[key], key
        assert fingerprint == hashlib.md5(payload.encode()).hexdigest()
    payload = by_sql["k1"][0]
    assert '"d":1e+20' in payload and '"hi":"170141183460469231731687303715884105727"' in payload
    assert '"st":{"a":"q","b":2}' in payload  # nested: Python's canonical text
    assert {key: fp for key, (_, fp) in by_sql.items()} == PINNED_COPIED


def pg_source(store: StateStore) -> list[str]:
    with store.tx() as conn:
        conn.exec_driver_sql(f"CREATE TABLE kinds ({PG_KINDS})")
        conn.exec_driver_sql(f"INSERT INTO kinds VALUES {PG_ROWS}")
        return [
            c.name for c in conn.exec_driver_sql("SELECT * FROM kinds LIMIT 0").cursor.description
        ]


def test_rows_staged_in_the_database_are_staged_as_python_encodes_them(
    store: StateStore, tmp_path: Path
) -> None:
    names = pg_source(store)
    shape = layout(names)
    out = Extracted()
    with store.tx() as conn:
        scope = Scope("run-sql", "kinds", "d")
        done = pgstage.stage_in_database(
            conn,
            KINDS_SYNC,
            scope,
            KINDS_SYNC.sql,
            lambda _: shape,
            out,
            cursor=None,
            compare=False,
        )
    assert done and out.rows == 7 and out.staged == 7
    batches = list(read_source(KINDS_SYNC, store.url, tmp_path))
    by_sql, by_python = staged(store, "run-sql"), python_staged(store, shape, batches)
    assert set(by_sql) == {f"k{n}" for n in range(1, 8)}
    for key, (payload, fingerprint) in by_sql.items():
        assert (payload, fingerprint) == by_python[key], key
    payload = by_sql["k1"][0]
    assert '"d":1e+20' in payload and '"dec0":"123456789012345678901234567890"' in payload
    assert '"ts":-315619200' in payload and '"dt":-2203632000' in payload
    assert orjson.loads(by_sql["k4"][0])["a"]["d"] == 1  # 1.0, spelled 1
    assert {key: fp for key, (_, fp) in by_sql.items() if key in PINNED_IN_DATABASE} == (
        PINNED_IN_DATABASE
    )


# --- a store of schema 7 -------------------------------------------------------------------------


def encoded_by_schema_7(project: Project, name: str) -> dict[str, tuple[str, str]]:
    """key → (payload, fingerprint) as schema 7 stored a PostgreSQL store's records: every one
    encoded by Python (`engine.extract.encode`, unchanged since), orjson's text and its md5."""
    loaded = load_project(project.root)
    sync = loaded.syncs[name]
    url = loaded.sources[sync.source].url
    batches = list(read_source(sync, url, loaded.root))
    shape = layout_for(sync, batches[0].names, loaded.workspace_of(sync))
    out = Extracted()
    found: dict[str, tuple[str, str]] = {}
    for batch in batches:
        chunk = encode(shape, batch, out.staged, out)
        pairs = zip(chunk.payloads, chunk.fingerprints, strict=True)
        found.update(zip(chunk.keys, pairs, strict=True))
    return found


def as_schema_7(project: Project, names: list[str]) -> list[str]:
    """Make the project's store what schema 7 left (see `encoded_by_schema_7`); its payloads."""
    old = {name: encoded_by_schema_7(project, name) for name in names}
    engine = sa.create_engine(project.state_url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        for name, rows in old.items():
            for key, (payload, fingerprint) in rows.items():
                held = (snapshot.c.sync == name) & (snapshot.c.key == key)
                values = {"payload": payload, "fingerprint": fingerprint, "source": 7}
                assert conn.execute(sa.update(snapshot).where(held).values(values)).rowcount == 1
        conn.execute(sa.update(meta).where(meta.c.name == "schema_version").values(value="7"))
        conn.execute(
            sa.update(meta).where(meta.c.name == "fingerprint_scheme").values(value="orjson-1")
        )
    engine.dispose()
    return [payload for rows in old.values() for payload, _ in rows.values()]


def test_a_store_of_schema_7_is_moved_without_resending(pg_project: Project) -> None:
    """The previous version encoded every record of a PostgreSQL store in Python and stored
    orjson's spelling. The store is made as it left it: delivered by this version, then every
    snapshot row replaced by what Python's encoding (the previous version's path, still this
    version's for records SQL does not encode) makes of the same source rows, and the schema
    version set back to 7 (on PostgreSQL, schema 7 is schema 6: 6 → 7 changed DuckDB stores
    only). Migrating respells the payloads in SQL; the next runs send nothing."""
    project = pg_project
    with_pg_source(project)
    pg_sql(
        project,
        "CREATE TABLE people (id text, name text, score double precision, ratio real, "
        "ltv numeric(12, 2), n numeric, joined timestamptz)",
        "INSERT INTO people VALUES "
        "('u1', E'a\"b\\\\c\\n\\u0001é😀', 1.0, 3.14, 12.50, 1e-7, '1960-01-01 00:00:00.5+00'),"
        " ('u2', '', 1e20, 'Infinity', 0.07, 100000000000000000000, NULL),"
        " ('u3', NULL, 'NaN', -0.0, NULL, -0.5, '2024-05-06 07:08:09+02'),"
        " ('u4', 'x', 1e-7, 1e16, 1.00, 12345678901234567890123, NULL)",
    )
    project.write_sync("people", PG_SYNC)
    project.table(
        "events",
        "id VARCHAR, score DOUBLE, tags VARCHAR[], extra STRUCT(z INTEGER, a DOUBLE)",
        [],
    )
    project.sql(
        "INSERT INTO events VALUES ('e1', 1.0, ['a', 'é'], {'z': 1, 'a': 1e20}), "
        "('e2', 1e-7, [], NULL), ('e3', -0.0, NULL, {'z': NULL, 'a': 0.1})"
    )
    project.write_sync("dpeople", PEOPLE_SYNC.format(behavior="mirror").replace("people", "events"))
    first = project.run_json("--all")
    assert [s["counts"]["sent"] for s in first["syncs"]] == [3, 4]

    old = as_schema_7(project, ["dpeople", "people"])
    assert any('"score":1.0' in p for p in old) and any("1e-7" in p for p in old)
    requests = len(track_requests(project.emulator))
    again = project.run_json("--all")
    assert [s["counts"]["planned"] for s in again["syncs"]] == [0, 0], again
    assert len(track_requests(project.emulator)) == requests
    engine = sa.create_engine(project.state_url, poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        stored = dict(conn.execute(sa.select(meta.c.name, meta.c.value)).all())
        sources = set(conn.execute(sa.select(snapshot.c.source)).scalars())
    engine.dispose()
    assert stored == {"schema_version": str(SCHEMA_VERSION), "fingerprint_scheme": "json-sql-pg-1"}
    assert SCHEMA_VERSION == 8 and sources == {None}
