"""Verification (SPEC §7.5): read a sample of delivered records back from the destination and
report those it does not hold as last delivered (Customer.io answers 200 to calls it then
ignores: an `_update` for an unknown person, a suppressed identifier, an unknown segment).

    sample the snapshot (random order) → destination.read_back → drift → issues of kind "drift"

`sync verify NAME [--sample N]` samples the whole snapshot and records a history row of kind
`verify`, whose drift `sync errors` then lists; a sync with `verify: {sample: N}` is verified by
each run that delivered something, from the records that run delivered, and its drift joins
that run's issues. Either way drift makes the exit code 6. A run with nothing to deliver
verifies nothing: an unchanged run sends no request (SPEC §4.1).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
import ulid
from sqlalchemy.engine import Connection

from engine import ledger, lifecycle
from engine.config import Sync
from engine.destination import Drift, PlannedRecord
from engine.diff import Scope, snapshot_size
from engine.errors import EXIT_CONFIG, EXIT_OK, DriftFound, SyncError
from engine.report import RunRecord
from engine.state import StateStore, now, plan, runs, snapshot

if TYPE_CHECKING:
    from engine.destination import Destination
    from engine.runner import Runner


def sample(
    conn: Connection, scope: Scope, limit: int, run: str | None = None
) -> list[PlannedRecord]:
    """Up to `limit` delivered records (key and last delivered payload), in random order; with
    `run`, only records that run delivered (added, updated or rekeyed)."""
    query = sa.select(snapshot.c.key, snapshot.c.payload).where(
        snapshot.c.sync == scope.sync, snapshot.c.destination == scope.destination
    )
    if run is not None:
        delivered = sa.select(plan.c.key).where(
            plan.c.run == run, plan.c.op != "remove", plan.c.key == snapshot.c.key
        )
        query = query.where(sa.exists(delivered))
    rows = conn.execute(query.order_by(sa.func.random()).limit(limit)).fetchall()
    return [PlannedRecord(i, "add", key, payload, None) for i, (key, payload) in enumerate(rows)]


def drift_issues(drift: Sequence[Drift]) -> list[tuple[str | None, str]]:
    """Drift as `cio_sync_issues` rows of kind "drift": (key, what is missing or differs)."""
    return [(d.key, ("missing: " if d.missing else "differs: ") + d.detail) for d in drift]


async def read_back(
    destination: Destination, sync: Sync, records: list[PlannedRecord], record: RunRecord
) -> list[Drift]:
    return await destination.read_back(sync, records, record)


@dataclass
class Verification:
    """What `sync verify` found for one sync."""

    sync: Sync
    run: str
    delivered: int = 0  # records the snapshot holds
    checked: int = 0
    drift: list[Drift] = field(default_factory=list)
    record: RunRecord = field(default_factory=RunRecord)
    duration_s: float = 0.0
    hint: str = ""

    @property
    def exit_code(self) -> int:
        return self.record.exit_code

    def document(self) -> dict[str, Any]:
        missing = sum(d.missing for d in self.drift)
        return {
            "name": self.sync.name,
            "status": self.record.status,
            "exit_code": self.exit_code,
            "delivered": self.delivered,
            "checked": self.checked,
            "missing": missing,
            "differ": len(self.drift) - missing,
            "drift": [{"key": d.key, "missing": d.missing, "detail": d.detail} for d in self.drift],
            "requests": self.record.requests,
            "message": self.record.message or "",
        }


class Verifier:
    """`sync verify`: one sync's delivered records read back through its destination."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.store: StateStore = runner.store

    async def __call__(self, sync: Sync, limit: int) -> Verification:
        scope = Scope(str(ulid.ULID()), sync.name, self.runner.identity(sync))
        found = Verification(sync, scope.run)
        started = time.monotonic()
        try:
            records = await asyncio.to_thread(self._sample, scope, limit, found)
            async with self.runner.destinations():
                destination = await self.runner.destination(sync.workspace)
                drift = await read_back(destination, sync, records, found.record)
            found.drift = sorted(drift, key=lambda d: d.key)
            found.checked = len(records)
            _judge(found)
        except SyncError as exc:
            if exc.exit_code == EXIT_CONFIG:  # not verifiable, or misconfigured: nothing to record
                raise
            found.record.exit_code, found.record.status = exc.exit_code, exc.status
            found.record.message, found.hint = exc.message or str(exc), exc.hint
        found.duration_s = time.monotonic() - started
        await asyncio.to_thread(self._record, scope, found)
        return found

    def _sample(self, scope: Scope, limit: int, found: Verification) -> list[PlannedRecord]:
        with self.store.tx() as conn:
            found.delivered = snapshot_size(conn, scope)
            return sample(conn, scope, limit)

    def _record(self, scope: Scope, found: Verification) -> None:
        """A finished history row of kind `verify`, with the drift as its issues."""
        at = now()
        row = {
            **found.record.columns(),
            "id": scope.run,
            "sync": scope.sync,
            "destination": scope.destination,
            "started_at": at,
            "ended_at": at,
            "kind": "verify",
            "definition": lifecycle.definition(found.sync),
        }
        with self.store.tx() as conn:
            conn.execute(sa.insert(runs).values(row))
            ledger.add_issues(conn, scope.run, scope.sync, "drift", drift_issues(found.drift))


def _judge(found: Verification) -> None:
    """Drift makes a verification exit 6 (status drift); its message counts what was found."""
    missing = sum(d.missing for d in found.drift)
    differ = len(found.drift) - missing
    said = (
        f"verified {found.checked:,} of {found.delivered:,} delivered record(s): "
        f"{missing:,} missing, {differ:,} different"
    )
    found.record.message = said
    if found.drift and found.record.exit_code == EXIT_OK:
        found.record.exit_code, found.record.status = DriftFound.exit_code, DriftFound.status
        found.hint = f"see: sync errors {found.sync.name}"
