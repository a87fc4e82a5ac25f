"""Source rows → staged records by a PostgreSQL state store's own SQL (SPEC §7.1).

The statement is `engine.sqlstage`'s (key, canonical payload, md5 fingerprint, compared with the
snapshot in the same INSERT); what differs from a DuckDB state store is how the rows reach it:

- **in the database** (`stage_in_database`): when the sync's source is the state database itself
  (`same_database`), the INSERT selects from the sync's query as a subquery, so no source row
  leaves the server. The query's column types come from its result description (run with
  `LIMIT 0`); rows a NULL or empty key part, person or event name sets aside are left out by the
  INSERT's WHERE, counted by one aggregate query, and only the invalid ones (rare) are read, to
  be described as `engine.extract.describe_invalid` describes them. A sync whose columns the SQL
  does not normalise exactly as Python does (JSON, arrays, intervals, bytes, fixed-width `char`,
  email keys, non-integral numeric keys...) is not staged here: `stage_in_database` answers
  False, having read nothing, and the run encodes its rows in Python.
- **copied** (`stage_copied`): rows that arrive as Arrow (a DuckDB source), prepared and set aside
  as `engine.sqlstage.Stream` does for DuckDB, are bulk-loaded batch by batch into a temporary
  table by COPY (CSV written by Arrow: no Python object per row), and the INSERT selects from it.

A numeric column of the source database follows Python's rule for the `Decimal`s its driver
gives (`engine.records._decimal_number`): an integral value is an integer, any other the double
nearest to it (PostgreSQL's cast to double rounds correctly, as Python's `float()` does).
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine import explain, records, sources, sqlstage
from engine.config import Sync
from engine.diff import Scope
from engine.extract import Extracted, Layout, SourceBatch, describe_invalid
from engine.sqldialect import is_finite, json_text
from engine.sqlstage import ORD, ROWS, Columns, Expr, Rule
from engine.state import staging

_SOURCE = "cio_sync_source"  # the sync's query, as a subquery in the state database
_NUMBERS = "__cio_sync_n"
_BAD = "__cio_sync_bad"


def same_database(state_url: str, source_url: str) -> bool:
    """Whether the source URL names the PostgreSQL database the state store is in: the same
    server, port, database and user, and the same connection options (a search path)."""
    try:
        state, source = sa.make_url(state_url), sa.make_url(source_url)
    except sa.exc.ArgumentError:
        return False
    if state.get_backend_name() != "postgresql" or source.get_backend_name() != "postgresql":
        return False

    def where(url: sa.URL) -> tuple[Any, ...]:
        options = url.query.get("options")
        return (url.host or "localhost", url.port or 5432, url.database, url.username, options)

    return where(state) == where(source)


# --- the query's columns -------------------------------------------------------------------------


def _numeric_value(column: Expr, kind: pa.DataType) -> Expr:
    """A numeric as Python's rule for a `Decimal`: NULL when not finite, an integer (its text
    beyond 64 bits) when integral, else the nearest double."""
    number = sa.cast(column, sa.Numeric)
    double = sa.cast(column, sa.Double)
    whole = sa.func.trunc(number)
    return sa.case(
        (sa.not_(is_finite(double)), sa.literal("null")),
        (number == whole, sqlstage._int_json(whole)),
        else_=json_text(double),
    )


def _numeric_key(column: Expr, kind: pa.DataType) -> Expr:
    """A numeric(p, 0) key: its integer's text."""
    return sa.cast(sa.func.trunc(sa.cast(column, sa.Numeric)), sa.String)


def _real_value(column: Expr, kind: pa.DataType) -> Expr:
    """A real as its driver gives it to Python: the double its shortest text names (3.14, not
    the 3.140000104904175 the real is exactly)."""
    return sqlstage._float(sa.cast(sa.cast(column, sa.Text), sa.Double), kind)


# PostgreSQL type → the Arrow type whose rules apply (their SQL runs on PostgreSQL as well)
_TYPES: dict[int, pa.DataType] = {
    16: pa.bool_(),
    20: pa.int64(),
    21: pa.int16(),
    23: pa.int32(),
    25: pa.string(),
    700: pa.float32(),
    701: pa.float64(),
    1043: pa.string(),
    1082: pa.date32(),
    1114: pa.timestamp("us"),
    1184: pa.timestamp("us", tz="UTC"),
}
_NUMERIC, _REAL = 1700, 700


def _described(conn: Connection, sql: str) -> list[Any]:
    """The query's result columns (psycopg's descriptions), from running it with LIMIT 0."""
    query = sa.text(f"SELECT * FROM (\n{_escaped(sql)}\n) AS {_SOURCE} LIMIT 0")
    return list(conn.execute(query).cursor.description or ())


def _escaped(sql: str) -> str:
    """The query as `sa.text` takes it literally (a colon is not a bound parameter)."""
    return sql.replace(":", "\\:")


