"""What the CLI prints on stdout: tables, plans, run summaries and `--json` documents.

Log lines and errors go to stderr through `engine.logs`; this module writes only results.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import click
import orjson

from engine.errors import combine_exit_codes

if TYPE_CHECKING:
    from engine.config import Sync
    from engine.runner import SyncReport


def emit_json(document: Any) -> None:
    click.echo(
        orjson.dumps(
            document, default=str, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS
        ).decode()
    )


class Progress:
    """Records delivered, redrawn in place on a terminal (at most 10 times a second)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.done: dict[str, int] = {}
        self.drawn = 0.0

    def __call__(self, name: str, count: int) -> None:
        self.done[name] = self.done.get(name, 0) + count
        if self.enabled and time.monotonic() - self.drawn > 0.1:
            self.drawn = time.monotonic()
            parts = "  ".join(f"{n}: {c:,}" for n, c in self.done.items())
            click.echo(f"\r\x1b[2Kdelivered  {parts}", nl=False, err=True)

    def close(self) -> None:
        if self.enabled and self.done:
            click.echo("", err=True)


def list_row(sync: Sync, run: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "name": sync.name,
        "object": sync.object,
        "behavior": sync.behavior,
        "workspace": sync.workspace,
        "schedule": sync.schedule,
        "enabled": sync.enabled,
        "last_run": run["started_at"].isoformat(timespec="seconds") if run else None,
        "status": run["status"] if run else None,
    }


def table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def print_plans(reports: list[SyncReport], as_json: bool) -> int:
    if as_json:
        emit_json({"syncs": [plan_document(r) for r in reports]})
    else:
        for report in reports:
            _print_plan(report)
    return combine_exit_codes([r.exit_code for r in reports])


def plan_document(report: SyncReport) -> dict[str, Any]:
    """SPEC §3's plan shape, plus `on_remove` for a person mirror: what a removal will do."""
    document = report.plan_json()
    on_remove = report.sync.removal_action()
    if on_remove is not None:
        document["on_remove"] = on_remove
    return document


def _print_plan(report: SyncReport) -> None:
    document = plan_document(report)
    sync = report.sync
    click.echo(f"{sync.name}  ({sync.object}, {sync.behavior} → {sync.workspace})")
    if report.message:
        click.echo(f"  error: {report.message}")
        return
    click.echo("  " + "  ".join(f"{k} {v:,}" for k, v in document["counts"].items()))
    guard = document["guard"]
    if guard.get("limit") is not None or guard.get("would_trip"):
        verdict = "WOULD STOP the run (exit 3)" if guard["would_trip"] else "ok"
        limit = "" if guard.get("limit") is None else f", limit {guard['limit']}"
        click.echo(f"  guard: {guard['removals']} removal(s){limit}: {verdict}")
        if guard.get("reason"):
            click.echo(f"         {guard['reason']}")
    on_remove = f"  ({document['on_remove']})" if "on_remove" in document else ""
    for op, samples in document["samples"].items():
        for sample in samples:
            click.echo(f"  {op:6} {_describe(sample)}{on_remove if op == 'remove' else ''}")


def _describe(sample: dict[str, Any]) -> str:
    if "changes" in sample:
        changes = ", ".join(
            f"{k}: {_short(v['before'])} → {_short(v['after'])}"
            for k, v in sample["changes"].items()
        )
        return f"{sample['key']}  {changes}"
    if "attributes" in sample:
        return f"{sample['key']}  {_short(sample['attributes'], 100)}"
    return str(sample["key"])


def _short(value: Any, width: int = 40) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= width else text[: width - 1] + "…"


def print_run(report: SyncReport) -> None:
    """One line a sync: its status and counters (its errors and hints went to the log)."""
    record = report.record
    numbers = {**record.counts(), "requests": record.requests, "retries": record.retries}
    shown = "  ".join(f"{name} {value:,}" for name, value in numbers.items())
    click.echo(f"{report.sync.name}: {record.status}  {shown}  {report.duration_s:.2f}s")
