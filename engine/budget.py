"""One request budget per workspace, shared by every process and host that delivers to it
(SPEC §7.3), with adaptive pacing after 429s.

The budget hands out start slots (a generic cell rate algorithm): the store keeps, per workspace
API, the time of its next free slot; a process asks for a block of slots (a tenth of a second's
worth), the store gives it the next ones, `SPACING` apart, and moves its next free slot past
them. Each request starts at its slot, or not at all when its slot went by more than `LATE_S`
ago, so the starts of all processes together are one evenly spaced stream: however many
processes share it, any sliding second holds at most the rate. The store sees one short
transaction a block (about ten a second for a busy workspace), not one a request, and no slot
is granted more than `HORIZON_S` ahead. A process killed while holding slots stalls nobody:
its slots go by unused.

Slots are spaced `(1 + MARGIN_S) / rate` apart: the margin absorbs a start's lateness
(`LATE_S`) and the jitter between a start here and its arrival there, so the arrivals too keep
the rate. One process alone reaches `rate / (1 + MARGIN_S)` starts a second.

The rate itself adapts: a 429 multiplies it by `DECREASE` (at most once a second, whoever saw
it), and every `RECOVER_S` without a 429 it climbs back by `INCREASE` of the limit, never above
the workspace's `rate_limit`.

Where the budget is kept depends on the state store: a row per workspace API in PostgreSQL
(`FOR UPDATE` serialises the processes of every host, and slots are in the database's clock), a
lock file beside a DuckDB state file (the processes of one host), or this process's memory (an
in-memory store).
"""

from __future__ import annotations

import asyncio
import fcntl
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import orjson
import sqlalchemy as sa

from engine.state import StateStore, budget, insert_new

BLOCK_S = 0.1  # a block holds this long's worth of slots at the current rate
HORIZON_S = 0.25  # no slot is granted further ahead than this
LATE_S = 0.03  # a request may start this long after its slot, no later
AHEAD_S = BLOCK_S / 2  # the next block is asked for while the slots held last this long
MARGIN_S = 0.1  # lateness plus the jitter between a start here and its arrival there
WINDOW = HORIZON_S + BLOCK_S  # the longest a killed holder's slots keep the others waiting
DECREASE = 0.7
INCREASE = 0.1  # of the limit, every RECOVER_S without a 429
RECOVER_S = 15.0


@dataclass(frozen=True)
class Grant:
    """`count` start slots, the first at `first` (in the ledger's clock), `spacing` apart; or
    none, and how long to wait before asking again."""

    first: float
    spacing: float
    count: int
    wait: float = 0.0


@dataclass
class Window:
    """What the store keeps of one workspace API: its next free slot and its current rate."""

    rate: float
    next_slot: float = 0.0
    changed_at: float = 0.0
    throttled_at: float = -math.inf

    def recover(self, now: float, limit: int) -> None:
        """Climb back towards `limit` while no 429 arrives; follow a lowered limit at once."""
        self.rate = min(self.rate, float(limit))
        quiet_since = max(self.changed_at, self.throttled_at)
        if self.rate < limit and now - quiet_since >= RECOVER_S:
            self.rate = min(float(limit), self.rate + INCREASE * limit)
            self.changed_at = now

    def grant(self, now: float, limit: int, want: int) -> Grant:
        """Up to `want` slots from the next free one (never one in the past), unless that is
        more than `HORIZON_S` ahead."""
        self.recover(now, limit)
        spacing = (1.0 + MARGIN_S) / self.rate + 1e-6  # a microsecond: rounding never adds one
        first = max(self.next_slot, now)
        if first - now > HORIZON_S:
            return Grant(first, spacing, 0, wait=first - now - HORIZON_S)
        count = max(1, min(want, math.floor((now + HORIZON_S - first) / spacing) + 1))
        self.next_slot = first + count * spacing
        return Grant(first, spacing, count)

    def throttle(self, now: float) -> None:
        """A 429: the rate drops, once a second whoever saw it."""
        if now - self.throttled_at >= 1.0:
            self.rate = max(1.0, self.rate * DECREASE)
            self.throttled_at = self.changed_at = now

    def dumps(self) -> str:
        document = {
            "rate": self.rate,
            "next_slot": self.next_slot,
            "changed_at": self.changed_at,
            "throttled_at": None if math.isinf(self.throttled_at) else self.throttled_at,
        }
        return orjson.dumps(document).decode()

    @classmethod
    def loads(cls, text: str | None, limit: int) -> Window:
        if not text:
            return cls(rate=float(limit))
        data = orjson.loads(text)
        throttled = data.get("throttled_at")
        return cls(
            rate=float(data["rate"]),
            next_slot=float(data.get("next_slot", 0.0)),  # a budget kept before slots: none
            changed_at=float(data["changed_at"]),
            throttled_at=-math.inf if throttled is None else float(throttled),
        )


T = TypeVar("T")


class Ledger(Protocol):
    """Where windows are kept: `change` loads one, applies `fn` at the store's `now`, saves it."""

    def change(self, key: str, limit: int, fn: Callable[[Window, float], T]) -> T: ...


class MemoryLedger:
    """The windows of this process only (an in-memory state store)."""

    def __init__(self) -> None:
        self._windows: dict[str, str] = {}
        self._lock = threading.Lock()

    def change(self, key: str, limit: int, fn: Callable[[Window, float], T]) -> T:
        with self._lock:
            window = Window.loads(self._windows.get(key), limit)
            result = fn(window, time.time())
            self._windows[key] = window.dumps()
            return result


