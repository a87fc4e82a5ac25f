"""Run metrics for a node-exporter textfile collector (SPEC §7.4: `metrics_file:`, `--metrics-file`).

After every `sync run`, `write_metrics` rewrites one file in Prometheus' text exposition format.
It is built from the state store's run history, not from the runs just made: cron runs one sync a
line, and the file must describe every sync each time. So it holds the latest finished run of
every sync of the project, whichever process or host made it. prometheus_client writes the text to
a temporary file beside the target and renames it over the target, so the collector never reads
half a file. Every value is a gauge: the numbers of the last run, not totals.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

from engine import ledger
from engine.config import Project
from engine.report import NUMBERS, STATUSES
from engine.state import StateStore

LABELS = ("sync", "workspace", "object")

# The metric of each counter of a run (engine.report.NUMBERS), with its HELP text. One gauge per
# counter rather than one gauge with a `kind` label: the counters overlap (planned ⊇ sent +
# rejected, requests ⊇ retries), so a sum over such a label would mean nothing.
COUNTER_METRICS = {
    "planned": (
        "cio_sync_last_run_planned_records",
        "Records the last run planned to send: additions, updates and removals.",
    ),
    "sent": ("cio_sync_last_run_sent_records", "Records Customer.io acknowledged in the last run."),
    "rejected": (
        "cio_sync_last_run_rejected_records",
        "Records refused in the last run, by Customer.io or by a local limit check.",
    ),
    "invalid": (
        "cio_sync_last_run_invalid_records",
        "Source rows of the last run that were invalid (NULL or duplicate key) and not sent.",
    ),
    "skipped": (
        "cio_sync_last_run_skipped_records",
        "Source rows the last run skipped (events outside filter.event_names).",
    ),
    "requests": (
        "cio_sync_last_run_requests",
        "HTTP requests the last run sent, retries included.",
    ),
    "retries": ("cio_sync_last_run_retries", "Requests the last run sent again after a failure."),
    "throttled": (
        "cio_sync_last_run_throttled_requests",
        "Requests of the last run answered 429 Too Many Requests.",
    ),
}


def write_metrics(path: Path, project: Project, store: StateStore) -> None:
    """Write the latest finished run of each of the project's syncs to `path`, atomically.

    Syncs that never finished a run have no series. Raises OSError when the file cannot be
    written (a missing directory, no permission); the target is then left as it was.
    """
    registry = registry_for(project, ledger.last_runs(store, finished=True))
    write_to_textfile(str(path), registry)


def registry_for(project: Project, runs: Mapping[str, Mapping[str, Any]]) -> CollectorRegistry:
    """A registry of its own (never prometheus_client's global one) holding `runs`, by sync."""
    registry = CollectorRegistry()
    gauges = _Gauges(registry)
    for name, sync in sorted(project.syncs.items()):
        if name in runs:
            gauges.observe((name, sync.workspace, sync.object), runs[name])
    return registry


class _Gauges:
    """The gauges of one file; `observe` sets every series of one sync's run."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def gauge(name: str, text: str, *labels: str) -> Gauge:
            return Gauge(name, text, (*LABELS, *labels), registry=registry)

        self.started = gauge(
            "cio_sync_last_run_start_timestamp_seconds", "When the last run started (Unix time)."
        )
        self.ended = gauge(
            "cio_sync_last_run_end_timestamp_seconds", "When the last run ended (Unix time)."
        )
        self.duration = gauge(
            "cio_sync_last_run_duration_seconds", "How long the last run took, in seconds."
        )
        self.exit_code = gauge(
            "cio_sync_last_run_exit_code",
            "The last run's exit code, as sync run returns it (0: every change was applied).",
        )
        self.status = gauge(
            "cio_sync_last_run_status",
            "1 for the status word of the last run, 0 for the others.",
            "status",
        )
        self.counters = {name: gauge(*COUNTER_METRICS[name]) for name in NUMBERS}

    def observe(self, labels: tuple[str, str, str], run: Mapping[str, Any]) -> None:
        started, ended = run["started_at"], run["ended_at"]
        self.started.labels(*labels).set(_unix(started))
        if ended is not None:  # an interrupted run has no end
            self.ended.labels(*labels).set(_unix(ended))
            self.duration.labels(*labels).set(_unix(ended) - _unix(started))
        if run["exit_code"] is not None:
            self.exit_code.labels(*labels).set(run["exit_code"])
        for status in dict.fromkeys((*STATUSES, run["status"])):
            self.status.labels(*labels, status).set(1 if status == run["status"] else 0)
        for name, gauge in self.counters.items():
            gauge.labels(*labels).set(run[name])


def _unix(at: dt.datetime) -> float:
    """Unix seconds of a history timestamp (a naive one is UTC, as the state store writes it)."""
    return (at if at.tzinfo else at.replace(tzinfo=dt.UTC)).timestamp()
