"""One request budget per workspace, shared by every process and host that delivers to it
(SPEC §7.3), with adaptive pacing after 429s.

A process takes request starts in blocks: a grant of `count` starts, to be used within
`BLOCK_S` of receiving it (unused ones lapse). A grant is given when the grants of the last
`WINDOW` seconds (one second plus a block's lifetime) leave room under the workspace's current
rate, so the starts of all processes in any sliding second stay within it. The store sees one
short transaction a block (about ten a second for a busy workspace), not one a request. A
process killed while holding a grant stalls nobody: its grant lapses with time.

The rate itself adapts: a 429 multiplies it by `DECREASE` (at most once a second, whoever saw
it), and every `RECOVER_S` without a 429 it climbs back by `INCREASE` of the limit, never above
the workspace's `rate_limit`.

Where the budget is kept depends on the state store: a row per workspace API in PostgreSQL
(`FOR UPDATE` serialises the processes of every host), a lock file beside a DuckDB state file
(the processes of one host), or this process's memory (an in-memory store).
"""

from __future__ import annotations

import asyncio
import fcntl
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

import orjson
import sqlalchemy as sa

from engine.state import StateStore, budget, insert_new

BLOCK_S = 0.1  # a grant's starts must be used within this long of receiving it
MARGIN_S = 0.1  # the jitter between a start here and its arrival there (a loaded host: 0.1 s)
WINDOW = 1.0 + BLOCK_S + MARGIN_S
DECREASE = 0.7
INCREASE = 0.1  # of the limit, every RECOVER_S without a 429
RECOVER_S = 15.0


@dataclass
class Window:
    """What the store keeps of one workspace API: its recent grants and its current rate."""

    rate: float
    grants: list[tuple[float, int]] = field(default_factory=list)  # (granted at, count)
    changed_at: float = 0.0
    throttled_at: float = -math.inf

    def recover(self, now: float, limit: int) -> None:
        """Climb back towards `limit` while no 429 arrives; follow a lowered limit at once."""
        self.rate = min(self.rate, float(limit))
        quiet_since = max(self.changed_at, self.throttled_at)
        if self.rate < limit and now - quiet_since >= RECOVER_S:
            self.rate = min(float(limit), self.rate + INCREASE * limit)
            self.changed_at = now

    def grant(self, now: float, limit: int, want: int) -> tuple[int, float]:
        """(starts granted, seconds to wait before asking again when none were)."""
        self.recover(now, limit)
        self.grants = [(at, n) for at, n in self.grants if at > now - WINDOW]
        room = int(self.rate) - sum(n for _, n in self.grants)
        if room > 0:
            count = min(want, room)
            self.grants.append((now, count))
            return count, 0.0
        return 0, max(0.005, self.grants[0][0] + WINDOW - now)

    def throttle(self, now: float) -> None:
        """A 429: the rate drops, once a second whoever saw it."""
        if now - self.throttled_at >= 1.0:
            self.rate = max(1.0, self.rate * DECREASE)
            self.throttled_at = self.changed_at = now

    def dumps(self) -> str:
        document = {
            "rate": self.rate,
            "grants": self.grants,
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
            grants=[(float(at), int(n)) for at, n in data["grants"]],
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
    RateBudget`): blocks of grants, used within `BLOCK_S`, asked for in a worker thread."""

    def __init__(self, ledger: Ledger, key: str, limit: int) -> None:
        self.ledger, self.key, self.limit = ledger, key, limit
        self.rate = float(limit)
        self.lowest_rate = float(limit)
        self._left = 0
        self._until = 0.0
        self._lock = asyncio.Lock()

    async def take(self) -> None:
        """Return when this process may start one more request."""
        async with self._lock:
            while not self._spend():
                wait = await asyncio.to_thread(self._ask)
                if wait:
                    await asyncio.sleep(wait)

    async def throttled(self) -> None:
        """A 429 arrived: lower the workspace's rate for every process sharing it."""
        await asyncio.to_thread(self.ledger.change, self.key, self.limit, self._throttle)

    def _spend(self) -> bool:
        if self._left > 0 and time.monotonic() < self._until:
            self._left -= 1
            return True
        return False

    def _ask(self) -> float:
        received = time.monotonic()
        want = max(1, math.ceil(self.rate * BLOCK_S))
        count, wait = self.ledger.change(self.key, self.limit, self._granter(want))
        self._left, self._until = count, received + BLOCK_S
        return wait

    def _granter(self, want: int) -> Callable[[Window, float], tuple[int, float]]:
        def grant(window: Window, now: float) -> tuple[int, float]:
            answer = window.grant(now, self.limit, want)
            self._observe(window.rate)
            return answer

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
