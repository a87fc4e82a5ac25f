"""Acknowledgements into the state store: each record Customer.io acknowledged enters the
snapshot, each rejection the issues, in transactions, as delivery goes (SPEC §4.3). A record
enters the snapshot only when acknowledged, so a kill -9 at any moment leaves a snapshot that
lags reality, never leads it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from engine import diff, ledger
from engine.destination import Outcome
from engine.diff import Scope
from engine.report import RunRecord
from engine.state import StateStore

if TYPE_CHECKING:
    from engine.runner import SyncReport

ACK_FLUSH_RECORDS = 20_000
ACK_FLUSH_SECONDS = 1.0
ACK_BACKLOG_RECORDS = 200_000  # the sender waits for the state store beyond this many
Progress = Callable[[str, int], None]  # (sync name, records just finished)


class Acks:
    """Buffers acknowledgements and rejections; flushes them into the state store in transactions."""

    def __init__(
        self,
        store: StateStore,
        scope: Scope,
        report: SyncReport,
        progress: Progress | None,
        planned: Callable[[], int] | None = None,
    ) -> None:
        """`planned`: how many operations are planned so far, while a streamed plan is still
        being written (else the report's count)."""
        self.store, self.scope, self.report, self.progress = store, scope, report, progress
        self.planned = planned
        self.acked: list[int] = []
        self.rejected: list[tuple[int, str]] = []
        self.flushed_at = time.monotonic()
        self.lock = asyncio.Lock()
        self.writing: asyncio.Future[None] | None = None  # the flush under way in the background
        # what the snapshot holds of this run so far, as history shows it while the run goes on
        record = report.record
        self.written = RunRecord(
            planned=record.planned, invalid=record.invalid, skipped=record.skipped
        )

    async def __call__(self, outcome: Outcome) -> None:
        """Note an outcome; a flush that is due starts in the background (the sender does not
        wait for the state store), unless `ACK_BACKLOG_RECORDS` wait already."""
        self.acked.extend(outcome.acked)
        self.rejected.extend(outcome.rejected)
        self.report.record.sent += len(outcome.acked)
        self.report.record.rejected += len(outcome.rejected)
        if self.progress:
            self.progress(self.report.sync.name, len(outcome.acked) + len(outcome.rejected))
        pending = len(self.acked) + len(self.rejected)
        if self.writing is not None and self.writing.done():
            self.writing.result()  # a failed write fails the delivery
            self.writing = None
        if pending >= ACK_BACKLOG_RECORDS and self.writing is not None:
            await self.writing
            self.writing = None
        if self.writing is None and (
            pending >= ACK_FLUSH_RECORDS or time.monotonic() - self.flushed_at >= ACK_FLUSH_SECONDS
        ):
            self.writing = asyncio.ensure_future(self.flush())

    async def flush(self) -> None:
        """Write what is noted so far, once the write under way (if any) is done."""
        async with self.lock:
            acked, rejected = self.acked, self.rejected
            self.acked, self.rejected = [], []
            self.flushed_at = time.monotonic()
            if acked or rejected:
                await asyncio.to_thread(self._write, acked, rejected)

    async def close(self) -> None:
        """The last flush, once the background one has finished (its failure raised)."""
        writing, self.writing = self.writing, None
        try:
            if writing is not None:
                await writing
        finally:
            await self.flush()

    def _write(self, acked: list[int], rejected: list[tuple[int, str]]) -> None:
        """Acknowledged records into the snapshot, rejections into issues, and the run's
        progress into history, in one transaction: a killed run's history shows what it had
        recorded as delivered."""
        self.written.sent += len(acked)
        self.written.rejected += len(rejected)
        if self.planned is not None:
            self.written.planned = self.planned()
        with self.store.tx() as conn:
            diff.apply_acks(conn, self.scope, acked)
            ledger.add_rejections(conn, self.scope.run, self.scope.sync, rejected)
            ledger.record_progress(conn, self.scope.run, self.written)