def _schema(
    described: Sequence[Any],
) -> tuple[pa.Schema, dict[str, tuple[Rule | None, Rule | None]]]:
    """The Arrow types whose rules the columns take, and the rules of numeric columns. A type
    without exact rules is null, which no rule takes (a sync using it is encoded in Python)."""
    fields = []
    rules: dict[str, tuple[Rule | None, Rule | None]] = {}
    for column in described:
        kind = _TYPES.get(column.type_code, pa.null())
        if column.type_code == _NUMERIC:
            kind = pa.decimal128(38, 0)
            key = _numeric_key if column.scale == 0 else None
            rules[column.name] = (_numeric_value, key)
        if column.type_code == _REAL:
            rules[column.name] = (_real_value, None)
        fields.append(pa.field(column.name, kind))
    return pa.schema(fields), rules


# --- rows set aside ------------------------------------------------------------------------------


def _blank(column: Expr, kind: pa.DataType) -> Expr:
    """True where a value is NULL, NaN, or (text) empty, as `sqlstage._blank`."""
    blank: Expr = column.is_(None)
    if sqlstage._is_text(kind):
        blank = sa.or_(blank, column == "")
    if pa.types.is_floating(kind):
        blank = sa.or_(blank, sa.cast(column, sa.Double) == sa.cast(sa.literal("NaN"), sa.Double))
    return blank


def set_aside(columns: Columns) -> tuple[Expr, Expr]:
    """(invalid, skipped) conditions over the query's columns, as `sqlstage.Stream.set_aside`:
    a NULL or empty key part, person or event name is invalid; an event whose name the filter
    leaves out is skipped."""
    layout, schema = columns.layout, columns.schema
    invalid = sa.or_(
        sa.false(),
        *(_blank(columns.keys[c], pa.string()) for c in layout.key_columns),
        *(
            _blank(sa.column(layout.roles[role]), schema.field(layout.roles[role]).type)
            for role in ("person", "event_name")
            if role in layout.roles
        ),
    )
    if layout.event_filter is None:
        return invalid, sa.false()
    allowed = sorted(layout.event_filter)
    column = layout.roles.get("event_name")
    if column is None:
        inside: Expr = sa.true() if layout.event_name in layout.event_filter else sa.false()
    elif sqlstage._is_text(schema.field(column).type):
        inside = sa.column(column).in_(allowed)
    else:
        inside = sa.false()
    return invalid, sa.and_(sa.not_(invalid), sa.not_(inside))


def _describe_invalid(
    conn: Connection, source: sa.Subquery, layout: Layout, invalid: Expr, out: Extracted
) -> None:
    """Read the invalid rows (only those) and set them aside as the Arrow path does."""
    numbered = sa.select(
        *source.c, sa.func.row_number().over().label(_NUMBERS), invalid.label(_BAD)
    ).subquery("numbered")
    names = [c.name for c in source.c]
    read = out.rows
    for row in conn.execute(sa.select(numbered).where(numbered.c[_BAD])).mappings():
        values = {name: records.python_column([row[name]]) for name in names}
        out.rows = row[_NUMBERS] - 1  # `describe_invalid` numbers the row after `out.rows`
        describe_invalid(layout, SourceBatch(names, 1, python=values), [0], out)
    out.rows = read


# --- in the database -----------------------------------------------------------------------------


def stage_in_database(
    conn: Connection,
    sync: Sync,
    scope: Scope,
    sql: str,
    layout_of: Callable[[list[str]], Layout],
    out: Extracted,
    *,
    cursor: str | None,
    compare: bool,
) -> bool:
    """Stage the rows of the sync's query (`sql`, as the read filters it) by one INSERT ...
    SELECT in the state database, which is its source; False, having staged nothing, when the
    SQL cannot encode its columns as Python would (the caller then encodes them in Python)."""
    with sources.query_errors(sync):
        described = _described(conn, sql)
        names = [column.name for column in described]
        layout = layout_of(names)
        schema, rules = _schema(described)
        columns = Columns(layout, schema, frozenset(), rules)
        if columns.python_values or columns.python_keys:
            return False
        query = sa.text(_escaped(sql)).columns(*(sa.column(n) for n in names))
        source = query.subquery(_SOURCE)
        invalid, skipped = set_aside(columns)
        count_invalid = _count_aside(conn, source, invalid, skipped, cursor, out)
        kept = (
            sa.select(*source.c, (sa.func.row_number().over() - 1).label(ORD))
            .where(sa.not_(invalid), sa.not_(skipped))
            .subquery(ROWS)
        )
        conn.execute(sqlstage.stage_statement(columns, scope, compare, kept))
        staged = sa.select(sa.func.count()).where(staging.c.run == scope.run)
        out.staged = conn.execute(staged).scalar() or 0
        if count_invalid:
            _describe_invalid(conn, source, layout, invalid, out)
        out.rows += out.staged
    return True


