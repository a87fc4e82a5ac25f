"""One run per sync at a time (SPEC §4.8), through a row in the state store.

A lock row records host, process id and a lease. It is taken over at once when its holder's
process is gone on this host, or when its lease has expired (a holder on another host). A live
run renews its lease every `lease_s / 3` seconds. A free lock is taken by an insert that does
nothing when the row exists, and takeover is a compare-and-swap on the old token, so two
contenders cannot both win, and the loser is skipped (exit 5) rather than failed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa

from engine.errors import LockHeld
from engine.state import StateStore, insert_new, locks, now

HOST = socket.gethostname()
LEASE_S = 60.0


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale(row: Any, at: dt.datetime) -> bool:
    """True when the holder is gone: a dead process on this host, or an expired lease."""
    lease_until = (
        row.lease_until if row.lease_until.tzinfo else row.lease_until.replace(tzinfo=dt.UTC)
    )
    if lease_until < at:
        return True
    return row.host == HOST and not _process_alive(row.pid)


class Locks:
    def __init__(self, store: StateStore, lease_s: float = LEASE_S) -> None:
        self.store = store
        self.lease_s = lease_s

    def _values(self, sync: str, token: str) -> dict[str, Any]:
        at = now()
        return {
            "sync": sync,
            "token": token,
            "host": HOST,
            "pid": os.getpid(),
            "acquired_at": at,
            "lease_until": at + dt.timedelta(seconds=self.lease_s),
        }

    def acquire(self, sync: str) -> str:
        """Take the sync's lock and return its token, or raise LockHeld naming the holder."""
        token = uuid.uuid4().hex
        with self.store.tx() as conn:
            row = conn.execute(sa.select(locks).where(locks.c.sync == sync)).first()
            if row is None:
                if insert_new(conn, locks, self._values(sync, token)):
                    return token
                raise LockHeld(f"sync '{sync}' was taken by another run at the same moment")
            if not _stale(row, now()):
                raise LockHeld(
                    f"sync '{sync}' is being run by process {row.pid} on {row.host} since "
                    f"{row.acquired_at:%Y-%m-%d %H:%M:%S}; this run skipped it"
                )
            taken = conn.execute(
                sa.update(locks)
                .where(locks.c.sync == sync, locks.c.token == row.token)
                .values(self._values(sync, token))
            )
            if taken.rowcount == 0:
                raise LockHeld(f"sync '{sync}' was taken by another run at the same moment")
        return token

    def renew(self, sync: str, token: str) -> None:
        with self.store.tx() as conn:
            conn.execute(
                sa.update(locks)
                .where(locks.c.sync == sync, locks.c.token == token)
                .values(lease_until=now() + dt.timedelta(seconds=self.lease_s))
            )

    def release(self, sync: str, token: str) -> None:
        with self.store.tx() as conn:
            conn.execute(sa.delete(locks).where(locks.c.sync == sync, locks.c.token == token))

    @asynccontextmanager
    async def hold(self, sync: str) -> AsyncIterator[str]:
        """Hold the lock for the body, renewing its lease in the background."""
        token = await asyncio.to_thread(self.acquire, sync)
        renewer = asyncio.create_task(self._renew_forever(sync, token))
        try:
            yield token
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
            await asyncio.to_thread(self.release, sync, token)

    async def _renew_forever(self, sync: str, token: str) -> None:
        while True:
            await asyncio.sleep(self.lease_s / 3)
            await asyncio.to_thread(self.renew, sync, token)
