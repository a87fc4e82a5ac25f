"""The row work's SQL per dialect (`engine.sqldialect`): run on the real PostgreSQL, where its
keys and payloads carry the values Python's rules give (`engine.records`) and its fingerprints
are pinned; compiled, without a connection, for Snowflake and BigQuery (and DuckDB, whose runs
`tests/test_sql_staging.py` pins), each in its own function names."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import os
import re
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import orjson
import pyarrow as pa
import pytest
import sqlalchemy as sa
from duckdb_engine import Dialect as DuckDBDialect
from snowflake.sqlalchemy.snowdialect import SnowflakeDialect
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy_bigquery import BigQueryDialect
from support import PG_URL, drop_schema, pg_available, private_schema

from engine import sqlstage
from engine.diff import Scope
from engine.extract import Extracted, Layout, SourceBatch, encode
from engine.state import snapshot, staging

# name → (PostgreSQL type, the Arrow type its rows arrive as): the rule follows the Arrow type
KINDS: dict[str, tuple[sa.types.TypeEngine[Any], pa.DataType]] = {
    "id": (sa.Text(), pa.string()),
    "s": (sa.Text(), pa.string()),
    "i": (sa.Integer(), pa.int32()),
    "big": (sa.BigInteger(), pa.int64()),
    "dec0": (sa.Numeric(38, 0), pa.decimal128(38, 0)),
    "dec": (sa.Numeric(12, 2), pa.decimal128(12, 2)),
    "wide": (sa.Numeric(38, 2), pa.decimal128(38, 2)),
    "d": (sa.Double(), pa.float64()),
    "f": (sa.REAL(), pa.float32()),
    "b": (sa.Boolean(), pa.bool_()),
    "ts": (sa.DateTime(), pa.timestamp("us")),
    "tstz": (sa.DateTime(timezone=True), pa.timestamp("us", tz="UTC")),
    "dt": (sa.Date(), pa.date32()),
    "tags": (postgresql.ARRAY(sa.BigInteger), pa.list_(pa.int64())),  # Python prepares it
}
UTC = dt.UTC
NULLS = dict.fromkeys(KINDS)
ROWS: list[dict[str, Any]] = [
    {
        "id": "k1",
        "s": 'a"b\\c\n\t\x01\x7f/é😀\u2028',
        "i": -7,
        "big": -(2**63),
        "dec0": Decimal("123456789012345678901234567890"),
        "dec": Decimal("12.50"),
        "wide": Decimal("12345678901234567.89"),  # 17 digits as a double: beyond PG's 15
        "d": 1e20,
        "f": 3.14,
        "b": True,
        "ts": dt.datetime(1960, 1, 1, 0, 0, 0, 500000),
        "tstz": dt.datetime(2024, 5, 6, 5, 8, 9, 999000, tzinfo=UTC),
        "dt": dt.date(1900, 3, 4),
        "tags": [3, None, 1],
    },
    {
        "id": "k2",
        "s": "",
        "i": 0,
        "big": 2**63 - 1,
        "dec0": Decimal("-99999999999999999999999999999999999999"),
        "dec": Decimal("-0.01"),
        "wide": Decimal("-12345678901234567890123.45"),  # an integral double beyond 64 bits
        "d": 0.1,
        "f": math.inf,
        "b": False,
        "ts": dt.datetime(1969, 12, 31, 23, 59, 59, 999999),
        "tstz": dt.datetime(1969, 7, 21, 2, 56, 15, 123456, tzinfo=UTC),
        "dt": dt.date(1970, 1, 1),
        "tags": [],
    },
    {**NULLS, "id": "k3", "d": math.nan},
    {**NULLS, "id": "k4", "d": math.inf, "wide": Decimal("98765432109876543210987654321.50")},
    {**NULLS, "id": "k5", "d": -math.inf, "dec": Decimal("1.00"), "f": -0.0},
    {**NULLS, "id": "k6", "d": 1e-7, "dec0": Decimal(0), "wide": Decimal("100000000000000000000")},
    {**NULLS, "id": "k7", "d": 1.5e300, "big": 2**53 + 1, "i": 2**31 - 1},
    {**NULLS, "id": "k8", "d": -0.0, "ts": dt.datetime(1970, 1, 1), "b": True},
]
# md5 of each row's payload as PostgreSQL's SQL writes it
PINNED_PG = {
    "k1": "dca6f83cf980bb8ea0a5cf68846d8667",
    "k2": "a106cfb334e719ef8bfd9fb825100fc5",
    "k3": "97abbfb4576d953073d8896ed2968eff",
    "k4": "2d7bb2bc9f8d47b9c5eab650b2b9a7d7",
    "k8": "d1d1e0fa10ecf0f3cf4c5330545fcf38",
}


def arrow_batch() -> pa.RecordBatch:
    schema = pa.schema([(name, kind) for name, (_, kind) in KINDS.items()])
    return pa.RecordBatch.from_pylist(ROWS, schema=schema)


def layout(keys: tuple[str, ...] = ("id",), wide: int = 0) -> Layout:
    fields = {n: n for n in KINDS if n not in keys}
    fields.update({f"copy{n:03}": "s" for n in range(wide)})  # many fields, one column
    return Layout(
        key_columns=keys, email_keys=frozenset(), roles={}, fields=dict(sorted(fields.items()))
    )


def python_records(shape: Layout) -> dict[str, Any]:
    """key → payload, as Python encodes the rows (`engine.extract.encode`)."""
    batch = arrow_batch()
    staged = encode(
        shape, SourceBatch(batch.schema.names, batch.num_rows, arrow=batch), 0, Extracted()
    )
    return {k: orjson.loads(p) for k, p in zip(staged.keys, staged.payloads, strict=True)}


# --- PostgreSQL --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg() -> Iterator[sa.Engine]:
    """A PostgreSQL schema of this module's own, holding staging and the snapshot."""
    if not pg_available():
        pytest.skip("PostgreSQL is not reachable at SYNC_TEST_PG_URL")
    schema = f"cio_sync_dialects_{os.getpid()}"
    engine = sa.create_engine(private_schema(PG_URL, schema), poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        staging.metadata.create_all(conn, tables=[staging, snapshot])
    yield engine
    engine.dispose()
    drop_schema(PG_URL, schema)


def load_rows(conn: Connection, columns: sqlstage.Columns) -> None:
    """The rows as a bulk copy leaves them in the state database: the source's columns beside
    the text Python prepared (`Columns.prepare`) and the staging order."""
    prepared = columns.prepare(arrow_batch())
    types = {name: pg_type for name, (pg_type, _) in KINDS.items()}
    table = sa.Table(
        sqlstage.ROWS,
        sa.MetaData(),
        *(sa.Column(name, types.get(name, sa.Text())) for name in prepared.schema.names),
        sa.Column(sqlstage.ORD, sa.BigInteger),
    )
    table.drop(conn, checkfirst=True)
    table.create(conn)
    rows = [{**row, sqlstage.ORD: n} for n, row in enumerate(prepared.to_pylist())]
    conn.execute(table.insert(), rows)


def pg_staged(
    engine: sa.Engine, shape: Layout, compare: bool = False
) -> dict[str, tuple[str | None, str | None]]:
    """key → (payload, fingerprint) as PostgreSQL's SQL stages the rows (NULL keys left out)."""
    batch = arrow_batch()
    columns = sqlstage.Columns(shape, batch.schema, frozenset())
    scope = Scope("run-pg", "kinds", "d")
    with engine.begin() as conn:
        load_rows(conn, columns)
        conn.execute(staging.delete())
        conn.execute(sqlstage.stage_statement(columns, scope, compare))
        rows = conn.execute(sa.select(staging.c.key, staging.c.payload, staging.c.fingerprint))
        return {r.key: (r.payload, r.fingerprint) for r in rows if r.key is not None}


@pytest.mark.postgres
def test_postgres_encodes_the_values_python_does(pg: sa.Engine) -> None:
    shape = layout()
    by_sql, by_python = pg_staged(pg, shape), python_records(shape)
    assert set(by_sql) == set(by_python) == {row["id"] for row in ROWS}
    for key, (payload, fingerprint) in by_sql.items():
        assert payload is not None
        assert orjson.loads(payload) == by_python[key], key
        assert fingerprint == hashlib.md5(payload.encode()).hexdigest()


@pytest.mark.postgres
def test_postgres_payloads_are_spelled_as_pinned(pg: sa.Engine) -> None:
    staged = pg_staged(pg, layout())
    payload = staged["k1"][0]
    assert payload is not None
    attributes = orjson.loads(payload)["a"]
    assert attributes["ts"] == -315619200 and attributes["dt"] == -2203632000  # floored
    assert attributes["dec0"] == "123456789012345678901234567890"  # beyond 64 bits
    assert attributes["wide"] == 12345678901234568  # exact, where PostgreSQL's cast keeps 15
    assert attributes["tags"] == [3, None, 1]  # prepared by Python, taken as it is
    # PostgreSQL's own spelling of doubles (DuckDB writes 100000000000000000000.0): the same
    # value, another fingerprint, so a store's fingerprint scheme is its dialect's
    assert '"d":1e+20' in payload and '"f":3.140000104904175' in payload
    assert '"s":"a\\"b\\\\c\\n\\t\\u0001\x7f/é😀\u2028"' in payload
    # integral doubles beyond 64 bits, exactly (as Arrow and Python make them)
    assert '"wide":"-12345678901234567741440"' in (staged["k2"][0] or "")
    assert '"wide":"98765432109876546265216450560"' in (staged["k4"][0] or "")
    assert '"d":-0,' in (staged["k8"][0] or "")  # DuckDB: -0.0
    assert {key: fingerprint for key, (_, fingerprint) in staged.items() if key in PINNED_PG} == (
        PINNED_PG
    )


@pytest.mark.postgres
@pytest.mark.parametrize(
    "keys", [("i",), ("dt", "b"), ("ts",), ("tstz", "id"), ("dec0",), ("big",), ("d",), ("tags",)]
)
def test_postgres_keys_are_python_keys(pg: sa.Engine, keys: tuple[str, ...]) -> None:
    shape = layout(keys)
    by_sql, by_python = pg_staged(pg, shape), python_records(shape)
    assert set(by_sql) == set(by_python) and by_python
    for key, (payload, _) in by_sql.items():
        assert orjson.loads(payload or "") == by_python[key], key


@pytest.mark.postgres
def test_postgres_takes_more_parts_than_a_function_takes_arguments(pg: sa.Engine) -> None:
    """300 fields are over 600 parts to join; PostgreSQL's functions take at most 100."""
    shape = layout(wide=300)
    by_sql, by_python = pg_staged(pg, shape), python_records(shape)
    assert {k: orjson.loads(p or "") for k, (p, _) in by_sql.items()} == by_python


@pytest.mark.postgres
def test_postgres_stages_a_row_the_snapshot_holds_by_its_key(pg: sa.Engine) -> None:
    fingerprints = {key: fp for key, (_, fp) in pg_staged(pg, layout()).items()}
    with pg.begin() as conn:
        conn.execute(snapshot.delete())
        conn.execute(
            snapshot.insert(),
            [
                {
                    "sync": "kinds",
                    "destination": "d",
                    "key": "k1",
                    "fingerprint": fingerprints["k1"],
                },
                {"sync": "kinds", "destination": "d", "key": "k2", "fingerprint": "old"},
            ],
        )
    staged = pg_staged(pg, layout(), compare=True)
    assert staged["k1"] == (None, None)  # unchanged
    assert staged["k2"][1] == fingerprints["k2"] and staged["k3"][1] == fingerprints["k3"]


# --- compiled for each dialect -----------------------------------------------------------------

# DuckDB's function names, which no other database has (`json(` as a whole word: not TO_JSON()
DUCKDB_ONLY = ["epoch_us(", "epoch_ns(", "divide(", "isfinite(", "date_diff(", "concat("]


def all_rules() -> sqlstage.Columns:
    """Every rule: text, booleans, integers (uint64 too), floats, decimals of scale 0 and more,
    timestamps (us, ns, aware), dates, a column Python prepares, a composite key, a role."""
    schema = pa.schema(
        [
            ("id", pa.string()),
            ("person", pa.string()),
            ("b", pa.bool_()),
            ("i", pa.int32()),
            ("n", pa.int64()),
            ("ub", pa.uint64()),
            ("d", pa.float64()),
            ("f", pa.float32()),
            ("dec", pa.decimal128(12, 2)),
            ("dec0", pa.decimal128(38, 0)),
            ("ts", pa.timestamp("us")),
            ("tsn", pa.timestamp("ns")),
            ("tstz", pa.timestamp("us", tz="UTC")),
            ("dt", pa.date32()),
            ("tags", pa.list_(pa.int64())),
        ]
    )
    keys = ("id", "dt", "dec0")
    fields = {n: n for n in schema.names if n not in (*keys, "person")}
    shape = Layout(
        key_columns=keys, email_keys=frozenset(), roles={"person": "person"}, fields=fields
    )
    return sqlstage.Columns(shape, schema, frozenset())


DIALECTS: dict[str, tuple[Callable[[], sa.Dialect], list[str], list[str]]] = {
    # dialect → (its factory, names its SQL has, names it must not have)
    "duckdb": (
        DuckDBDialect,
        ["to_json(", "epoch_us(", "epoch_ns(", "divide(", "isfinite(", "date_diff(", "concat("],
        [" || "],
    ),
    "postgresql": (
        postgresql.dialect,
        ["to_json(", "EXTRACT(epoch FROM", "div(", "md5(", "'NaN'", "'Infinity'", " || "],
        DUCKDB_ONLY,
    ),
    "snowflake": (
        SnowflakeDialect,
        [
            "TO_JSON(TO_VARIANT(",
            "MD5(",
            "DATE_PART(epoch_microsecond,",
            "DATE_PART(epoch_nanosecond,",
            "DATEDIFF(day,",
            "'NaN'",
            " || ",
        ],
        DUCKDB_ONLY,
    ),
    "bigquery": (
        BigQueryDialect,
        [
            "TO_JSON_STRING(",
            "TO_HEX(MD5(",
            "UNIX_MICROS(",
            "UNIX_DATE(",
            "IS_NAN(",
            "IS_INF(",
            "DIV(",
            "MOD(",
            "BIGNUMERIC",
            " || ",
        ],
        [*DUCKDB_ONLY, "to_json(", "%", "NUMERIC(38"],
    ),
}


@pytest.mark.parametrize("name", list(DIALECTS))
@pytest.mark.parametrize("compare", [False, True])
def test_the_statement_compiles_in_each_dialects_names(name: str, compare: bool) -> None:
    make, present, absent = DIALECTS[name]
    statement = sqlstage.stage_statement(all_rules(), Scope("r", "s", "d"), compare)
    sql = str(statement.compile(dialect=make(), compile_kwargs={"literal_binds": True}))
    assert str(statement.compile(dialect=make()))  # with bound parameters too
    for word in present:
        assert word in sql, word
    for word in absent:
        assert word.lower() not in sql.lower(), word
    if name != "duckdb":
        assert not re.search(r"\bjson\(", sql, re.IGNORECASE)
        assert "__cio_sync_v" in sql  # the column Python prepared, taken as it is
