"""Streaming first runs (SPEC §7.1): while a sync's snapshot is empty, every record it stages is
an add, so delivery can start while the source is still being read. A first run then costs about
the larger of extraction and delivery, not their sum.

The run stages the source in chunks; each chunk's adds enter the plan, numbered on from the
previous chunk's, in the transaction that stages them, and `PlanFeed` tells the delivery how far
the plan has been written. What the whole-result plan checks first still holds:

- duplicate keys are never sent: they are found before anything is staged, by one pass over the
  source's keys (`duplicate_keys`, the same key SQL as staging), and left out of the plan; the
  end of the run sets them aside as `mark_duplicates` does;
- the guard cannot trip: an empty snapshot has nothing to remove.

A first run streams when its rows are keyed by SQL in a DuckDB state store and nothing but the
key sets rows aside (person, object, relationship and device syncs; not events, whose person,
name and filter set rows aside, and not keys normalised in Python, such as emails).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import sqlalchemy as sa

from engine import diff, sources, sqlstage
from engine.config import Sync
from engine.diff import PlanCounts, Scope
from engine.extract import Extracted, Layout, SourceBatch
from engine.state import StateStore

CHUNK_ROWS = 100_000  # rows staged and planned per transaction
FIRST_CHUNK_ROWS = 20_000  # but the first: delivery starts once it is planned
MAX_DUPLICATES = 10_000  # more duplicate keys than this: the run plans the whole result first


class PlanFeed:
    """How far a streamed plan has been written (the highest sequence number committed), and
    whether it is complete; written from the staging thread, awaited on the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.streaming = False
        self.high = 0
        self.complete = False
        self.failure: BaseException | None = None
        self.stopped = threading.Event()  # the delivery ended early: staging may stop too
        self._changed = asyncio.Event()

    def _set(self, **values: Any) -> None:
        def apply() -> None:
            for name, value in values.items():
                setattr(self, name, value)
            self._changed.set()

        self.loop.call_soon_threadsafe(apply)

    def start(self) -> None:
        self._set(streaming=True)

    def advance(self, high: int) -> None:
        self._set(high=high)

    def finish(self, failure: BaseException | None = None) -> None:
        self._set(complete=True, failure=failure)

    async def changed(self) -> None:
        await self._changed.wait()
        self._changed.clear()

    async def wait_for(self, seq: int) -> bool:
        """Wait until the plan holds `seq` (True) or is complete without it (False)."""
        while self.high < seq:
            if self.complete:
                if self.failure is not None:
                    raise self.failure
                return self.high >= seq
            await self.changed()
        return True


def streams(layout: Layout, columns: sqlstage.Columns) -> bool:
    """Whether nothing but a NULL or empty key sets this sync's rows aside, and SQL keys them."""
    aside = "person" in layout.roles or "event_name" in layout.roles or layout.event_filter
    return not aside and not columns.python_keys


def duplicate_keys(
    sync: Sync, url: str, root: Path, store: StateStore, columns: sqlstage.Columns
) -> list[tuple[str, int]]:
    """The keys more than one source row has, by the key SQL staging uses, on the source (its
    relative file paths from the project's `root`, as the read's)."""
    keyed = sqlstage.key_expr(columns)
    present = [
        sa.and_(part.is_not(None), part != "")
        for part in (columns.keys[c] for c in columns.layout.key_columns)
    ]
    context = store.reader() if store.holds(url) else sources.connect(sync.source, url)
    query_rows = sa.text(f"(\n{sync.sql.strip().rstrip(';')}\n) AS {sqlstage.ROWS}")
    with context as conn, sources.query_errors(sync):
        conn.exec_driver_sql("SET file_search_path = ?", (str(root),))
        inner = (
            sa.select(keyed.label("key")).select_from(query_rows).where(*present).subquery("keys")
        )
        query = (
            sa.select(inner.c.key, sa.func.count())
            .group_by(inner.c.key)
            .having(sa.func.count() > 1)
            .limit(MAX_DUPLICATES + 1)
        )
        return [(key, count) for key, count in conn.execute(query)]


def groups(
    batches: Iterator[pa.RecordBatch], rows: int, first: int | None = None
) -> Iterator[list[pa.RecordBatch]]:
    """Consecutive batches in groups of at least `rows` rows (the first of at least `first`, the
    last one may hold fewer)."""
    group: list[pa.RecordBatch] = []
    size, limit = 0, first or rows
    for batch in batches:
        group.append(batch)
        size += batch.num_rows
        if size >= limit:
            yield group
            group, size, limit = [], 0, rows
    if group:
        yield group


def stage_and_plan(
    store: StateStore,
    scope: Scope,
    columns: sqlstage.Columns,
    batches: Iterator[SourceBatch],
    out: Extracted,
    feed: PlanFeed,
    excluded: list[str],
    cursor: str | None,
) -> int:
    """Plan the source's rows as adds chunk by chunk, all but those of `excluded` keys, straight
    from the batches (staging would hold nothing a first run reads again), telling `feed` after
    each chunk; the number of operations planned."""
    stream = sqlstage.Stream(columns, batches, out, cursor)
    planned = 0
    for group in groups(iter(stream), CHUNK_ROWS, FIRST_CHUNK_ROWS):
        if feed.stopped.is_set():
            break
        chunk = pa.Table.from_batches(group)
        with store.side("streaming") as conn:  # beside delivery's reads and acknowledgements
            with sqlstage.registered(conn, chunk):
                conn.execute(sqlstage.plan_statement(columns, scope, planned, excluded))
            planned = diff.planned(conn, scope.run) if excluded else out.staged
        feed.advance(planned)
    return planned


def stream(
    store: StateStore,
    sync: Sync,
    url: str,
    root: Path,
    scope: Scope,
    layout: Layout,
    first: SourceBatch,
    rest: Iterator[SourceBatch],
    out: Extracted,
    feed: PlanFeed,
    cursor: str | None,
) -> bool:
    """Stage and plan a first run chunk by chunk, telling `feed`, when it can stream: its
    snapshot is empty, its source is DuckDB, and only keys set its rows aside. False, having
    read nothing past `first`, when it cannot."""
    assert first.arrow is not None
    if sa.make_url(url).get_backend_name() != "duckdb":
        return False
    columns = sqlstage.Columns(layout, first.arrow.schema, first.json_columns)
    if not streams(layout, columns):
        return False
    with store.tx() as conn:
        if diff.snapshot_size(conn, scope):
            return False
    shared = duplicate_keys(sync, url, root, store, columns)
    if len(shared) > MAX_DUPLICATES:
        return False
    feed.start()
    for key, count in shared:
        out.invalid.append((key, f"duplicate key: {count} rows share it"))
    batches = itertools.chain([first], rest)
    excluded = [key for key, _ in shared]
    out.streamed = stage_and_plan(store, scope, columns, batches, out, feed, excluded, cursor)
    out.duplicates = len(shared)
    return True


def counts(out: Extracted) -> PlanCounts:
    """A streamed run's counts: every planned operation an add; duplicates set aside."""
    return PlanCounts(add=out.streamed or 0, duplicates=out.duplicates)
