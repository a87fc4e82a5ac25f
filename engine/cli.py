"""The `sync` command line (SPEC §3). Exit codes: the first of 2, 4, 1, 3, 6, 5 that applies, else 0."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import click
import orjson

from engine import compose, ledger
from engine.config import Project, Sync, find_project_root
from engine.errors import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    SyncError,
    UsageError,
    combine_exit_codes,
)
from engine.report import NUMBERS
from engine.runner import Options, Runner, SyncReport
from engine.state import StateStore

log = logging.getLogger("cio_sync")
_DECISIONS = "cio_sync.schedule"  # engine.schedule's logger, named here to import it only for --due


# --- plumbing ----------------------------------------------------------------------------------


class Context:
    def __init__(self, project_dir: str | None) -> None:
        self.project_dir = project_dir
        self.stores: list[StateStore] = []

    def project(self, selected: Sequence[str] | None = None) -> Project:
        return compose.load_project(find_project_root(self.project_dir), selected)

    def store(self, project: Project) -> StateStore:
        store = StateStore(project.state)
        self.stores.append(store)
        store.migrate()
        return store

    def close(self) -> None:
        for store in self.stores:
            store.dispose()


def _exit(code: int) -> NoReturn:
    sys.exit(code)


def _emit_json(document: Any) -> None:
    click.echo(
        orjson.dumps(
            document, default=str, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS
        ).decode()
    )


def guarded(command: Callable[..., int]) -> Callable[..., None]:
    """Run a command body; a SyncError becomes its message on stderr and its exit code."""

    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            code = command(*args, **kwargs)
        except SyncError as exc:
            click.echo(f"error: {exc}", err=True)
            _exit(exc.exit_code)
        _exit(code)

    wrapper.__name__ = command.__name__
    wrapper.__doc__ = command.__doc__
    return wrapper


def _configure_logging(fmt: str, verbose: int, quiet: bool) -> None:
    level = logging.WARNING - 10 * verbose if not quiet else logging.ERROR
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=max(level, logging.DEBUG), handlers=[handler], force=True)
    # `run --due` says what it decided at the default verbosity too (-q hides it)
    logging.getLogger(_DECISIONS).setLevel(logging.NOTSET if quiet else min(level, logging.INFO))


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        document = {
            "at": record.created,
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document)


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


# --- the group -----------------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--project",
    "project_dir",
    metavar="DIR",
    help="Project directory (default: $SYNC_PROJECT or the current directory).",
)
@click.option(
    "--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
@click.version_option(package_name="cio-sync")
@click.pass_context
def main(
    ctx: click.Context, project_dir: str | None, log_format: str, verbose: int, quiet: bool
) -> None:
    """cio-sync: SQL in your warehouse → Customer.io, only the changes, safely."""
    _configure_logging(log_format, verbose, quiet)
    ctx.obj = Context(project_dir)
    ctx.call_on_close(ctx.obj.close)


pass_context = click.make_pass_decorator(Context)


# --- commands ------------------------------------------------------------------------------------


@main.command()
@click.argument("names", nargs=-1)
@click.option(
    "--connect",
    is_flag=True,
    help="Also probe each query (no rows) and each workspace's credentials.",
)
@pass_context
@guarded
def validate(ctx: Context, names: tuple[str, ...], connect: bool) -> int:
    """Check every sync; report every problem at once, each with file and line."""
    project = ctx.project(names or None)
    syncs = project.select(names) if names else list(project.syncs.values())
    if connect:
        from engine.probe import probe

        problems = asyncio.run(probe(project, syncs, compose.opener(project)))
        for problem in problems:
            click.echo(f"error: {problem}", err=True)
        if problems:
            return EXIT_CONFIG
    click.echo(f"ok: {len(syncs)} sync(s) valid in {project.root}")
    return EXIT_OK


@main.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_context
@guarded
def list_(ctx: Context, as_json: bool) -> int:
    """Name, object, behavior, workspace, schedule, enabled, last run and its status."""
    project = ctx.project([])
    last = ledger.last_runs(ctx.store(project))
    rows = [_list_row(sync, last.get(sync.name)) for sync in project.syncs.values()]
    if as_json:
        _emit_json({"syncs": rows})
    else:
        _table(
            rows,
            [
                "name",
                "object",
                "behavior",
                "workspace",
                "schedule",
                "enabled",
                "last_run",
                "status",
            ],
        )
    return EXIT_OK


def _list_row(sync: Sync, run: dict[str, Any] | None) -> dict[str, Any]:
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


def _table(rows: list[dict[str, Any]], columns: list[str]) -> None:
    cells = [[("" if r.get(c) is None else str(r.get(c))) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    click.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


@main.command()
@click.argument("names", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--sample", default=5, show_default=True, help="Sample records per operation.")
@pass_context
@guarded
def plan(ctx: Context, names: tuple[str, ...], as_json: bool, sample: int) -> int:
    """Dry run: counts and samples with field-level before/after. Sends nothing, takes no lock."""
    project = ctx.project(names)
    reports = _plan(ctx, project, project.select(names), Options(sample=sample))
    return _print_plans(reports, as_json)


def _plan(ctx: Context, project: Project, syncs: list[Sync], options: Options) -> list[SyncReport]:
    runner = Runner(project, ctx.store(project), compose.opener(project))
    return asyncio.run(runner.plan(syncs, options))


def _print_plans(reports: list[SyncReport], as_json: bool) -> int:
    if as_json:
        _emit_json({"syncs": [_plan_document(r) for r in reports]})
    else:
        for report in reports:
            _print_plan(report)
    return combine_exit_codes([r.exit_code for r in reports])


def _plan_document(report: SyncReport) -> dict[str, Any]:
    """SPEC §3's plan shape, plus `on_remove` for a person mirror: what a removal will do."""
    document = report.plan_json()
    on_remove = report.sync.removal_action()
    if on_remove is not None:
        document["on_remove"] = on_remove
    return document


