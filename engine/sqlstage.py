"""Source rows → staged records by the state database's own SQL (SPEC §7.1).

The source's Arrow record batches stream into the state database (DuckDB scans them as they
come, without copying them into Python values), and one INSERT, generated here through
SQLAlchemy Core, computes each row's key, its canonical payload text (SPEC §2.2's values, the
attributes and roles as JSON objects with sorted keys) and its md5 fingerprint, and stages it.
Python meets rows only where the SQL cannot express a rule:

- rows set aside (a NULL or empty key part; an event without a person or a name, or with a name
  the filter leaves out) are found by Arrow compute, batch by batch; only those set aside as
  invalid are described in Python (`engine.extract.describe_invalid`);
- a column of a kind the SQL does not normalise (nested values, JSON, intervals, times, bytes,
  UUIDs...) is normalised by `engine.records` into JSON text, which the SQL takes as it is; key
  columns of those kinds, and email keys (Python's own strip and lower: a key must never change
  its spelling between versions), become key text the same way;
- collections, delivered whole, are encoded in Python (`engine.extract.encode`).

The SQL's functions are spelled per dialect by `engine.sqldialect` (DuckDB's by default): the
same statement runs on PostgreSQL state stores (`engine.pgstage`: from the sync's query in the
database, or from Arrow rows copied in) and compiles for Snowflake and BigQuery.

The payload is DuckDB's JSON writer's text (the scheme `json-sql-1`, `engine.state`): a payload read back through
`json()` gives the same bytes, which is how `engine.state` moved older snapshots onto it.

Each row is compared with the snapshot in the same statement: a row the snapshot holds with the
same fingerprint is staged by its key alone (unchanged), so an unchanged rerun writes keys, not
payloads.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine import records
from engine.diff import Scope
from engine.extract import Extracted, Layout, SourceBatch, describe_invalid, observe_cursor
from engine.sqldialect import (
    concat_text,
    days_since_epoch,
    double_to_whole,
    epoch_micros,
    epoch_nanos,
    int_div,
    is_finite,
    json_normalised,
    json_text,
    md5_hex,
    whole_number,
)
from engine.state import plan, snapshot, staging

ROWS = "cio_sync_rows"  # the name the source's stream takes in the state database
ORD = "__cio_sync_ord"
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
Expr = sa.ColumnElement[Any]
Rule = Callable[[Expr, pa.DataType], Expr]


# --- values: a normalised value's JSON text (SPEC §2.2), for a non-NULL input -------------------


def _text(expr: Expr) -> Expr:
    return sa.cast(expr, sa.String)


def _int_json(number: Expr) -> Expr:
    """An integer as JSON carries it: itself within 64 bits, its decimal text beyond."""
    fits = number.between(_INT64_MIN, _INT64_MAX)
    return sa.case((fits, _text(number)), else_=json_text(_text(number)))


def _floor_div(expr: Expr, unit: int) -> Expr:
    """Floor division (`int_div` truncates toward zero; instants before 1970 floor down)."""
    return int_div(expr - ((expr % unit) + unit) % unit, unit)


def _seconds(column: Expr, kind: pa.DataType) -> Expr:
    """Timestamps (aware or naive, as UTC) and dates as integer Unix seconds, floored."""
    if pa.types.is_date(kind):
        return days_since_epoch(column) * 86_400
    if kind.unit == "ns":
        return _floor_div(epoch_nanos(column), 1_000_000_000)
    return _floor_div(epoch_micros(column), 1_000_000)


def _decimal(column: Expr, kind: pa.DataType) -> Expr:
    """As `records._decimal_numbers`: a scale of 0 or less is an exact integer; otherwise the
    value as Arrow makes it a double (its unscaled integer times 10^-scale), written as an
    integer when it is one."""
    if kind.scale <= 0:
        return _int_json(whole_number(column))
    unscaled = sa.cast(whole_number(column * 10**kind.scale), sa.Double)
    double = unscaled * sa.cast(sa.literal(10.0**-kind.scale), sa.Double)
    return sa.case(
        (double == sa.func.trunc(double), _int_json(double_to_whole(double))),
        else_=json_text(double),
    )


def _float(column: Expr, kind: pa.DataType) -> Expr:
    double = sa.cast(column, sa.Double)
    return sa.case((is_finite(double), json_text(double)), else_=sa.literal("null"))


def _boolean(column: Expr, kind: pa.DataType) -> Expr:
    return sa.case((column, sa.literal("true")), (sa.not_(column), sa.literal("false")))


def _is_text(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        return _is_text(kind.value_type)
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _value_rule(kind: pa.DataType) -> Rule | None:
    """The SQL normalising a column of this Arrow type; None: `engine.records` does it."""
    if _is_text(kind):
        return lambda c, k: json_text(_text(c))
    if pa.types.is_boolean(kind):
        return _boolean
    if pa.types.is_uint64(kind):
        return lambda c, k: _int_json(c)
    if pa.types.is_integer(kind):
        return lambda c, k: _text(c)
    if pa.types.is_floating(kind):
        return _float
    if pa.types.is_decimal(kind):
        return _decimal
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return lambda c, k: _text(_seconds(c, k))
    return None


def _key_rule(kind: pa.DataType) -> Rule | None:
    """The SQL of a key part's text (`records.key_text`); None: Python makes it."""
    if _is_text(kind):
        return lambda c, k: _text(c)
    if pa.types.is_integer(kind):
        return lambda c, k: _text(c)
    if pa.types.is_boolean(kind):
        return _boolean
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        return lambda c, k: _text(_seconds(c, k))
    if pa.types.is_decimal(kind) and kind.scale <= 0:
        return lambda c, k: _text(whole_number(c))
    return None


