"""The run: lock → extract → validate → diff → guard → send → record acknowledgements → record the run.

`Runner.run_sync` is the whole orchestration and is final: object types differ only in the hooks
of `engine.extract` (which columns play which part) and of the destination (how records become
requests). A record enters the snapshot only when Customer.io acknowledged it (`engine.acks`), in
transactions, so a kill -9 at any moment leaves a snapshot that lags reality, never leads it.

`run --all` runs syncs concurrently with one destination (one client, one rate budget) per
workspace, the sync types others refer to first (SPEC §4.11). The runner opens destinations
through the opener it is given (`engine.compose.opener`), by the contract of `engine.destination`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, final

import ulid
from sqlalchemy.engine import Connection

from engine import diff, guard, incremental, ledger, lifecycle, logs, planread, sqlstage, streaming
from engine import verify as verification
from engine.acks import Acks, Progress
from engine.config import Project, Sync
from engine.destination import (
    Destination,
    Drift,
    OpenDestination,
    PlannedCall,
    PlannedRecord,
)
from engine.diff import PlanCounts, Scope
from engine.errors import (
    EXIT_GUARD,
    EXIT_LOCKED,
    EXIT_OK,
    DriftFound,
    GuardTripped,
    RecordRejected,
    SyncError,
    engine_defect,
)
from engine.extract import Extracted, encode, layout_for, observe_cursor, read_source
from engine.incremental import Read
from engine.locks import Locks
from engine.pgstage import same_database, stage_copied, stage_in_database
from engine.report import RunRecord
from engine.state import Staged, StateStore, now

log = logging.getLogger("cio_sync.run")


@dataclass(frozen=True)
class Options:
    full: bool = False
    allow_removals: bool = False
    sample: int = 5
    workers: int | None = None  # syncs run at once by `run`; None: every sync of a phase


@dataclass
class SyncReport:
    """What happened to one sync; `run_json` and `plan_json` are SPEC §3's shapes."""

    sync: Sync
    record: RunRecord = field(default_factory=RunRecord)
    counts: PlanCounts = field(default_factory=PlanCounts)
    duration_s: float = 0.0
    guard: dict[str, Any] = field(default_factory=dict)
    samples: dict[str, list[Any]] = field(default_factory=dict)
    sample_records: dict[str, list[PlannedRecord]] = field(default_factory=dict)
    calls: list[PlannedCall] = field(default_factory=list)  # what a run would send (plans)
    notes: list[str] = field(default_factory=list)  # what a reader of the plan should know
    drift: int = 0  # delivered records read back missing or different (`verify:`)
    hint: str = ""  # what to do about the run's end, when it did not go well
    extracted: Extracted | None = None

    @property
    def exit_code(self) -> int:
        return self.record.exit_code

    @property
    def message(self) -> str:
        return self.record.message or ""

    def run_json(self) -> dict[str, Any]:
        record = self.record
        return {
            "name": self.sync.name,
            "status": record.status,
            "exit_code": record.exit_code,
            "counts": record.counts(),
            **record.delivery(),
            "lowest_rate": record.lowest_rate,
            "rows_read": record.rows_read,
            "mode": record.mode,
            "duration_s": round(self.duration_s, 3),
            "message": self.message,
        }

    def plan_json(self) -> dict[str, Any]:
        c = self.counts
        counts = {
            "add": c.add,
            "update": c.update,
            "remove": c.remove,
            "unchanged": c.unchanged,
            "invalid": self.record.invalid,
            "skipped": self.record.skipped,
        }
        if self.sync.stable_column() is not None:
            counts[diff.REKEY] = c.rekey
        return {
            "name": self.sync.name,
            "object": self.sync.object,
            "behavior": self.sync.behavior,
            "counts": counts,
            "guard": self.guard,
            "read": self.read(),
            "samples": self.samples,
            "calls": [{"summary": c.summary, "operations": c.operations} for c in self.calls],
            "notes": self.notes,
            "message": self.message,
        }

    def read(self) -> dict[str, Any]:
        """How the source was read: in full, or incrementally past a bound (SPEC §7.2)."""
        read = self.extracted.read if self.extracted else None
        mode = read.mode if read else "full"
        return {"mode": mode, "after": read.bound if read else None, "rows": self.record.rows_read}


