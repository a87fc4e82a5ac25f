"""The `sync` command line (SPEC §3). Exit codes: the first of 2, 4, 1, 3, 6, 5 that applies, else 0.

Start-up is kept cheap: this module imports only click; each command imports what it uses, so
`sync --help` and `--version` load nothing else, and `list` and `validate` no HTTP client, Arrow
or SQLAlchemy (`list` reads a DuckDB state file through `engine.statefile`, other stores through
SQLAlchemy).
Every failure ends as one message on stderr (through `engine.logs`) and its exit code: a
`SyncError` as its message and hint, anything else as an engine defect (traceback at -vv).
Global options (`--project`, `--log-format`, `-v`, `-q`, `--metrics-file`) may also follow the
subcommand.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from engine.config import Project, Sync
    from engine.runner import Options, SyncReport
    from engine.state import StateStore
    from engine.statefile import Recorded

from engine.cli_base import (
    EXIT_FAILED,
    EXIT_OK,
    Context,
    Group,
    exit_with,
    guarded,
    log,
    run_then_exit,
)

# --- the group -----------------------------------------------------------------------------------


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--project",
    "project_dir",
    metavar="DIR",
    help="Project directory (default: $SYNC_PROJECT or the current directory).",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="stderr as readable lines, or one JSON object a line.",
)
@click.option("-v", "--verbose", count=True, help="More log output (-vv: debug, tracebacks).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors on stderr.")
@click.option(
    "--metrics-file",
    metavar="PATH",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Prometheus textfile written after every run (overrides metrics_file: in project.yml).",
)
@click.version_option(package_name="cio-sync")
@click.pass_context
def main(
    ctx: click.Context,
    project_dir: str | None,
    log_format: str,
    verbose: int,
    quiet: bool,
    metrics_file: Path | None,
) -> None:
    """cio-sync: SQL in your warehouse → Customer.io, only the changes, safely."""
    from engine import logs

    logs.configure(log_format, verbose, quiet)
    ctx.obj = Context(project_dir, metrics_file)
    ctx.call_on_close(ctx.obj.close)


pass_context = click.make_pass_decorator(Context)
_COUNT = click.IntRange(min=0)


# --- commands ------------------------------------------------------------------------------------


@main.command()
@click.argument("names", nargs=-1)
@click.option(
    "--connect",
    is_flag=True,
    help="Also open each source, probe each query (no rows) and check each workspace's "
    "credentials.",
)
@pass_context
@guarded
def validate(ctx: Context, names: tuple[str, ...], connect: bool) -> int:
    """Check every sync; report every problem at once, each with file and line."""
    project = ctx.project(names or None)
    syncs = project.select(names) if names else list(project.syncs.values())
    code = _probe(project, syncs) if connect else EXIT_OK
    if code == EXIT_OK:
        click.echo(f"ok: {len(syncs)} sync(s) valid in {project.root}")
    return code


def _probe(project: Project, syncs: list[Sync]) -> int:
    """`validate --connect`: what each source, query and workspace reached, or its error."""
    import asyncio

    from engine import compose, logs
    from engine.errors import combine_exit_codes
    from engine.probe import probe

    found = asyncio.run(probe(project, syncs, compose.opener(project)))
    for finding in found:
        if finding.error is None:
            click.echo(f"ok: {finding.subject}: {finding.reached}")
        else:
            extra = logs.event("validate.failed", hint=finding.error.hint)
            log.error("%s: %s", finding.subject, finding.error.message, extra=extra)
    return combine_exit_codes([f.error.exit_code for f in found if f.error is not None])


@main.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_context
@guarded
def list_(ctx: Context, as_json: bool) -> int:
    """Name, object, behavior, workspace, schedule, enabled, last run and its status."""
    from engine import output, sync_status

    project = ctx.project([])
    found = _recorded(ctx, project)
    rows = [
        output.list_row(
            sync,
            found.last_runs.get(sync.name),
            sync_status.shown(sync, found.statuses.get(sync.name)),
        )
        for sync in project.syncs.values()
    ]
    rows += [output.orphan_row(name, found.last_runs.get(name)) for name in found.orphans]
    if as_json:
        output.emit_json({"syncs": rows})
    else:
        columns = ["name", "object", "behavior", "workspace", "schedule", "enabled", "lifecycle"]
        output.table(rows, [*columns, "last_run", "status"])
    return EXIT_OK


def _recorded(ctx: Context, project: Project) -> Recorded:
    """What the state store holds of the project's syncs: read straight from a DuckDB state
    file where that can be done (`engine.statefile`, for start-up), else through the store."""
    from engine import statefile

    found = statefile.read(project.state, project.syncs)
    if found is not None:
        return found
    from engine import ledger, lifecycle

    store = ctx.store(project)
    orphans = lifecycle.orphans(store, project.syncs)
    return statefile.Recorded(ledger.last_runs(store), lifecycle.statuses(store), orphans)


@main.command()
@click.argument("names", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "markdown"]),
    help="text (default), one JSON document, or Markdown for a pull request.",
)
@click.option(
    "--sample", default=5, show_default=True, type=_COUNT, help="Sample records per operation."
)
@click.option("--explain", is_flag=True, help="Print the SQL a run executes, after the plan.")
@pass_context
@guarded
def plan(
    ctx: Context, names: tuple[str, ...], as_json: bool, fmt: str | None, sample: int, explain: bool
) -> int:
    """Dry run: counts and samples with field-level before/after. Sends nothing, takes no lock."""
    from engine import explain as explaining
    from engine import output
    from engine.runner import Options

    chosen = _plan_format(as_json, fmt)
    project = ctx.project(names)
    with explaining.recording() as statements:
        reports = _plan(ctx, project, project.select(names), Options(sample=sample))
    code = output.print_plans(reports, chosen)
    if explain:
        click.echo(("\n" if chosen != "markdown" else "\n```sql\n") + explaining.text(statements))
        if chosen == "markdown":
            click.echo("```")
    return code


def _plan_format(as_json: bool, fmt: str | None) -> str:
    """`--json` is `--format json`; with another --format it is a usage error."""
    from engine.errors import UsageError

    if as_json and fmt not in (None, "json"):
        raise UsageError(f"give --json or --format {fmt}, not both")
    return "json" if as_json else fmt or "text"


def _plan(ctx: Context, project: Project, syncs: list[Sync], options: Options) -> list[SyncReport]:
    import asyncio

    from engine import compose
    from engine.runner import Runner

    store = ctx.store(project)
    runner = Runner(project, store, compose.opener(project, store))
    return asyncio.run(runner.plan(syncs, options))


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
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Run at most N syncs at once (default: all of a phase).",
)
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
    workers: int | None,
    as_json: bool,
) -> int:
    """Run syncs: send only the changes since the last delivered snapshot."""
    import asyncio

    from engine import compose, output
    from engine.errors import combine_exit_codes
    from engine.runner import Options, Runner

    _check_selection(names, all_, due)
    project = ctx.project(names or None)
    syncs = _selected(ctx, project, names, all_, due)
    options = Options(full=full, allow_removals=allow_removals, workers=workers)
    if dry_run:
        reports = _plan(ctx, project, syncs, options)
        return output.print_plans(reports, "json" if as_json else "text")
    progress = output.Progress(enabled=sys.stdout.isatty() and not as_json)
    store = ctx.store(project)
    runner = Runner(project, store, compose.opener(project, store), progress=progress)
    reports = asyncio.run(runner.run(syncs, options))
    progress.close()
    _write_metrics(ctx, project, runner.store)
    code = combine_exit_codes([r.exit_code for r in reports])
    if as_json:
        output.emit_json({"exit_code": code, "syncs": [r.run_json() for r in reports]})
    else:
        for report in reports:
            output.print_run(report)
    return code


def _check_selection(names: tuple[str, ...], all_: bool, due: bool) -> None:
    from engine.errors import UsageError

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
    from engine import ledger

    if names:
        chosen = project.select(names)
        for sync in chosen:
            if not sync.enabled:
                log.warning("sync '%s' is disabled; running it because it was named", sync.name)
        return chosen
    enabled = _not_retired(ctx.store(project), [s for s in project.syncs.values() if s.enabled])
    if due:
        from engine.schedule import due_syncs

        return due_syncs(enabled, ledger.last_runs(ctx.store(project)))
    return enabled


def _not_retired(store: StateStore, syncs: list[Sync]) -> list[Sync]:
    """`--all` and `--due` pass over syncs torn down (or being torn down), saying so at -v."""
    from engine import lifecycle, sync_status

    torn_down = (sync_status.RETIRING, sync_status.RETIRED)
    stored = lifecycle.statuses(store)
    for sync in syncs:
        if stored.get(sync.name) in torn_down:
            log.info("sync '%s' is %s: skipped", sync.name, stored[sync.name])
    return [s for s in syncs if stored.get(s.name) not in torn_down]


def _write_metrics(ctx: Context, project: Project, store: StateStore) -> None:
    """Rewrite the metrics file from run history; a failure warns and leaves the exit code."""
    from engine import logs
    from engine.errors import SyncError

    path = ctx.metrics_file or project.metrics_file
    if path is None:
        return
    from engine.metrics import write_metrics

    try:
        write_metrics(path, project, store)
    except (OSError, SyncError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        extra = logs.event("metrics.failed", path=str(path))
        log.warning("could not write the metrics file %s: %s", path, reason, extra=extra)


@main.command()
@click.argument("name", required=False)
@click.option("--limit", default=20, show_default=True, type=_COUNT)
@click.option("--json", "as_json", is_flag=True)
@pass_context
@guarded
def history(ctx: Context, name: str | None, limit: int, as_json: bool) -> int:
    """Past runs, newest first."""
    from engine import ledger, output
    from engine.report import NUMBERS

    project = ctx.project([])
    if name:
        project.select([name])
    rows = ledger.history(ctx.store(project), name, limit)
    if as_json:
        output.emit_json({"runs": rows})
        return EXIT_OK
    for row in rows:
        row["started"] = row["started_at"].isoformat(timespec="seconds")
    output.table(rows, ["started", "sync", "kind", "status", "exit_code", *NUMBERS])
    return EXIT_OK


@main.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@pass_context
@guarded
def errors(ctx: Context, name: str, as_json: bool) -> int:
    """Rejected and invalid records of the latest run, with reasons."""
    from engine import ledger, output

    project = ctx.project([])
    project.select([name])
    run_row, found = ledger.latest_issues(ctx.store(project), name)
    if as_json:
        output.emit_json({"sync": name, "run": run_row and run_row["id"], "errors": found})
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
    from engine import lifecycle, sync_status

    project = ctx.project([])
    store = ctx.store(project)
    sync = _known_or_orphan(project, store, name)
    seen = lifecycle.read_name(store, name, sync_status.ACTIVE)  # the version a reset must find
    question = f"Forget what was delivered for '{name}'? The next run resends every row"
    _confirm(yes, "reset", name, question)
    gone = lifecycle.reset(store, seen, sync)
    if sync is None:
        said = "it has no file: marked retired"
    else:
        said = "the next run sends every row"
        if seen.status in (sync_status.RETIRING, sync_status.RETIRED):
            said += f"; it is {sync_status.configured(sync)} again"
    click.echo(f"{name}: forgot {gone:,} delivered record(s); {said}")
    return EXIT_OK


def _known_or_orphan(project: Project, store: StateStore, name: str) -> Sync | None:
    """The sync named, or None for an orphan (state of a sync whose file was removed)."""
    from engine import lifecycle

    if name in project.syncs or name not in lifecycle.orphans(store, project.syncs):
        return project.select([name])[0]
    return None


def _confirm(yes: bool, command: str, name: str, question: str) -> None:
    """Ask on a terminal unless --yes; elsewhere --yes is required."""
    from engine.errors import UsageError

    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(
            f"{command} needs --yes when not run from a terminal", f"sync {command} {name} --yes"
        )
    click.confirm(question, abort=True)


@main.command()
@click.argument("name")
@click.option("--yes", is_flag=True, help="Remove and retire; without it, only show the plan.")
@click.option("--allow-removals", is_flag=True, help="Let the removals pass the guard.")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown"]))
@click.option(
    "--sample", default=5, show_default=True, type=_COUNT, help="Sample records in the plan."
)
@pass_context
@guarded
def teardown(
    ctx: Context,
    name: str,
    yes: bool,
    allow_removals: bool,
    as_json: bool,
    fmt: str | None,
    sample: int,
) -> int:
    """Remove from Customer.io what a sync delivered, then retire it (a plan without --yes)."""
    import asyncio

    from engine import compose, output
    from engine.runner import Runner
    from engine.teardown import Teardown, TeardownOptions

    chosen = _plan_format(as_json, fmt)
    project = ctx.project([name])
    sync = project.select([name])[0]
    progress = output.Progress(enabled=yes and sys.stdout.isatty() and chosen == "text")
    store = ctx.store(project)
    runner = Runner(project, store, compose.opener(project, store), progress=progress)
    options = TeardownOptions(yes=yes, allow_removals=allow_removals, sample=sample)
    report = asyncio.run(Teardown(runner)(sync, options))
    progress.close()
    return output.print_teardown(report, chosen, planned=not yes)


@main.command()
@click.argument("name")
@click.option(
    "--sample",
    type=click.IntRange(min=1),
    help="Delivered records to read back (default: the sync's verify.sample, else 100).",
)
@click.option("--json", "as_json", is_flag=True)
@pass_context
@guarded
def verify(ctx: Context, name: str, sample: int | None, as_json: bool) -> int:
    """Read delivered records back from Customer.io; report those missing or different."""
    import asyncio

    from engine import compose, output
    from engine.runner import Runner
    from engine.verify import Verifier

    project = ctx.project([name])
    sync = project.select([name])[0]
    limit = sample or (sync.verify.sample if sync.verify else 100)
    store = ctx.store(project)
    runner = Runner(project, store, compose.opener(project, store))
    found = asyncio.run(Verifier(runner)(sync, limit))
    if found.exit_code not in (EXIT_OK, 6):
        log.error("sync '%s': %s (hint: %s)", name, found.record.message, found.hint)
    return output.print_verification(found, as_json)


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
    import asyncio

    import orjson

    from engine import compose
    from engine.probe import raw_request

    project = ctx.project([])
    body = _request_body(data)
    params = dict(item.split("=", 1) for item in query if "=" in item)
    opener = compose.opener(project)
    status, answer = asyncio.run(
        raw_request(project, opener, workspace, method.upper(), path, body, params)
    )
    click.echo(
        answer
        if isinstance(answer, str)
        else orjson.dumps(answer, option=orjson.OPT_INDENT_2).decode()
    )
    return EXIT_OK if 200 <= status < 300 else EXIT_FAILED


def _request_body(data: str | None) -> Any:
    import orjson

    from engine.errors import UsageError

    if data is None:
        return None
    text = data
    if data.startswith("@"):
        try:
            text = Path(data[1:]).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(
                f"--data {data}: cannot read the file ({exc.__class__.__name__}: {exc})",
                "give @ and the path of a JSON file, or the JSON itself",
            ) from exc
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"--data is not valid JSON: {exc}", "check the body's syntax") from exc


@main.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. The page has no login: beyond loopback, anyone who reaches "
    "the port reads run history and rejected records.",
)
@click.option(
    "--port",
    default=8788,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0: any free port).",
)
@pass_context
@guarded
def serve(ctx: Context, host: str, port: int) -> int:
    """A read-only dashboard over the state store: syncs, runs, rejected records, plans."""
    from engine import dashboard

    project = ctx.project([])
    store = ctx.store(project)
    store.release()  # each page opens the state file for itself

    def announce(url: str) -> None:
        click.echo(f"serving the dashboard on {url} (read-only; Ctrl-C stops it)")

    dashboard.serve(project.root, store, host, port, announce)
    return EXIT_OK


@main.command(
    add_help_option=False,
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
)
@click.pass_context
def emulator(ctx: click.Context) -> None:
    """Serve the local Customer.io emulator (see `sync emulator --help`)."""
    from cio_emulator import main as emulator_main

    exit_with(emulator_main(list(ctx.args)))


@main.command()
@click.argument("directory", default=".")
@guarded
def init(directory: str) -> int:
    """Scaffold a project: project.yml, one example sync, a .gitignore for .sync/."""
    from engine.scaffold import scaffold

    target = Path(directory)
    for path in scaffold(target):
        click.echo(f"created {path}")
    where = "" if target.resolve() == Path.cwd() else f"cd {directory} && "
    click.echo(f"next: {where}sync run --all   (then `sync plan people` after editing data)")
    return EXIT_OK


def entry() -> None:
    """The `sync` and `cio-sync` executables."""
    run_then_exit(main)


if __name__ == "__main__":
    entry()