# --- the columns' plan -------------------------------------------------------------------------


@dataclass
class Columns:
    """How each source column the layout uses reaches the SQL: by a rule on the column itself,
    or as text Python prepared in a column of its own (`prepare`)."""

    layout: Layout
    schema: pa.Schema
    json_columns: frozenset[str]
    rules: dict[str, tuple[Rule | None, Rule | None]] = field(default_factory=dict)  # column →
    # (value rule, key rule) in place of its type's (`engine.pgstage`: PostgreSQL's own types)
    values: dict[str, Expr] = field(default_factory=dict)  # column → its value's JSON text
    keys: dict[str, Expr] = field(default_factory=dict)  # key column → its key text
    python_values: dict[str, str] = field(default_factory=dict)  # column → prepared column
    python_keys: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        layout = self.layout
        for n, column in enumerate(
            dict.fromkeys([*layout.fields.values(), *layout.roles.values()])
        ):
            kind = self.schema.field(column).type
            rule = self.rules[column][0] if column in self.rules else _value_rule(kind)
            rule = None if column in self.json_columns else rule
            if rule is None:
                self.python_values[column] = f"__cio_sync_v{n}"
                self.values[column] = json_normalised(sa.column(self.python_values[column]))
            else:
                self.values[column] = rule(sa.column(column), kind)
        for n, column in enumerate(layout.key_columns):
            kind = self.schema.field(column).type
            plain = column not in layout.email_keys and column not in self.json_columns
            rule = (
                (self.rules[column][1] if column in self.rules else _key_rule(kind))
                if plain
                else None
            )
            if rule is None:
                self.python_keys[column] = f"__cio_sync_k{n}"
                self.keys[column] = sa.column(self.python_keys[column])
            else:
                self.keys[column] = rule(sa.column(column), kind)

    def prepare(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """The batch with the text Python prepares beside its columns."""
        arrays, names = list(batch.columns), list(batch.schema.names)
        for column, name in self.python_values.items():
            values = records.arrow_column(batch.column(column), column in self.json_columns)
            encoded = [None if v is None else records.canonical(v) for v in values]
            arrays.append(pa.array(encoded, pa.binary()).cast(pa.string()))
            names.append(name)
        for column, name in self.python_keys.items():
            values = records.arrow_column(batch.column(column), column in self.json_columns)
            email = column in self.layout.email_keys
            keys = [
                records.email_key(records.key_text(v)) if email else records.key_text(v)
                for v in values
            ]
            arrays.append(pa.array(keys, pa.string()))
            names.append(name)
        return pa.RecordBatch.from_arrays(arrays, names=names)

    def key_texts(self, batch: pa.RecordBatch) -> list[pa.Array]:
        """Each key part of a prepared batch as Arrow text (NULL where the part is NULL), for
        finding the rows whose key is NULL or empty."""
        parts = []
        for column in self.layout.key_columns:
            prepared = self.python_keys.get(column)
            parts.append(batch.column(prepared or column))
        return parts


# --- the statement -----------------------------------------------------------------------------


def _object(entries: dict[str, Expr]) -> list[Expr]:
    """A JSON object's text as parts to concatenate: keys sorted, NULL values as null."""
    parts: list[Expr] = []
    for n, name in enumerate(sorted(entries)):
        label = ("" if n == 0 else ",") + orjson.dumps(name).decode() + ":"
        parts += [sa.literal(label), sa.func.coalesce(entries[name], sa.literal("null"))]
    return parts


def payload_expr(columns: Columns) -> Expr:
    """`{"a":{attribute: value},"r":{role: value}}` as canonical JSON text."""
    layout, values = columns.layout, columns.values
    attributes = {name: values[column] for name, column in layout.fields.items()}
    roles = {role: values[column] for role, column in layout.roles.items()}
    return concat_text(
        sa.literal('{"a":{'),
        *_object(attributes),
        sa.literal('},"r":{'),
        *_object(roles),
        sa.literal("}}"),
    )


def key_expr(columns: Columns) -> Expr:
    """The key's text: the part itself when single, else a JSON array of the parts
    (`engine.destination.key_string`)."""
    parts = [columns.keys[c] for c in columns.layout.key_columns]
    if len(parts) == 1:
        return parts[0]
    joined: list[Expr] = []
    for n, part in enumerate(parts):
        joined += [sa.literal("[" if n == 0 else ","), json_text(part)]
    return concat_text(*joined, sa.literal("]"))


def _encoded(columns: Columns, rows: sa.FromClause | None = None) -> sa.Subquery:
    """The rows of `ROWS` (or of `rows`, which has the column `ORD` too) keyed and encoded: key,
    payload, ord."""
    rows = sa.table(ROWS, sa.column(ORD)) if rows is None else rows
    return (
        sa.select(
            key_expr(columns).label("key"),
            payload_expr(columns).label("payload"),
            rows.c[ORD].label("ord"),
        )
        .select_from(rows)
        .subquery("encoded")
    )


def _printed(columns: Columns, rows: sa.FromClause | None = None) -> sa.Subquery:
    """`_encoded`'s rows fingerprinted: key, payload, ord, fp."""
    encoded = _encoded(columns, rows)
    return sa.select(encoded, md5_hex(encoded.c.payload).label("fp")).subquery("printed")


def stage_statement(
    columns: Columns,
    scope: Scope,
    compare: bool,
    rows: sa.FromClause | None = None,
    *,
    by_text: bool = False,
) -> sa.Insert:
    """INSERT INTO staging the rows of `ROWS` (or of `rows`: the source's query itself, in the
    state database), keyed, encoded and fingerprinted; with `compare`, a row the snapshot holds
    unchanged is staged by its key alone.

    `by_text` compares each row's payload with the snapshot's stored text, and computes an md5
    only for the rows that differ: equal texts are equal fingerprints, and an unchanged rerun of
    1M people on DuckDB spent about 0.3 s of its 1.0 s staging on md5s it then threw away. A
    snapshot row without a stored payload is compared by its fingerprint."""
    if compare and by_text:
        return _staged_by_text(columns, scope, rows)
    printed = _printed(columns, rows)
    fingerprint: Expr = printed.c.fp
    payload: Expr = printed.c.payload
    source: Any = printed
    if compare:
        held = _held(scope)
        changed = held.c.fingerprint.is_distinct_from(printed.c.fp)
        fingerprint = sa.case((changed, printed.c.fp))
        payload = sa.case((changed, printed.c.payload))
        source = printed.outerjoin(held, held.c.key == printed.c.key)
    picked = sa.select(
        sa.literal(scope.run), printed.c.key, fingerprint, payload, printed.c.ord
    ).select_from(source)
    return sa.insert(staging).from_select(STAGED, picked)


STAGED = ["run", "key", "fingerprint", "payload", "ord"]


def _held(scope: Scope, *extra: sa.Column[Any]) -> sa.Subquery:
    """The snapshot's rows of this sync: key, fingerprint (and `extra` columns)."""
    return (
        sa.select(snapshot.c.key, snapshot.c.fingerprint, *extra)
        .where(snapshot.c.sync == scope.sync, snapshot.c.destination == scope.destination)
        .subquery("held")
    )


def _staged_by_text(columns: Columns, scope: Scope, rows: sa.FromClause | None) -> sa.Insert:
    """`stage_statement` comparing payload texts (`by_text`)."""
    encoded = _encoded(columns, rows)
    held = _held(scope, snapshot.c.payload)
    fingerprint = md5_hex(encoded.c.payload)
    same = sa.case(  # a new row is a change before any md5 is computed for it
        (held.c.key.is_(None), sa.false()),
        (held.c.payload.is_(None), held.c.fingerprint == fingerprint),
        else_=held.c.payload == encoded.c.payload,
    )
    changed = sa.not_(same)
    picked = sa.select(
        sa.literal(scope.run),
        encoded.c.key,
        sa.case((changed, fingerprint)),  # DuckDB runs a CASE branch for its rows only
        sa.case((changed, encoded.c.payload)),
        encoded.c.ord,
    ).select_from(encoded.outerjoin(held, held.c.key == encoded.c.key))
    return sa.insert(staging).from_select(STAGED, picked)


def plan_statement(columns: Columns, scope: Scope, after: int, excluded: list[str]) -> sa.Insert:
    """INSERT INTO the plan the rows of `ROWS` as adds, keyed, encoded and fingerprinted, but
    those of `excluded` keys, numbered after `after` (a streamed first run's chunk: its rows'
    staging numbers are dense from 0, so without exclusions a row's seq is its number + 1)."""
    printed = _printed(columns)
    seq: Expr = printed.c.ord + 1
    kept: Expr = sa.true()
    if excluded:
        seq = sa.func.row_number().over(order_by=printed.c.ord) + after
        kept = printed.c.key.not_in(excluded)
    rows = sa.select(
        sa.literal(scope.run),
        seq,
        sa.literal("add"),
        printed.c.key,
        printed.c.fp,
        printed.c.payload,
    ).where(kept)
    return sa.insert(plan).from_select(["run", "seq", "op", "key", "fingerprint", "payload"], rows)


# --- the stream --------------------------------------------------------------------------------


def _blank(array: pa.Array) -> pa.Array:
    """True where a value is NULL or, as text, empty (normalised values: NaN is NULL)."""
    missing = pc.is_null(array, nan_is_null=pa.types.is_floating(array.type))
    if _is_text(array.type):
        text = array.cast(pa.string()) if pa.types.is_dictionary(array.type) else array
        missing = pc.or_(missing, pc.equal(text, ""))
    return pc.fill_null(missing, True)


def _constant(value: bool, size: int) -> pa.Array:
    return pa.repeat(pa.scalar(value, pa.bool_()), size)


_COUNTING: list[pa.Array] = [pa.array([], pa.int64())]  # 0, 1, 2...: grown as batches need


def _numbers(first: int, count: int) -> pa.Array:
    """first, first + 1, ... (count of them) as int64, by one vectorised add."""
    counting = _COUNTING[0]  # read once: another thread's stream may replace it
    if len(counting) < count:
        counting = _COUNTING[0] = pa.array(range(count), pa.int64())
    return pc.add(counting.slice(0, count), pa.scalar(first, pa.int64()))


class Stream:
    """The source's batches as the SQL reads them: prepared (`Columns.prepare`), numbered in
    staging order, without the rows set aside, which are counted in `out` as
    `engine.extract.encode` counts them. A failure of the source is kept in `failure`: DuckDB,
    which pulls the batches, reports it only as a failed scan."""

    def __init__(
        self, columns: Columns, batches: Iterator[SourceBatch], out: Extracted, cursor: str | None
    ) -> None:
        self.columns, self.batches, self.out, self.cursor = columns, batches, out, cursor
        self.failure: BaseException | None = None

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        try:
            for batch in self.batches:
                yield self.kept(batch)
        except BaseException as exc:
            self.failure = exc
            raise

    def set_aside(self, prepared: pa.RecordBatch) -> tuple[pa.Array, pa.Array]:
        """(invalid, skipped) masks: a NULL or empty key part, person or event name is invalid;
        an event whose name the filter leaves out is skipped."""
        layout, size = self.columns.layout, prepared.num_rows
        invalid = _constant(False, size)
        for part in self.columns.key_texts(prepared):
            invalid = pc.or_(invalid, _blank(part))
        for role in ("person", "event_name"):
            if role in layout.roles:
                invalid = pc.or_(invalid, _blank(prepared.column(layout.roles[role])))
        if layout.event_filter is None:
            return invalid, _constant(False, size)
        column = layout.roles.get("event_name")
        names = prepared.column(column) if column else pa.array([layout.event_name] * size)
        allowed = pa.array(sorted(layout.event_filter), pa.string())
        inside = (
            pc.is_in(names.cast(pa.string()), value_set=allowed)
            if _is_text(names.type) or names.null_count == size
            else _constant(False, size)
        )
        return invalid, pc.and_(pc.invert(invalid), pc.invert(pc.fill_null(inside, False)))

    def kept(self, batch: SourceBatch) -> pa.RecordBatch:
        out = self.out
        assert batch.arrow is not None
        if self.cursor is not None:
            observe_cursor(batch, self.cursor, out.highest)
        prepared = self.columns.prepare(batch.arrow)
        invalid, skipped = self.set_aside(prepared)
        rows = pc.indices_nonzero(invalid).to_pylist()
        if rows:
            describe_invalid(self.columns.layout, batch, rows, out)
        left_out = pc.sum(skipped).as_py() or 0
        out.skipped += left_out
        kept = prepared
        if rows or left_out:  # else no copy of the batch
            kept = prepared.filter(pc.invert(pc.or_(invalid, skipped)))
        numbers = _numbers(out.staged, kept.num_rows)
        out.rows += batch.size
        out.staged += kept.num_rows
        return pa.RecordBatch.from_arrays([*kept.columns, numbers], [*kept.schema.names, ORD])


def stage(
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
    """Stage the source's rows (`first`, then `rest`) by one INSERT in the state database, which
    pulls the batches as it goes."""
    assert first.arrow is not None
    columns = Columns(layout, first.arrow.schema, first.json_columns)
    stream = Stream(columns, itertools.chain([first], rest), out, cursor)
    batches = iter(stream)
    head = next(batches)
    reader = pa.RecordBatchReader.from_batches(head.schema, itertools.chain([head], batches))
    try:
        load(conn, scope, columns, reader, compare=compare)
    except Exception:
        if stream.failure is not None:  # the source failed: its own error says what to do
            raise stream.failure from None
        raise


def load(
    conn: Connection,
    scope: Scope,
    columns: Columns,
    rows: pa.RecordBatchReader | pa.Table,
    *,
    compare: bool,
) -> None:
    """Stage prepared rows (`Stream`'s batches, as a reader or a table) by one INSERT, comparing
    payload texts when the snapshot's fit the join's memory (`texts_fit`)."""
    by_text = compare and texts_fit(conn, scope)
    with registered(conn, rows):
        conn.execute(stage_statement(columns, scope, compare, by_text=by_text))


TEXT_JOIN_BYTES = 200_000_000  # half the DuckDB state database's memory_limit (engine.state)


def texts_fit(conn: Connection, scope: Scope) -> bool:
    """Whether the snapshot's payload texts of this sync fit `TEXT_JOIN_BYTES` (its rows times
    the mean length of its first thousand): compared by text beyond that, DuckDB's join spills
    to disk (10M people, an unchanged rerun: 24.2 s by text, 20.4 s by fingerprint)."""
    mine = sa.and_(snapshot.c.sync == scope.sync, snapshot.c.destination == scope.destination)
    held = conn.execute(sa.select(sa.func.count()).where(mine)).scalar_one()
    first = sa.select(sa.func.strlen(snapshot.c.payload).label("n")).where(mine).limit(1000)
    mean = conn.execute(sa.select(sa.func.avg(first.subquery().c.n))).scalar_one() or 0
    return bool(held * float(mean) <= TEXT_JOIN_BYTES)  # each result read to its end (DuckDB)


@contextmanager
def registered(conn: Connection, rows: pa.RecordBatchReader | pa.Table) -> Iterator[None]:
    """Prepared rows readable as `ROWS` in the state database, for the block."""
    raw: Any = conn.connection.driver_connection
    raw.register(ROWS, rows)
    try:
        yield
    finally:
        raw.unregister(ROWS)