@dataclass
class Prepared:
    scope: Scope
    extracted: Extracted
    counts: PlanCounts
    streamed: bool = False  # delivered while prepared (`engine.streaming`)


class Runner:
    """Runs and plans syncs of one project against its state store."""

    def __init__(
        self,
        project: Project,
        store: StateStore,
        open_destination: OpenDestination,
        progress: Progress | None = None,
    ) -> None:
        self.project = project
        self.store = store
        self.open_destination = open_destination
        self.locks = Locks(store)
        self.progress = progress
        self._destinations: dict[str, Destination] = {}
        self._opening: dict[str, asyncio.Lock] = {}
        self._stack: AsyncExitStack | None = None

    # --- public commands ---------------------------------------------------------------------

    @asynccontextmanager
    async def destinations(self) -> AsyncIterator[None]:
        """Destinations opened inside this block (once per workspace) are closed at its end."""
        async with AsyncExitStack() as stack:
            self._stack = stack
            try:
                yield
            finally:
                self._stack = None
                self._destinations.clear()

    async def run(self, syncs: Sequence[Sync], options: Options) -> list[SyncReport]:
        """Run the syncs: two phases (SPEC §4.11), concurrent within each, at most
        `options.workers` at once (None: all of a phase)."""
        slots = asyncio.Semaphore(options.workers or max(1, len(syncs)))

        async def one(sync: Sync) -> SyncReport:
            async with slots:
                return await self.run_sync(sync, options)

        async with self.destinations():
            reports: dict[str, SyncReport] = {}
            for phase in _phases(syncs):
                done = await asyncio.gather(*(one(s) for s in phase))
                reports.update({r.sync.name: r for r in done})
            return [reports[s.name] for s in syncs]

    async def plan(self, syncs: Sequence[Sync], options: Options) -> list[SyncReport]:
        return [await self.plan_sync(sync, options) for sync in syncs]

    # --- one sync ------------------------------------------------------------------------------

    @final
    async def run_sync(self, sync: Sync, options: Options) -> SyncReport:
        report = SyncReport(sync)
        started = time.monotonic()
        scope = Scope(str(ulid.ULID()), sync.name, self.identity(sync))
        _log_start(sync, scope.run, options)
        try:
            async with self.locks.hold(sync.name):
                try:
                    await asyncio.to_thread(self._open_run, sync, scope, options)
                    prepared = await self._prepare_streaming(sync, scope, options, report)
                    self._account(report, prepared, options)
                    _log_guard(report, scope.run)
                    if not prepared.streamed:
                        self._check_guard(report, options)
                        await self.deliver_plan(sync, scope, report)
                    if sync.verify is not None and report.record.sent:
                        await self._verify_delivered(sync, scope, report)
                except SyncError as exc:
                    fail(report, exc)
                except Exception as exc:  # noqa: BLE001 (a defect: the run fails and says so)
                    report_defect(report, exc, scope.run)
                finally:
                    report.duration_s = time.monotonic() - started
                    await asyncio.to_thread(self.close_run, scope, report)
        except SyncError as exc:  # the lock was held, or the state store could not be reached
            fail(report, exc)
        report.duration_s = time.monotonic() - started
        log_end(report, scope.run)
        return report

    async def plan_sync(self, sync: Sync, options: Options) -> SyncReport:
        report = SyncReport(sync)
        scope = Scope(str(ulid.ULID()), sync.name, self.identity(sync))
        try:
            prepared = await asyncio.to_thread(self._prepare, sync, scope, options, "plan")
            try:
                self._account(report, prepared, options)
                await asyncio.to_thread(self.collect_samples, report, scope, options.sample)
                report.calls = self.describe_calls(report)
                destination = self.open_destination(sync.workspace)
                await asyncio.to_thread(planread.explain, sync, destination, self.store, scope.run)
            finally:
                await asyncio.to_thread(ledger.end_work, self.store, scope.run)
        except SyncError as exc:
            fail(report, exc)
        except Exception as exc:  # noqa: BLE001 (a defect: the plan fails and says so)
            report_defect(report, exc, scope.run)
        return report

    # --- steps --------------------------------------------------------------------------------

    def identity(self, sync: Sync) -> str:
        return self.project.workspace_of(sync).identity(self.project.root)

    def _open_run(self, sync: Sync, scope: Scope, options: Options) -> None:
        lifecycle.check_runnable(self.store, sync)
        previous = ledger.bind(self.store, sync.name, scope.destination)
        if previous is not None:
            log.warning(
                "sync '%s' now delivers to %s workspace other than before: starting a fresh "
                "snapshot (first-run rules, no removals)",
                sync.name,
                scope.destination.split(":", 1)[0],
                extra=logs.event("snapshot.rebound", sync=sync.name, run=scope.run),
            )
        ledger.start_run(
            self.store,
            scope.run,
            sync.name,
            scope.destination,
            options.full,
            definition=lifecycle.definition(sync),
        )

    async def _prepare_streaming(
        self, sync: Sync, scope: Scope, options: Options, report: SyncReport
    ) -> Prepared:
        """Prepare the run; a first run that streams (`engine.streaming`) is delivered while it
        is prepared, and comes back `streamed`."""
        feed = streaming.PlanFeed(asyncio.get_running_loop())
        preparing = asyncio.ensure_future(
            asyncio.to_thread(self._prepare, sync, scope, options, "run", feed)
        )
        # a destination made (not opened) loads its code, the HTTP client's included, while the
        # source is read: an incremental run of 1% of 1M rows spent 0.4 s of its 2.2 s on that
        loading = asyncio.ensure_future(asyncio.to_thread(self.open_destination, sync.workspace))
        # the real open reports errors; a run that ends first cancels the load
        loading.add_done_callback(lambda done: done.cancelled() or done.exception())
        while not (feed.streaming or preparing.done()):
            changed = asyncio.ensure_future(feed.changed())
            await asyncio.wait({preparing, changed}, return_when=asyncio.FIRST_COMPLETED)
            changed.cancel()
        if not feed.streaming:
            return await preparing
        failure: BaseException | None = None
        try:
            await self.deliver_plan(sync, scope, report, feed)
        except BaseException as exc:  # noqa: BLE001 (raised below, once staging has stopped)
            failure = exc
        feed.stopped.set()
        (prepared,) = await asyncio.gather(preparing, return_exceptions=True)
        if isinstance(prepared, BaseException):  # the source's failure ended the delivery
            raise prepared
        if failure is not None:
            raise failure
        return prepared

    def _prepare(
        self,
        sync: Sync,
        scope: Scope,
        options: Options,
        kind: str,
        feed: streaming.PlanFeed | None = None,
    ) -> Prepared:
        """Extract into staging, flag duplicates, and write the plan (as it goes, to `feed`,
        when a first run streams)."""
        try:
            prepared = self._prepare_plan(sync, scope, options, kind, feed)
        except BaseException as exc:
            if feed is not None:
                feed.finish(exc)
            raise
        if feed is not None:
            feed.finish()
        return prepared

    def _prepare_plan(
        self,
        sync: Sync,
        scope: Scope,
        options: Options,
        kind: str,
        feed: streaming.PlanFeed | None,
    ) -> Prepared:
        ledger.begin_work(self.store, scope.run, sync.name, kind)
        with self.store.tx() as conn:
            mark = incremental.load(conn, sync.name, scope.destination)
        read = incremental.plan_read(sync, mark, full=options.full, at=now())
        with ExitStack() as held:  # from the first staged row to the plan (`_extract`)
            extracted = self._extract(sync, scope, options, read, held, feed)
            with self.store.tx() as conn:
                if extracted.streamed is not None:
                    counts = streaming.counts(extracted)
                elif sync.whole:
                    digest = extracted.digest.hexdigest()
                    whole = sync.whole_key()
                    counts = diff.plan_whole(conn, scope, whole, digest, full=options.full)
                else:
                    counts = _plan_records(conn, sync, scope, options, extracted)
        return Prepared(scope, extracted, counts, streamed=extracted.streamed is not None)

    def _extract(
        self,
        sync: Sync,
        scope: Scope,
        options: Options,
        read: Read,
        held: ExitStack,
        feed: streaming.PlanFeed | None = None,
    ) -> Extracted:
        """Read the source and stage its records. Rows that arrive as Arrow are keyed, encoded
        and compared with the snapshot by the state database's own SQL (`engine.sqlstage`; with
        a PostgreSQL store whose database is the source, without leaving it: `engine.pgstage`);
        otherwise each chunk is encoded in Python and staged in a worker thread while the next
        one is encoded. The store's connection is kept (`StateStore.holding`, until `held`
        closes) from the first staged row: a DuckDB store's staging lives on it."""
        extracted = Extracted(read=read)
        in_sql = self.store.dialect in ("duckdb", "postgresql") and not sync.whole
        source = self.project.sources[sync.source]
        cursor = sync.incremental.cursor if sync.incremental else None
        if in_sql and self._staged_in_database(sync, scope, options, read, extracted):
            extracted.compared = not options.full
            return extracted
        batches = read_source(sync, source.url, self.project.root, store=self.store, read=read)
        first = next(batches, None)
        if first is None:
            return extracted
        layout = layout_for(sync, first.names, self.project.workspace_of(sync))
        if in_sql and first.arrow is not None:
            streamable = self.store.dialect == "duckdb" and read.mode == "full" and not options.full
            if feed is not None and streamable:
                streamed = streaming.stream(
                    self.store,
                    sync,
                    source.url,
                    self.project.root,
                    scope,
                    layout,
                    first,
                    batches,
                    extracted,
                    feed,
                    cursor,
                )
                if streamed:
                    return extracted
        held.enter_context(self.store.holding())
        if in_sql and first.arrow is not None:
            stage = sqlstage.stage if self.store.dialect == "duckdb" else stage_copied
            with self.store.tx() as conn:
                stage(
                    conn,
                    scope,
                    layout,
                    first,
                    batches,
                    extracted,
                    cursor=cursor,
                    compare=not options.full,
                )
            extracted.compared = not options.full
            return extracted
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="stage") as stager:
            pending: Future[None] | None = None
            for batch in itertools.chain([first], batches):
                if cursor is not None:
                    observe_cursor(batch, cursor, extracted.highest)
                chunk = encode(layout, batch, extracted.staged, extracted, whole=sync.whole)
                if pending is not None:
                    pending.result()
                pending = stager.submit(self._stage, scope.run, chunk) if len(chunk) else None
            if pending is not None:
                pending.result()
        return extracted

    def _staged_in_database(
        self, sync: Sync, scope: Scope, options: Options, read: Read, extracted: Extracted
    ) -> bool:
        """Stage the sync's rows inside a PostgreSQL state store that is its source; False when
        it is not, or the SQL cannot encode its columns (`engine.pgstage`)."""
        url = self.project.sources[sync.source].url
        if not same_database(self.store.url, url):
            return False
        workspace = self.project.workspace_of(sync)
        with self.store.tx() as conn:
            sql = read.query(sync.sql, conn.dialect.identifier_preparer.quote)
            return stage_in_database(
                conn,
                sync,
                scope,
                sql,
                lambda names: layout_for(sync, names, workspace),
                extracted,
                cursor=sync.incremental.cursor if sync.incremental else None,
                compare=not options.full,
            )

    def _stage(self, run: str, chunk: Staged) -> None:
        with self.store.tx() as conn:
            self.store.stage(conn, run, chunk)

    def _account(self, report: SyncReport, prepared: Prepared, options: Options) -> None:
        report.counts = prepared.counts
        report.record.planned = prepared.counts.planned
        report.record.invalid = len(prepared.extracted.invalid)
        report.record.skipped = prepared.extracted.skipped
        extracted = prepared.extracted
        report.guard = guard.verdict(
            report.sync, prepared.counts, extracted.rows, extracted.read.mode, full=options.full
        )
        report.extracted = prepared.extracted
        _note_read(report.record, prepared.extracted)

    def _check_guard(self, report: SyncReport, options: Options) -> None:
        if report.guard["would_trip"] and not options.allow_removals:
            raise GuardTripped(report.guard["reason"] + "; rerun with --allow-removals if intended")

    async def deliver_plan(
        self,
        sync: Sync,
        scope: Scope,
        report: SyncReport,
        feed: streaming.PlanFeed | None = None,
    ) -> None:
        """Send the plan staged for `scope.run` through the sync's destination; acknowledgements
        enter the snapshot (removals leave it) and rejections the issues, as they come. With a
        `feed`, the plan is still being written: it is read as far as the feed says."""
        if report.counts.planned == 0 and feed is None:
            return
        destination = await self.destination(sync.workspace)
        built = planread.built(sync, destination, self.store, scope.run)
        planned = (lambda: feed.high) if feed is not None else None
        acks = Acks(self.store, scope, report, self.progress, planned)
        try:
            chunks = planread.chunks(self.store, scope.run, built, feed)
            await destination.deliver(sync, chunks, acks, report.record)
        finally:
            await acks.close()
        record = report.record
        planned_ops = feed.high if feed is not None else report.counts.planned
        if record.sent + record.rejected < planned_ops:  # an engine defect: never reported ok
            raise SyncError(
                f"delivery ended with {planned_ops - record.sent - record.rejected:,} of "
                f"{planned_ops:,} planned operations neither acknowledged nor rejected",
                "they stay unacknowledged and are sent by the next run; please report this",
            )

    async def _verify_delivered(self, sync: Sync, scope: Scope, report: SyncReport) -> None:
        """`verify:`: read back a sample of what this run delivered; drift joins its issues."""
        assert sync.verify is not None
        await asyncio.sleep(sync.verify.delay_s)  # Customer.io applies calls a moment later
        records = await asyncio.to_thread(self._delivered_sample, scope, sync.verify.sample)
        destination = await self.destination(sync.workspace)
        drift = await verification.read_back(destination, sync, records, report.record)
        report.drift = len(drift)
        await asyncio.to_thread(self._add_drift, scope, drift)

    def _delivered_sample(self, scope: Scope, limit: int) -> list[PlannedRecord]:
        with self.store.tx() as conn:
            return verification.sample(conn, scope, limit, run=scope.run)

    def _add_drift(self, scope: Scope, drift: list[Drift]) -> None:
        with self.store.tx() as conn:
            issues = verification.drift_issues(drift)
            ledger.add_issues(conn, scope.run, scope.sync, "drift", issues)

    def close_run(self, scope: Scope, report: SyncReport) -> None:
        extracted, record = report.extracted, report.record
        if record.exit_code == EXIT_OK and (record.rejected or record.invalid or report.drift):
            record.exit_code = RecordRejected.exit_code
            record.status = (
                RecordRejected.status
                if record.rejected
                else "invalid"
                if record.invalid
                else DriftFound.status
            )
        with self.store.tx() as conn:
            if extracted is not None:
                ledger.add_issues(conn, scope.run, scope.sync, "invalid", extracted.invalid)
                _note_read(record, extracted)
                if record.exit_code in (EXIT_OK, RecordRejected.exit_code) and not record.rejected:
                    read, highest = extracted.read, extracted.highest
                    incremental.save(conn, report.sync, scope.destination, read, highest)
        ledger.finish_run(self.store, scope.run, record)
        ledger.end_work(self.store, scope.run)

    def collect_samples(self, report: SyncReport, scope: Scope, limit: int) -> None:
        ops = [*diff.OPS, diff.REKEY] if report.sync.stable_column() else diff.OPS
        with self.store.tx() as conn:
            rows = {op: diff.sample_plan(conn, scope.run, op, limit) for op in ops}
        report.sample_records = {op: planread.planned(found) for op, found in rows.items()}
        report.samples = {
            op: [_sample(report.sync, r) for r in found]
            for op, found in report.sample_records.items()
        }

    def describe_calls(self, report: SyncReport) -> list[PlannedCall]:
        """What a run of the plan would send, in the destination's words (nothing contacted)."""
        counts = report.plan_json()["counts"]
        destination = self.open_destination(report.sync.workspace)
        return destination.describe_calls(report.sync, counts, report.sample_records)

    async def destination(self, workspace: str) -> Destination:
        lock = self._opening.setdefault(workspace, asyncio.Lock())
        async with lock:
            if workspace not in self._destinations:
                assert self._stack is not None
                opened = self.open_destination(workspace)
                self._destinations[workspace] = await self._stack.enter_async_context(opened)
            return self._destinations[workspace]