def _print_plan(report: SyncReport) -> None:
    document = _plan_document(report)
    sync = report.sync
    click.echo(f"{sync.name}  ({sync.object}, {sync.behavior} → {sync.workspace})")
    if report.message:
        click.echo(f"  error: {report.message}")
        return
    click.echo("  " + "  ".join(f"{k} {v:,}" for k, v in document["counts"].items()))
    guard = document["guard"]
    if guard.get("limit") is not None:
        verdict = "WOULD STOP the run (exit 3)" if guard["would_trip"] else "ok"
        click.echo(f"  guard: {guard['removals']} removal(s), limit {guard['limit']}: {verdict}")
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


@main.command()
@click.argument("names", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every enabled sync.")
@click.option("--due", is_flag=True, help="Enabled syncs whose schedule is due.")
@click.option(
    "--full",
    is_flag=True,
    help="Resend every row as if the snapshot were empty (not delivered events).",
)
@click.option("--allow-removals", is_flag=True, help="Let a mirror remove past its guard.")
@click.option("--dry-run", is_flag=True, help="Plan each selected sync instead of running it.")
@click.option("--json", "as_json", is_flag=True)
@pass_context
@guarded
def run(
    ctx: Context,
    names: tuple[str, ...],
    all_: bool,
    due: bool,
    full: bool,
    allow_removals: bool,
    dry_run: bool,
    as_json: bool,
) -> int:
    """Run syncs: send only the changes since the last delivered snapshot."""
    _check_selection(names, all_, due)
    project = ctx.project(names or None)
    syncs = _selected(ctx, project, names, all_, due)
    options = Options(full=full, allow_removals=allow_removals)
    if dry_run:
        return _print_plans(_plan(ctx, project, syncs, options), as_json)
    progress = Progress(enabled=sys.stdout.isatty() and not as_json)
    runner = Runner(project, ctx.store(project), compose.opener(project), progress=progress)
    reports = asyncio.run(runner.run(syncs, options))
    progress.close()
    code = combine_exit_codes([r.exit_code for r in reports])
    if as_json:
        _emit_json({"exit_code": code, "syncs": [r.run_json() for r in reports]})
    else:
        for report in reports:
            _print_run(report)
    return code


def _check_selection(names: tuple[str, ...], all_: bool, due: bool) -> None:
    if not (names or all_ or due):
        raise UsageError("name the syncs to run, or give --all or --due")
    if names and all_:
        raise UsageError(
            "give sync names or --all, not both: drop --all to run the syncs named, "
            "or the names to run every enabled sync"
        )
    if names and due:
        raise UsageError(
            "give sync names or --due, not both: drop --due to run the syncs named now, "
            "or the names to run the enabled syncs whose schedule is due"
        )
    if all_ and due:
        raise UsageError(
            "give --all or --due, not both: --all runs every enabled sync, "
            "--due only those whose schedule is due"
        )


def _selected(
    ctx: Context, project: Project, names: tuple[str, ...], all_: bool, due: bool
) -> list[Sync]:
    if names:
        chosen = project.select(names)
        for sync in chosen:
            if not sync.enabled:
                log.warning("sync '%s' is disabled; running it because it was named", sync.name)
        return chosen
    enabled = [s for s in project.syncs.values() if s.enabled]
    if due:
        from engine.schedule import due_syncs

        return due_syncs(enabled, ledger.last_runs(ctx.store(project)))
    return enabled


def _print_run(report: SyncReport) -> None:
    for note in report.notes:
        click.echo(f"note: {note}", err=True)
    record = report.record
    numbers = {**record.counts(), "requests": record.requests, "retries": record.retries}
    shown = "  ".join(f"{name} {value:,}" for name, value in numbers.items())
    click.echo(f"{report.sync.name}: {record.status}  {shown}  {report.duration_s:.2f}s")
    if report.message:
        click.echo(f"  {report.message}", err=True)
    if record.rejected or record.invalid:
        click.echo(f"  see: sync errors {report.sync.name}", err=True)


@main.command()
@click.argument("name", required=False)
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_context
@guarded
def history(ctx: Context, name: str | None, limit: int, as_json: bool) -> int:
    """Past runs, newest first."""
    project = ctx.project([])
    if name:
        project.select([name])
    rows = ledger.history(ctx.store(project), name, limit)
    if as_json:
        _emit_json({"runs": rows})
        return EXIT_OK
    for row in rows:
        row["started"] = row["started_at"].isoformat(timespec="seconds")
    _table(rows, ["started", "sync", "status", "exit_code", *NUMBERS])
    return EXIT_OK


@main.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@pass_context
@guarded
def errors(ctx: Context, name: str, as_json: bool) -> int:
    """Rejected and invalid records of the latest run, with reasons."""
    project = ctx.project([])
    project.select([name])
    run_row, found = ledger.latest_issues(ctx.store(project), name)
    if as_json:
        _emit_json({"sync": name, "run": run_row and run_row["id"], "errors": found})
        return EXIT_OK
    if run_row is None:
        click.echo(f"{name}: no finished run yet")
        return EXIT_OK
    click.echo(f"{name}: run {run_row['id']} ({run_row['status']}), {len(found)} record(s)")
    for item in found:
        click.echo(f"  {item['kind']:8} {item['key']}: {item['reason']}")
    return EXIT_OK


@main.command()
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_context
@guarded
def reset(ctx: Context, name: str, yes: bool) -> int:
    """Forget the snapshot: the next run sends every row again (events too)."""
    project = ctx.project([])
    project.select([name])
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError("reset needs --yes when not run from a terminal")
        click.confirm(
            f"Forget what was delivered for '{name}'? The next run resends every row", abort=True
        )
    gone = ledger.reset(ctx.store(project), name)
    click.echo(f"{name}: forgot {gone:,} delivered record(s); the next run sends every row")
    return EXIT_OK


@main.command()
@click.argument("method")
@click.argument("path")
@click.option(
    "--workspace", help="Workspace name (default: the defaults' workspace or the only one)."
)
@click.option("--data", help="JSON body, or @FILE.")
@click.option(
    "--query", "query", multiple=True, metavar="K=V", help="Query parameter (repeatable)."
)
@pass_context
@guarded
def request(
    ctx: Context,
    method: str,
    path: str,
    workspace: str | None,
    data: str | None,
    query: tuple[str, ...],
) -> int:
    """An authorized raw call: /api/... goes to the Track API, /v1/... to the App API."""
    from engine.probe import raw_request

    project = ctx.project([])
    body = _request_body(data)
    params = dict(item.split("=", 1) for item in query if "=" in item)
    status, answer = asyncio.run(
        raw_request(
            project, compose.opener(project), workspace, method.upper(), path, body, params
        )
    )
    click.echo(
        answer
        if isinstance(answer, str)
        else orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode()
    )
    return EXIT_OK if 200 <= status < 300 else EXIT_FAILED


def _request_body(data: str | None) -> Any:
    if data is None:
        return None
    text = Path(data[1:]).read_text() if data.startswith("@") else data
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"--data is not valid JSON: {exc}") from exc


@main.command(
    add_help_option=False,
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.pass_context
def emulator(ctx: click.Context) -> None:
    """Serve the local Customer.io emulator (see `sync emulator --help`)."""
    from cio_emulator import main as emulator_main

    _exit(emulator_main(list(ctx.args)))


@main.command()
@click.argument("directory", default=".")
@guarded
def init(directory: str) -> int:
    """Scaffold a project: project.yml, one example sync, a .gitignore for .sync/."""
    from engine.scaffold import scaffold

    for path in scaffold(Path(directory)):
        click.echo(f"created {path}")
    return EXIT_OK


if __name__ == "__main__":
    main()