class FileLedger:
    """The windows of one host's processes, in a JSON file locked with flock while changed."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def change(self, key: str, limit: int, fn: Callable[[Window, float], T]) -> T:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                handle.seek(0)
                raw = handle.read()
                windows: dict[str, str] = orjson.loads(raw) if raw.strip() else {}
                window = Window.loads(windows.get(key), limit)
                result = fn(window, time.time())
                windows[key] = window.dumps()
                handle.seek(0)
                handle.truncate()
                handle.write(orjson.dumps(windows))
                handle.flush()
                return result
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


class DatabaseLedger:
    """The windows of every host, one row each in the state store, changed under `FOR UPDATE`
    with the database's clock."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def change(self, key: str, limit: int, fn: Callable[[Window, float], T]) -> T:
        with self.store.tx() as conn:
            insert_new(conn, budget, {"key": key, "state": ""})
            row = conn.execute(
                sa.select(budget.c.state, sa.func.extract("epoch", sa.func.clock_timestamp()))
                .where(budget.c.key == key)
                .with_for_update()
            ).one()
            window = Window.loads(row[0], limit)
            result = fn(window, float(row[1]))
            conn.execute(sa.update(budget).where(budget.c.key == key).values(state=window.dumps()))
            return result


def ledger_for(store: StateStore) -> Ledger:
    """PostgreSQL keeps the budget for every host; a DuckDB file's lock file for its host."""
    if store.dialect == "postgresql":
        return DatabaseLedger(store)
    database = store.engine.url.database
    if store.dialect == "duckdb" and database not in (None, "", ":memory:"):
        return FileLedger(Path(f"{database}.budget"))
    return MemoryLedger()


class SharedBudget:
    """Request starts of one workspace API under the shared budget (`engine.destination.
    RateBudget`): slots asked for in blocks, in a worker thread, each used at its time."""

    def __init__(self, ledger: Ledger, key: str, limit: int) -> None:
        self.ledger, self.key, self.limit = ledger, key, limit
        self.rate = float(limit)
        self.lowest_rate = float(limit)
        self._slots: deque[float] = deque()  # in this process's monotonic clock
        self._lock = asyncio.Lock()
        self._asking: asyncio.Future[tuple[list[float], float]] | None = None

    async def take(self) -> None:
        """Return at the slot of this process's next request start."""
        async with self._lock:
            while (slot := self._next_slot()) is None:
                wait = await self._granted()
                if wait:
                    await asyncio.sleep(wait)
            self._ask_ahead()
            delay = slot - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    async def throttled(self) -> None:
        """A 429 arrived: lower the workspace's rate for every process sharing it."""
        await asyncio.to_thread(self.ledger.change, self.key, self.limit, self._throttle)

    def _next_slot(self) -> float | None:
        """The next slot not gone by for more than `LATE_S` (those that have are dropped)."""
        now = time.monotonic()
        while self._slots and self._slots[0] < now - LATE_S:
            self._slots.popleft()
        return self._slots.popleft() if self._slots else None

    def _ask_ahead(self) -> None:
        """Ask for the next block while the slots held last `AHEAD_S`: it then follows on from
        them. Asked for only once they ran out, it began when the ask was answered (a thread
        and the ledger's lock later), and one process lost a tenth of its slots."""
        if self._asking is None and (
            not self._slots or self._slots[-1] < time.monotonic() + AHEAD_S
        ):
            self._asking = asyncio.ensure_future(asyncio.to_thread(self._ask))

    async def _granted(self) -> float:
        """Take in the block asked for (asking now if nobody has); how long to wait before
        asking again when the ledger granted none."""
        if self._asking is None:
            self._asking = asyncio.ensure_future(asyncio.to_thread(self._ask))
        try:
            slots, wait = await self._asking
        finally:
            self._asking = None
        self._slots.extend(slots)
        return wait

    def _ask(self) -> tuple[list[float], float]:
        """A block of slots from the ledger, in this process's clock."""
        want = max(1, math.ceil(self.rate * BLOCK_S))
        asked = time.monotonic()
        grant, ledger_now = self.ledger.change(self.key, self.limit, self._granter(want))
        offset = (asked + time.monotonic()) / 2 - ledger_now  # the ledger's clock → ours
        return [grant.first + offset + n * grant.spacing for n in range(grant.count)], grant.wait

    def _granter(self, want: int) -> Callable[[Window, float], tuple[Grant, float]]:
        def grant(window: Window, now: float) -> tuple[Grant, float]:
            answer = window.grant(now, self.limit, want)
            self._observe(window.rate)
            return answer, now

        return grant

    def _throttle(self, window: Window, now: float) -> None:
        window.throttle(now)
        self._observe(window.rate)

    def _observe(self, rate: float) -> None:
        self.rate = rate
        self.lowest_rate = min(self.lowest_rate, rate)


class Budgets:
    """The shared budgets of one process, one per workspace API, kept where `ledger` keeps them."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._budgets: dict[str, SharedBudget] = {}

    def budget(self, identity: str, api: str, limit: int) -> SharedBudget:
        key = f"{identity}:{api}"
        if key not in self._budgets:
            self._budgets[key] = SharedBudget(self.ledger, key, limit)
        return self._budgets[key]