def _plan_records(
    conn: Connection, sync: Sync, scope: Scope, options: Options, extracted: Extracted
) -> PlanCounts:
    """Set duplicates aside, plan."""
    diff.refresh_statistics(conn)
    for key, count in diff.mark_duplicates(conn, scope.run):
        extracted.invalid.append((key, f"duplicate key: {count} rows share it"))
    mirror = sync.is_mirror and extracted.read.mode == "full"  # an incremental read removes nothing
    return diff.build_plan(
        conn,
        scope,
        full=options.full,
        append_only=sync.append_only,
        mirror=mirror,
        rekey=sync.stable_column() is not None,
        compared=extracted.compared,
    )


def _phases(syncs: Sequence[Sync]) -> list[list[Sync]]:
    first = [s for s in syncs if s.first_phase]
    rest = [s for s in syncs if not s.first_phase]
    return [phase for phase in (first, rest) if phase]


def _note_read(record: RunRecord, extracted: Extracted) -> None:
    """What the run read, for history (SPEC §7.2)."""
    record.rows_read = extracted.rows
    record.mode = extracted.read.mode
    record.cursor_from = extracted.read.bound
    record.cursor_to = extracted.highest.shown()


def _sample(sync: Sync, record: PlannedRecord) -> dict[str, Any]:
    if record.op == "add":
        return {"key": record.key, "attributes": record.attributes(sync.nulls)}
    if record.op == "remove":
        return {"key": record.key}
    before = (record.before or {}).get("a", {})
    changes = {
        name: {"before": before.get(name), "after": value}
        for name, value in record.attributes(sync.nulls).items()
    }
    if record.op == diff.REKEY:  # the same record (by its stable key) under a new identifier
        identifier = {"before": record.prior, "after": record.key}
        return {"key": record.key, "identifier": identifier, "changes": changes}
    return {"key": record.key, "changes": changes}


