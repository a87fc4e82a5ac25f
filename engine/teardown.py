"""`sync teardown NAME`: remove from the destination what a sync delivered, then retire it.

    read the state (its version) → lock → plan a removal of every snapshot key → guard
        → state: retiring (WHERE version = the one read) → deliver the removals → acknowledgements
        leave the snapshot → state: retired, snapshot forgotten

The removals are what a mirror to an empty source would remove, planned into the plan table as
op "remove" rows (`engine.diff.plan_teardown`) and sent by the runner's own delivery path
(`Runner.deliver_plan`): the destination builds each sync type's removal (delete or suppress a
person, delete a device, an object, a relationship, a segment member, a collection), and each
acknowledged removal leaves the snapshot in the same transactions a run writes. The guard of
SPEC §4.7 applies (removals > limit) unless `--allow-removals`.

Without `--yes` it is a plan: nothing is locked, sent or changed. Two processes cannot both tear
down a sync: each holds the sync's run lock while it removes, and the change to `retiring` is an
optimistic update of the version read at the start, which the later one finds changed (exit 5).
A teardown whose removals were not all acknowledged leaves the sync `retiring`, its snapshot
holding what is left; running it again removes the rest. A teardown is recorded in run history
with kind `teardown`.

Some records cannot be removed: events (Customer.io has no call to delete an event), and the
people of an `update_only` sync, which it never created. Their teardown removes nothing, says
so, and retires the sync.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import ulid

from engine import diff, ledger, lifecycle, sync_status
from engine.config import PersonSync, Sync
from engine.diff import PlanCounts, Scope
from engine.errors import GuardTripped, SyncError
from engine.runner import Runner, SyncReport, fail, log_end, report_defect
from engine.state import StateStore


@dataclass(frozen=True)
class TeardownOptions:
    yes: bool = False  # remove and retire; without it, only plan
    allow_removals: bool = False
    sample: int = 5


def kept_reason(sync: Sync, size: int) -> str | None:
    """Why a teardown of this sync removes nothing, or None when it removes what it delivered."""
    if sync.append_only:
        return (
            f"events cannot be removed from Customer.io: the {size:,} event(s) this sync "
            "delivered stay; teardown only retires the sync"
        )
    if isinstance(sync, PersonSync) and sync.behavior == "update_only":
        return (
            f"an update_only sync created no one: the {size:,} people it updated stay (with the "
            "attributes it set); teardown only retires the sync"
        )
    return None


def guard(sync: Sync, counts: PlanCounts) -> dict[str, object]:
    """SPEC §4.7's rule for the removals: more than `guard.max_removals` stops the teardown."""
    limit = sync.guard.limit(counts.snapshot_size)
    reason = ""
    if counts.remove > limit:
        reason = (
            f"{counts.remove:,} removals exceed guard.max_removals ({sync.guard.max_removals} → "
            f"{limit:,} of {counts.snapshot_size:,})"
        )
    return {"limit": limit, "removals": counts.remove, "would_trip": bool(reason), "reason": reason}


