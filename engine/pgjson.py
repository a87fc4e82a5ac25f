"""PostgreSQL's spelling of a record's payload (the fingerprint scheme `json-sql-pg-1`, SPEC §4.9).

A PostgreSQL state store stages rows by SQL (`engine.sqlstage`, `engine.pgstage`), which writes
a payload by concatenation: attribute and role names as Python's JSON writer spells them, in
sorted order, and each value as PostgreSQL's `to_json` spells it (strings escaped its way,
doubles in their shortest form, `1e+20`, `1e-07`); nested values (JSON, lists, structs) as
Python's canonical text, which the SQL takes as it is. Records Python still encodes (collections,
sources whose rows arrive as Python values, columns the SQL does not normalise) are written by
orjson, and payloads the previous schema stored likewise.

`respelled` turns such a payload into the SQL's spelling, in SQL, from the values it carries:
the same values give the same text, so the same fingerprint, whichever way they came. It reads
the payload as `json` (not `jsonb`, which would re-spell nested values) and, for each member of
`a` and `r`: a string is escaped again by `to_json`; a number written with a fraction or an
exponent is a double (Python's rules make every other number an integer) and is written again as
PostgreSQL writes that double; anything else (integers, booleans, null, nested values) is kept
as it is. On a payload the SQL wrote it changes nothing.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from engine import explain
from engine.state import Staged, staging

Expr = sa.ColumnElement[Any]


def _value(value: Expr) -> Expr:
    """One member's value as the SQL spells it."""
    text = sa.cast(value, sa.Text)
    path = sa.cast(postgresql.array([], type_=sa.Text), postgresql.ARRAY(sa.Text))
    unquoted = value.op("#>>")(path)  # the string itself
    kind = sa.func.json_typeof(value)
    return sa.case(
        (kind == "string", sa.cast(sa.func.to_json(unquoted), sa.Text)),
        (
            sa.and_(kind == "number", text.regexp_match("[.eE]")),
            sa.cast(sa.func.to_json(sa.cast(text, sa.Double)), sa.Text),
        ),
        else_=text,
    )


def _members(payload: Expr, part: str) -> Expr:
    """The members of the payload's object `part`, respelled and joined, in Python's order
    (code points: the "C" collation's byte order of UTF-8)."""
    each = sa.func.json_each(sa.cast(payload, postgresql.JSON)[part]).table_valued(
        sa.column("key", sa.Text), sa.column("value", postgresql.JSON)
    )
    name = sa.cast(sa.func.to_json(each.c.key), sa.Text)
    member = name.concat(sa.literal(":")).concat(_value(each.c.value))
    ordered = postgresql.aggregate_order_by(sa.literal(","), each.c.key.collate("C"))
    joined = sa.select(sa.func.string_agg(member, ordered)).select_from(each).scalar_subquery()
    return sa.func.coalesce(joined, sa.literal(""))


def respelled(payload: Expr) -> Expr:
    """The payload (`{"a":{...},"r":{...}}`) in the SQL's spelling (PostgreSQL only); NULL
    stays NULL."""
    spelled = (
        sa.literal('{"a":{')
        .concat(_members(payload, "a"))
        .concat(sa.literal('},"r":{'))
        .concat(_members(payload, "r"))
        .concat(sa.literal("}}"))
    )
    return sa.case((payload.is_(None), sa.null()), else_=spelled)


_CHUNK = "cio_sync_chunk"
_COLUMNS = ("run", "key", "fingerprint", "payload", "ord")


def stage_encoded(conn: Connection, run: str, chunk: Staged) -> None:
    """Stage records Python encoded: copied into a temporary table, then inserted with their
    payloads respelled and fingerprinted."""
    conn.exec_driver_sql(
        f"CREATE TEMPORARY TABLE {_CHUNK} (LIKE {staging.name} INCLUDING DEFAULTS) ON COMMIT DROP"
    )
    statement = f"COPY {_CHUNK} ({', '.join(_COLUMNS)}) FROM STDIN"
    explain.note(f"postgresql {conn.engine.url.database or ''}".strip(), statement)
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(statement) as copy:
        for row in chunk.rows():
            copy.write_row((run, *row))
    rows = sa.table(_CHUNK, *(sa.column(name) for name in _COLUMNS))
    spelled = sa.select(rows, respelled(rows.c.payload).label("p")).subquery("spelled")
    picked = sa.select(
        spelled.c.run, spelled.c.key, sa.func.md5(spelled.c.p), spelled.c.p, spelled.c.ord
    )
    conn.execute(sa.insert(staging).from_select(list(_COLUMNS), picked))
    conn.exec_driver_sql(f"DROP TABLE {_CHUNK}")
