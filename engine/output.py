"""What the CLI prints on stdout: tables, plans, run summaries and `--json` documents.

Log lines and errors go to stderr through `engine.logs`; this module writes only results.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import click
import orjson

from engine.errors import combine_exit_codes
from engine.sync_status import ORPHANED

if TYPE_CHECKING:
    from engine.config import Sync
    from engine.destination import PlannedRecord
    from engine.runner import SyncReport
    from engine.verify import Verification


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


def list_row(sync: Sync, run: dict[str, Any] | None, lifecycle: str) -> dict[str, Any]:
    return {
        "name": sync.name,
        "object": sync.object,
        "behavior": sync.behavior,
        "workspace": sync.workspace,
        "schedule": sync.schedule,
        "enabled": sync.enabled,
        "lifecycle": lifecycle,
        "last_run": run["started_at"].isoformat(timespec="seconds") if run else None,
        "status": run["status"] if run else None,
    }


def orphan_row(name: str, run: dict[str, Any] | None) -> dict[str, Any]:
    """A sync the state store holds a snapshot or history of, whose file was removed."""
    return {
        "name": name,
        "object": None,
        "behavior": None,
        "workspace": None,
        "schedule": None,
        "enabled": None,
        "lifecycle": ORPHANED,
        "last_run": run["started_at"].isoformat(timespec="seconds") if run else None,
        "status": ORPHANED,
    }


def table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def print_plans(reports: list[SyncReport], fmt: str = "text") -> int:
    """Print plans as text, one JSON document (`json`), or Markdown for a pull request."""
    if fmt == "json":
        emit_json({"syncs": [plan_document(r) for r in reports]})
    elif fmt == "markdown":
        click.echo(plans_markdown(reports))
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
    for note in report.notes:
        click.echo(f"  note: {note}")


def _describe(sample: dict[str, Any]) -> str:
    if "identifier" in sample:  # a rekey: merged into the new identifier
        moved = f"{sample['identifier']['before']} → {sample['identifier']['after']} (merge)"
        changes = ", ".join(
            f"{k}: {_short(v['before'])} → {_short(v['after'])}"
            for k, v in sample["changes"].items()
        )
        return f"{moved}  {changes}".rstrip()
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


def print_teardown(report: SyncReport, fmt: str, *, planned: bool) -> int:
    """A teardown: its plan (as `print_plans` prints one), or what the removal did."""
    if planned:
        return print_plans([report], fmt)
    if fmt == "json":
        document = {**report.run_json(), "notes": report.notes}
        emit_json({"exit_code": report.exit_code, "syncs": [document]})
        return report.exit_code
    print_run(report)
    for note in report.notes:
        click.echo(f"note: {note}")
    return report.exit_code


def print_verification(found: Verification, as_json: bool) -> int:
    """`sync verify`: what was read back, and each record missing or different."""
    if as_json:
        emit_json({"exit_code": found.exit_code, "syncs": [found.document()]})
        return found.exit_code
    record = found.record
    said = f"{record.message}  requests {record.requests:,}  {found.duration_s:.2f}s"
    click.echo(f"{found.sync.name}: {record.status}  {said}")
    for drift in found.drift:
        click.echo(f"  {'missing' if drift.missing else 'differs':8} {drift.key}: {drift.detail}")
    if found.hint and found.drift:
        click.echo(f"  ({found.hint})")
    return found.exit_code


def print_run(report: SyncReport) -> None:
    """One line a sync: its status and counters (its errors and hints went to the log)."""
    record = report.record
    numbers = {**record.counts(), "requests": record.requests, "retries": record.retries}
    shown = "  ".join(f"{name} {value:,}" for name, value in numbers.items())
    click.echo(f"{report.sync.name}: {record.status}  {shown}  {report.duration_s:.2f}s")


# --- a plan as Markdown, for a pull request -------------------------------------------------------

_COUNT_NAMES = ("add", "update", "remove", "unchanged", "invalid", "skipped")


def plans_markdown(reports: list[SyncReport]) -> str:
    """The plans as one Markdown document a reviewer reads in a pull request: a summary table,
    then per sync its counts, the guard's verdict, the calls a run would make and the samples
    with their before and after."""
    documents = [plan_document(r) for r in reports]
    names = list(dict.fromkeys(name for d in documents for name in (*_COUNT_NAMES, *d["counts"])))
    lines = ["# cio-sync plan", ""]
    lines += _md_row(["sync", "object", "behavior", "workspace", *names, "guard"])
    lines += _md_row(["---"] * 4 + ["---:"] * len(names) + ["---"])
    for report, document in zip(reports, documents, strict=True):
        counts = document["counts"]
        sync = report.sync
        lines += _md_row(
            [
                _code(sync.name),
                sync.object,
                sync.behavior,
                sync.workspace,
                *(f"{counts[name]:,}" if name in counts else "" for name in names),
                "error" if report.message else _verdict_word(document["guard"]),
            ]
        )
    for report, document in zip(reports, documents, strict=True):
        lines += ["", *_sync_markdown(report, document)]
    return "\n".join(lines)


def _sync_markdown(report: SyncReport, document: dict[str, Any]) -> list[str]:
    sync = report.sync
    lines = [f"## {_code(sync.name)}", ""]
    where = f"workspace {_code(sync.workspace)} ({sync.file})"
    lines += [f"{sync.object}, {sync.behavior} → {where}", ""]
    if report.message:
        return [*lines, f"**Error:** {_escape(report.message)}"]
    counts = document["counts"]
    lines += _md_row(list(counts))
    lines += _md_row(["---:"] * len(counts))
    lines += _md_row([f"{value:,}" for value in counts.values()])
    lines += ["", _guard_markdown(document["guard"], sync), ""]
    lines += ["### Calls it would make", ""]
    calls = document["calls"]
    if not calls:
        lines.append("None: nothing changed.")
    for call in calls:
        lines.append(f"- {_escape(call['summary'])}")
        if call["operations"]:
            fence = "json" if all(op.startswith("{") for op in call["operations"]) else "text"
            lines += ["", f"  ```{fence}", *(f"  {op}" for op in call["operations"]), "  ```"]
    if document["guard"].get("would_trip"):
        lines += ["", "_The guard would stop the run before any of these calls is made._"]
    lines += [line for note in report.notes for line in ("", f"_Note: {_escape(note)}_")]
    return [*lines, *_samples_markdown(report, document)]


def _verdict_word(guard: dict[str, Any]) -> str:
    if guard.get("would_trip"):
        return "**would stop (exit 3)**"
    return "ok" if guard.get("limit") is not None else "does not apply"


def _guard_markdown(guard: dict[str, Any], sync: Sync) -> str:
    if guard.get("would_trip"):
        return (
            f"**Guard: would stop the run (exit 3).** {_escape(guard['reason'])}; "
            "`--allow-removals` would send it anyway."
        )
    if sync.whole:
        return "**Guard:** ok: the query returned rows."
    if not sync.is_mirror:
        return f"**Guard:** does not apply: {sync.behavior} removes nothing."
    if guard.get("limit") is None:
        return "**Guard:** not checked: a full run removes nothing."
    return f"**Guard:** ok: {guard['removals']:,} removal(s), at most {guard['limit']:,} allowed."


def _samples_markdown(report: SyncReport, document: dict[str, Any]) -> list[str]:
    lines = ["", "### Samples"]
    on_remove = document.get("on_remove")
    for op, records in report.sample_records.items():
        count = document["counts"].get(op, 0)
        if not records:
            continue
        what = f" ({on_remove})" if op == "remove" and on_remove else ""
        lines += ["", f"#### {op}{what}: {len(records):,} of {count:,}", ""]
        lines += _md_row(["key", "attribute", "before", "after"])
        lines += _md_row(["---"] * 4)
        for record, sample in zip(records, document["samples"][op], strict=True):
            lines += _sample_rows(record, sample)
    if len(lines) == 2:
        lines += ["", "No record changes."]
    return lines


def _sample_rows(record: PlannedRecord, sample: dict[str, Any]) -> list[str]:
    """One table row per attribute of a sample: before (the snapshot's) and after."""
    if "changes" in sample:
        pairs = [(k, v["before"], v["after"]) for k, v in sample["changes"].items()]
        if "identifier" in sample:  # a rekey: the identifier first
            moved = sample["identifier"]
            pairs.insert(0, (_IDENTIFIER, moved["before"], moved["after"]))
    elif "attributes" in sample:
        pairs = [(k, _ABSENT, v) for k, v in sample["attributes"].items()]
    else:  # a removal: what was last delivered
        before = (record.before or {}).get("a", {})
        pairs = [(k, v, _ABSENT) for k, v in before.items() if v is not None]
    key = _code(str(sample["key"]))
    if not pairs:
        return _md_row([key, "", "", ""])
    return [
        line
        for name, before_value, after in pairs
        for line in _md_row([key, _attribute(name), _md_value(before_value), _md_value(after)])
    ]


_ABSENT = object()
_IDENTIFIER = object()  # a rekey's row of identifiers


def _attribute(name: Any) -> str:
    return "_identifier (merged)_" if name is _IDENTIFIER else _code(name)


def _md_value(value: Any) -> str:
    return "" if value is _ABSENT else _code(_short(value, 60))


def _md_row(cells: list[str]) -> list[str]:
    return ["| " + " | ".join(cells) + " |"]


def _escape(text: str) -> str:
    """Text safe inside a table cell or a line: pipes escaped, on one line."""
    return " ".join(text.replace("|", "\\|").split())


def _code(text: str) -> str:
    """Inline code (a double fence when the text holds a backtick)."""
    text = _escape(text)
    return f"`` {text} ``" if "`" in text else f"`{text}`"
