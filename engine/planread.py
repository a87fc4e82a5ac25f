"""The plan as delivery reads it: chunks of consecutive rows, read ahead in a worker thread while
earlier ones are sent (SPEC §7.1).

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
AHEAD = 3  # chunks read ahead of delivery
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
    """The plan in chunks of consecutive sequence numbers, read (in a worker thread) up to
    `AHEAD` chunks ahead of the one being sent: a read waits for the state store's other
    transactions (staging, acknowledgements), and delivery must not wait with it."""
    ready: asyncio.Queue[PlanChunk | None] = asyncio.Queue(AHEAD)
    reading = asyncio.ensure_future(_read_ahead(store, run, built, feed, ready))
    try:
        while (chunk := await ready.get()) is not None:
            yield chunk
        await reading  # its failure, if it failed
    finally:
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)


async def _read_ahead(
    store: StateStore,
    run: str,
    built: Built | None,
    feed: streaming.PlanFeed | None,
    ready: asyncio.Queue[PlanChunk | None],
) -> None:
    """Put the plan's chunks on `ready`, then None. The plan's sequence numbers are dense: an
    empty chunk is its end. A plan still being written is read as far as its feed says, in
    chunks of at most `PLAN_CHUNK` rows (the first request waits for the first chunk)."""
    after, size = 0, PLAN_CHUNK if built is None or feed is not None else BUILT_CHUNK
    try:
        while feed is None or await feed.wait_for(after + 1):
            limit = size if feed is None else min(size, feed.high - after)
            chunk = await asyncio.to_thread(read, store, run, after, built, limit)
            if not chunk:
                break
            after += limit
            await ready.put(chunk)
    except asyncio.CancelledError:
        raise
    except BaseException:
        await ready.put(None)  # the reader then awaits this task, which raises
        raise
    await ready.put(None)


def read(store: StateStore, run: str, after: int, built: Built | None, limit: int) -> PlanChunk:
    """Up to `limit` plan rows after `after`: with the destination's operation SQL, those it
    builds come as finished bytes and only the rest as records."""
    with store.side("plan reads") as conn:
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