def _count_aside(
    conn: Connection,
    source: sa.Subquery,
    invalid: Expr,
    skipped: Expr,
    cursor: str | None,
    out: Extracted,
) -> int:
    """Count the rows set aside, and note the largest cursor value, by one aggregate query over
    the source; the number of invalid rows (`_describe_invalid` reads them)."""
    measures: list[Expr] = [sa.func.count().filter(invalid), sa.func.count().filter(skipped)]
    if cursor is not None:
        measures.append(sa.func.max(sa.column(cursor)))
    found = conn.execute(sa.select(*measures).select_from(source)).one()
    out.skipped += found[1]
    out.rows += found[0] + found[1]
    if cursor is not None:
        out.highest.python([found[2]])
    return int(found[0])


# --- copied --------------------------------------------------------------------------------------


def _pg_type(kind: pa.DataType) -> str:
    """The column type a prepared Arrow column is copied into."""
    if sqlstage._is_text(kind):
        return "text"
    if pa.types.is_decimal(kind):  # unconstrained: DuckDB's HUGEINT fills 39 digits
        return "numeric"
    if pa.types.is_timestamp(kind):
        return "timestamptz" if kind.tz else "timestamp"
    plain = {
        pa.bool_(): "boolean",
        pa.int8(): "smallint",
        pa.int16(): "smallint",
        pa.int32(): "integer",
        pa.int64(): "bigint",
        pa.uint8(): "smallint",
        pa.uint16(): "integer",
        pa.uint32(): "bigint",
        pa.uint64(): "numeric(20, 0)",
        pa.float16(): "real",
        pa.float32(): "real",
        pa.float64(): "double precision",
        pa.date32(): "date",
        pa.date64(): "date",
    }
    return plain[kind]


def _csv_ready(array: pa.Array) -> pa.Array:
    """A column as Arrow's CSV writer writes it exactly for PostgreSQL: dictionaries as their
    values, nanosecond instants floored to microseconds (PostgreSQL keeps microseconds; the
    rules floor to whole seconds), half floats as floats."""
    kind = array.type
    if pa.types.is_dictionary(kind):
        return array.cast(kind.value_type)
    if pa.types.is_timestamp(kind) and kind.unit == "ns":
        return pc.floor_temporal(array, unit="microsecond").cast(pa.timestamp("us", kind.tz))
    if pa.types.is_float16(kind):
        return array.cast(pa.float32())
    if pa.types.is_date64(kind):
        return array.cast(pa.date32())
    return array


def copied_columns(columns: Columns) -> list[str]:
    """The prepared batch's columns the statement reads: those taken by a rule, the text Python
    prepared, and the staging order."""
    layout = columns.layout
    used = [*layout.fields.values(), *layout.roles.values(), *layout.key_columns]
    raw = [
        c
        for c in dict.fromkeys(used)
        if (c in columns.values and c not in columns.python_values)
        or (c in columns.keys and c not in columns.python_keys)
    ]
    return [*raw, *columns.python_values.values(), *columns.python_keys.values(), ORD]


def stage_copied(
    conn: Connection,
    scope: Scope,
    layout: Layout,
    first: SourceBatch,
    rest: Iterator[SourceBatch],
    out: Extracted,
    *,
    cursor: str | None,
    compare: bool,
) -> None:
    """Stage Arrow rows (`first`, then `rest`) by copying them into a temporary table batch by
    batch, then one INSERT ... SELECT from it (`engine.sqlstage.stage`'s contract)."""
    assert first.arrow is not None
    columns = Columns(layout, first.arrow.schema, first.json_columns)
    batches = iter(sqlstage.Stream(columns, itertools.chain([first], rest), out, cursor))
    head = next(batches)
    names = copied_columns(columns)
    where = f"postgresql {conn.engine.url.database or ''}".strip()
    quote = conn.dialect.identifier_preparer.quote
    listed = ", ".join(quote(n) for n in names)
    kinds = ", ".join(f"{quote(n)} {_pg_type(_csv_ready(head.column(n)).type)}" for n in names)
    conn.exec_driver_sql(f"CREATE TEMPORARY TABLE {ROWS} ({kinds}) ON COMMIT DROP")
    statement = f"COPY {ROWS} ({listed}) FROM STDIN (FORMAT csv)"
    explain.note(where, statement)
    options = pacsv.WriteOptions(include_header=False, quoting_style="all_valid")
    raw = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with raw.copy(statement) as copy:
        for batch in itertools.chain([head], batches):
            picked = [_csv_ready(batch.column(n)) for n in names]
            text = io.BytesIO()
            pacsv.write_csv(pa.Table.from_arrays(picked, names=names), text, options)
            copy.write(text.getvalue())
    conn.exec_driver_sql(f"ANALYZE {ROWS}")
    conn.execute(sqlstage.stage_statement(columns, scope, compare))
    conn.exec_driver_sql(f"DROP TABLE {ROWS}")
