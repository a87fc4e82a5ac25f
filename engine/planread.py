"""The plan as delivery reads it: chunks of consecutive rows, each read in a worker thread while
the one before is sent (SPEC §7.1).

With a destination's operation SQL (`Destination.operation_sql`) the state database builds each
row's operation as the chunk is read, and the chunk carries those as bytes; the rows it leaves
come as `PlannedRecord`s, as every row does without it. A plan still being written (a streamed
first run, `engine.streaming`) is read as far as its feed says.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import sqlalchemy as sa

from engine import diff, streaming
from engine.config import Sync
from engine.destination import Destination, PlanChunk, PlannedRecord
from engine.state import StateStore

PLAN_CHUNK = 20_000
BUILT_CHUNK = 50_000  # rows whose operations SQL builds: each query costs ~10 ms to plan, and
# 1M person adds read in 20k-row chunks took 1.95 s, in 50k-row ones 1.52 s

Built = tuple[sa.Subquery, sa.Select[Any]]  # plan rows, and the destination's operations of them


def planned(rows: Sequence[Any]) -> list[PlannedRecord]:
    return [PlannedRecord(*row) for row in rows]


def built(sync: Sync, destination: Destination, store: StateStore, run: str) -> Built | None:
    """The plan rows of `run` and the destination's operations of them, if it has SQL for
    this sync in this state database."""
    rows = diff.plan_rows(run)
    operations = destination.operation_sql(sync, rows, store.dialect)
    return (rows, operations) if operations is not None else None


async def chunks(
    store: StateStore, run: str, built: Built | None, feed: streaming.PlanFeed | None = None
) -> AsyncIterator[PlanChunk]:
    """The plan in chunks of consecutive sequence numbers (they are dense: an empty chunk is
    the end); the next chunk is read (in a thread) while this one is sent."""
    if feed is not None:
        async for chunk in _fed(store, run, built, feed):
            yield chunk
        return
    after, size = 0, PLAN_CHUNK if built is None else BUILT_CHUNK
    reading = asyncio.ensure_future(asyncio.to_thread(read, store, run, after, built, size))
    try:
        while chunk := await reading:
            after += size
            reading = asyncio.ensure_future(asyncio.to_thread(read, store, run, after, built, size))
            yield chunk
    finally:
        await asyncio.gather(reading, return_exceptions=True)


async def _fed(
    store: StateStore, run: str, built: Built | None, feed: streaming.PlanFeed
) -> AsyncIterator[PlanChunk]:
    """A plan still being written, in chunks, each read once the feed says it is there (at
    most `PLAN_CHUNK` rows: the first request waits for the first chunk)."""
    after = 0
    while await feed.wait_for(after + 1):
        limit = min(PLAN_CHUNK, feed.high - after)
        chunk = await asyncio.to_thread(read, store, run, after, built, limit)
        if not chunk:
            return
        after += limit
        yield chunk


def read(store: StateStore, run: str, after: int, built: Built | None, limit: int) -> PlanChunk:
    """Up to `limit` plan rows after `after`: with the destination's operation SQL, those it
    builds come as finished bytes and only the rest as records."""
    with store.tx() as conn:
        if built is None:
            return PlanChunk(records=planned(diff.read_plan(conn, run, after, limit)))
        done, rows = diff.read_built(conn, *built, after, limit)
    return PlanChunk(done, planned(rows))


def explain(sync: Sync, destination: Destination, store: StateStore, run: str) -> None:
    """For `sync plan --explain`: the SQL by which delivery would read the operations the state
    database builds (the destination need not be opened: `operation_sql` contacts nothing)."""
    reading = built(sync, destination, store, run)
    if reading is not None:
        with store.tx() as conn:
            diff.explain_built(conn, reading[1], BUILT_CHUNK)