def fail(report: SyncReport, exc: SyncError) -> None:
    report.record.exit_code = exc.exit_code
    report.record.status = exc.status
    report.record.message = exc.message or str(exc)
    report.hint = exc.hint


def report_defect(report: SyncReport, exc: Exception, run: str) -> None:
    """An exception no rule expected: the sync fails with a message that says it is a defect of
    the engine; its traceback is logged at -vv."""
    if logs.tracebacks():
        extra = logs.event("error", sync=report.sync.name, run=run, kind="defect")
        log.debug("sync '%s': traceback", report.sync.name, exc_info=exc, extra=extra)
    fail(report, SyncError(engine_defect(exc)))


def _log_start(sync: Sync, run: str, options: Options) -> None:
    fields = {"object": sync.object, "behavior": sync.behavior, "workspace": sync.workspace}
    extra = logs.event("run.start", sync=sync.name, run=run, full=options.full, **fields)
    log.info("sync '%s' started", sync.name, extra=extra)


def _log_guard(report: SyncReport, run: str) -> None:
    guard = report.guard
    if guard.get("limit") is None and not guard.get("would_trip"):
        return
    level = logging.WARNING if guard["would_trip"] else logging.INFO
    verdict = f"would stop the run: {guard['reason']}" if guard["would_trip"] else "ok"
    extra = logs.event("guard.verdict", sync=report.sync.name, run=run, **guard)
    log.log(level, "sync '%s': guard %s", report.sync.name, verdict, extra=extra)


_END_LEVELS = {EXIT_OK: logging.INFO, EXIT_GUARD: logging.WARNING, EXIT_LOCKED: logging.WARNING}


def log_end(report: SyncReport, run: str) -> None:
    """The run's end: its status, counts, requests and duration (SPEC §3), at info when it went
    well, warning when a guard, a lock or rejected records stopped part of it, error else."""
    record = report.record
    level = _END_LEVELS.get(record.exit_code, logging.ERROR)
    if record.exit_code == RecordRejected.exit_code:
        level, report.hint = logging.WARNING, f"see: sync errors {report.sync.name}"
    fields = {
        "status": record.status,
        "exit_code": record.exit_code,
        "counts": record.counts(),
        **record.delivery(),
        "duration_s": round(report.duration_s, 3),
        "hint": report.hint,
    }
    extra = logs.event("run.end", sync=report.sync.name, run=run, **fields)
    if record.exit_code == EXIT_OK:
        said = f"ok: sent {record.sent:,} of {record.planned:,} planned"
    else:
        said = f"{record.status}: {record.message or 'see sync errors'}"
    log.log(level, "sync '%s' %s (%.2f s)", report.sync.name, said, report.duration_s, extra=extra)