class Teardown:
    """Tears down syncs of one runner's project, through the runner's delivery path."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.store: StateStore = runner.store

    async def __call__(self, sync: Sync, options: TeardownOptions) -> SyncReport:
        report = SyncReport(sync)
        try:
            seen = await asyncio.to_thread(lifecycle.read, self.store, sync)
            if seen.status == sync_status.RETIRED:
                report.notes.append(f"sync '{sync.name}' is already retired: nothing to remove")
                return report
            if not options.yes:
                await self._plan(report, options)
            else:
                await self._remove(report, seen, options)
        except SyncError as exc:  # the state store, before anything was removed
            fail(report, exc)
            if options.yes:
                log_end(report, "")
        return report

    def _scope(self, sync: Sync) -> Scope:
        return Scope(str(ulid.ULID()), sync.name, self.runner.identity(sync))

    def _stage(self, report: SyncReport, scope: Scope, kind: str) -> None:
        """Plan the removals into the plan table; count them and judge them by the guard."""
        sync = report.sync
        ledger.begin_work(self.store, scope.run, sync.name, kind)
        with self.store.tx() as conn:
            size = diff.snapshot_size(conn, scope)
            kept = kept_reason(sync, size)
            counts = PlanCounts(unchanged=size, snapshot_size=size)
            if kept is None:
                counts = diff.plan_teardown(conn, scope)
        if kept is not None:
            report.notes.append(kept)
        report.counts = counts
        report.record.planned = counts.planned
        report.guard = guard(sync, counts)

    async def _plan(self, report: SyncReport, options: TeardownOptions) -> None:
        scope = self._scope(report.sync)
        try:
            await asyncio.to_thread(self._stage, report, scope, "plan")
            await asyncio.to_thread(self.runner.collect_samples, report, scope, options.sample)
            report.calls = self.runner.describe_calls(report)
        finally:
            await asyncio.to_thread(ledger.end_work, self.store, scope.run)
        name = report.sync.name
        report.notes.append(
            f"a plan only: `sync teardown {name} --yes` removes these records, then retires "
            f"'{name}' and forgets its snapshot"
        )

    async def _remove(
        self, report: SyncReport, seen: lifecycle.State, options: TeardownOptions
    ) -> None:
        sync = report.sync
        scope = self._scope(sync)
        started = time.monotonic()
        try:
            await self._remove_locked(report, scope, seen, options)
        except SyncError as exc:  # the lock is held by another process
            fail(report, exc)
        finally:
            report.duration_s = time.monotonic() - started
            log_end(report, scope.run)

    async def _remove_locked(
        self, report: SyncReport, scope: Scope, seen: lifecycle.State, options: TeardownOptions
    ) -> None:
        sync = report.sync
        async with self.runner.locks.hold(sync.name), self.runner.destinations():
            try:
                await asyncio.to_thread(self._stage, report, scope, "run")
                if report.guard["would_trip"] and not options.allow_removals:
                    raise GuardTripped(
                        f"{report.guard['reason']}; rerun with --allow-removals if intended"
                    )
                retiring = await asyncio.to_thread(self._start, sync, scope, seen)
                await self.runner.deliver_plan(sync, scope, report)
                if report.record.rejected == 0:
                    await asyncio.to_thread(self._retire, sync, retiring)
                    report.notes.append(f"'{sync.name}' is retired: its snapshot is forgotten")
                else:
                    report.notes.append(
                        f"'{sync.name}' stays retiring: {report.record.rejected:,} removal(s) "
                        f"were refused (sync errors {sync.name}); `sync teardown {sync.name} "
                        "--yes` again removes what is left"
                    )
            except SyncError as exc:
                fail(report, exc)
            except Exception as exc:  # noqa: BLE001 (a defect: the teardown fails and says so)
                report_defect(report, exc, scope.run)
            finally:
                await asyncio.to_thread(self.runner.close_run, scope, report)

    def _start(self, sync: Sync, scope: Scope, seen: lifecycle.State) -> lifecycle.State:
        """Mark the sync retiring (if nobody changed its state since `seen`) and open the
        teardown's history row."""
        with self.store.tx() as conn:
            retiring = lifecycle.transition(conn, seen, sync_status.RETIRING, "teardown")
        ledger.start_run(
            self.store,
            scope.run,
            sync.name,
            scope.destination,
            False,
            definition=lifecycle.definition(sync),
            kind="teardown",
        )
        return retiring

    def _retire(self, sync: Sync, retiring: lifecycle.State) -> None:
        """Every removal was acknowledged: forget the snapshot (events and what could not be
        removed included) and mark the sync retired, in one transaction."""
        with self.store.tx() as conn:
            ledger.forget(conn, sync.name)
            lifecycle.transition(conn, retiring, sync_status.RETIRED, "teardown")
