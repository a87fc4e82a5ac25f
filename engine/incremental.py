"""Incremental reads (SPEC §7.2): read only the rows whose cursor passed the acknowledged mark.

A sync with `incremental: {cursor, lookback, full_every}` keeps, with its snapshot, the largest
cursor value of the last run that delivered everything it read (`cio_sync_cursors`). The next
run reads `WHERE cursor > mark - lookback`, pushed into the source query so the database
filters; what it reads is diffed against the snapshot as always, so a re-read row is not resent
unless it changed, and an event is never sent twice. An incremental read computes no removals.

A full read (which a mirror needs to remove anything) happens when there is no mark yet, when
the query or the cursor changed since the mark was taken, every `full_every`, and with `--full`.

The mark is the cursor's largest value as the source returned it, kept as text with its kind
(`timestamp`, `timestamptz`, `date`, `number`, `text`), and written back into the query as a
typed SQL literal; a run with rejected records does not move it, so they are read again.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine.config import Sync
from engine.state import cursors, now, upsert


@dataclass(frozen=True)
class Mark:
    """The acknowledged high-water mark of one sync and destination."""

    value: str | None  # the cursor's largest value delivered, as text (see `_text`)
    kind: str | None
    layout: str  # the query and cursor the mark belongs to
    full_at: dt.datetime | None  # the last full read


@dataclass(frozen=True)
class Read:
    """How this run reads its source: in full, or past a lower bound (a typed SQL literal)."""

    mode: str = "full"  # full | incremental
    cursor: str | None = None
    literal: str | None = None  # the bound as SQL, for the WHERE clause
    bound: str | None = None  # the bound as text, for history

    def query(self, sql: str, quote: Callable[[str], str]) -> str:
        """The sync's query, filtered past the bound when incremental (`quote` quotes the cursor
        column in the source's dialect)."""
        if self.mode == "full" or self.cursor is None:
            return sql
        body = sql.strip().rstrip(";")
        where = f"{quote(self.cursor)} > {self.literal}"
        return f"SELECT * FROM (\n{body}\n) AS cio_sync_incremental\nWHERE {where}"


def layout_of(sync: Sync) -> str:
    """What a mark belongs to: a changed query or cursor makes the next read a full one."""
    cursor = sync.incremental.cursor if sync.incremental else ""
    return hashlib.md5(f"{cursor}\x00{sync.sql}".encode(), usedforsecurity=False).hexdigest()


def load(conn: Connection, sync: str, destination: str) -> Mark | None:
    row = conn.execute(
        sa.select(cursors).where(cursors.c.sync == sync, cursors.c.destination == destination)
    ).first()
    if row is None:
        return None
    value, kind = _split(row.mark)
    return Mark(value, kind, row.layout, row.full_at)


def plan_read(sync: Sync, mark: Mark | None, *, full: bool, at: dt.datetime) -> Read:
    """Full or incremental, and from where."""
    spec = sync.incremental
    if spec is None or full or mark is None or mark.value is None or mark.kind is None:
        return Read()
    every = spec.full_every_delta()
    due = every is not None and (mark.full_at is None or at - mark.full_at >= every)
    if mark.layout != layout_of(sync) or due:
        return Read()
    bound = _lower_bound(mark.kind, mark.value, spec.lookback_delta(), spec.lookback)
    return Read("incremental", spec.cursor, _literal(mark.kind, bound), _text(mark.kind, bound))


def save(conn: Connection, sync: Sync, destination: str, read: Read, highest: Highest) -> None:
    """After a run that delivered everything it read: the mark moves to the largest cursor value
    read (never back), and a full read's time is noted."""
    if sync.incremental is None:
        return
    previous = load(conn, sync.name, destination)
    same = previous is not None and previous.layout == layout_of(sync)
    marks = [highest.text()]
    if same and previous is not None and previous.value is not None:
        marks.append(f"{previous.value}|{previous.kind}")
    full_at = now() if read.mode == "full" else (previous.full_at if same and previous else None)
    row = {
        "sync": sync.name,
        "destination": destination,
        "mark": _largest([m for m in marks if m]),
        "layout": layout_of(sync),
        "full_at": full_at,
    }
    upsert(conn, cursors, row)


def _split(mark: str | None) -> tuple[str | None, str | None]:
    if not mark:
        return None, None
    value, _, kind = mark.rpartition("|")
    return value, kind


def _largest(marks: list[str]) -> str | None:
    """The largest of marks of one kind; a mark of another kind (the column's type changed)
    replaces the others."""
    if not marks:
        return None
    kind = _split(marks[0])[1] or "text"
    same = [m for m in marks if _split(m)[1] == kind]
    return max(same, key=lambda m: _parse(kind, _split(m)[0] or ""))


class Highest:
    """The largest cursor value of a run's rows, batch by batch."""

    def __init__(self) -> None:
        self.value: Any = None
        self.kind: str | None = None

    def arrow(self, column: pa.Array | pa.ChunkedArray) -> None:
        if len(column) == column.null_count:
            return
        top = pc.max(column).as_py()
        self._see(top, _arrow_kind(column.type))

    def python(self, values: list[Any]) -> None:
        present = [v for v in values if v is not None]
        if present:
            top = max(present)
            self._see(top, _python_kind(top))

    def text(self) -> str | None:
        if self.value is None or self.kind is None:
            return None
        return f"{_text(self.kind, self.value)}|{self.kind}"

    def shown(self) -> str | None:
        return None if self.value is None or self.kind is None else _text(self.kind, self.value)

    def _see(self, value: Any, kind: str) -> None:
        if self.value is None or value > self.value:
            self.value, self.kind = value, kind


def _arrow_kind(kind: pa.DataType) -> str:
    if pa.types.is_timestamp(kind):
        return "timestamptz" if kind.tz else "timestamp"
    if pa.types.is_date(kind):
        return "date"
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        return "number"
    return "text"


def _python_kind(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return "timestamptz" if value.tzinfo else "timestamp"
    if isinstance(value, dt.date):
        return "date"
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        return "number"
    return "text"


def _text(kind: str, value: Any) -> str:
    if kind == "timestamptz":
        return str(value.astimezone(dt.UTC).isoformat())
    if kind in ("timestamp", "date"):
        return str(value.isoformat())
    return str(value)


def _parse(kind: str, text: str) -> Any:
    if kind in ("timestamp", "timestamptz"):
        return dt.datetime.fromisoformat(text)
    if kind == "date":
        return dt.date.fromisoformat(text)
    if kind == "number":
        return Decimal(text)
    return text


def _lower_bound(kind: str, text: str, span: dt.timedelta, lookback: str | int) -> Any:
    value = _parse(kind, text)
    if kind in ("timestamp", "timestamptz", "date"):
        return value - span
    if kind == "number":
        return value - Decimal(lookback if isinstance(lookback, int) else 0)
    return value


def _literal(kind: str, value: Any) -> str:
    """A typed SQL literal of standard SQL (DuckDB, PostgreSQL, Snowflake, BigQuery)."""
    if kind == "timestamptz":
        return f"TIMESTAMP WITH TIME ZONE '{value.astimezone(dt.UTC).isoformat(sep=' ')}'"
    if kind == "timestamp":
        return f"TIMESTAMP '{value.isoformat(sep=' ')}'"
    if kind == "date":
        return f"DATE '{value.isoformat()}'"
    if kind == "number":
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"
