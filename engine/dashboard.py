"""`sync serve` (SPEC §7.6): a read-only web page over the state store, rendered on the server.

    /                    the syncs (object, behavior, workspace, schedule, status, last run) and
                         the latest runs of any sync
    /syncs/{name}        a sync's run history, with a chart of records sent and duration per
                         run, and the records its latest finished run set aside
    /syncs/{name}/plan   the sync's plan, computed now as `sync plan` computes it: no lock,
                         nothing sent
    /runs/{id}           a run's counts, requests, retries and 429s, and the records it set aside
                         (every kind `cio_sync_issues` holds), with their reasons

Only GET and HEAD are served; any other method is answered 405. Each page reads in transactions
of its own (`StateStore.tx`, in a worker thread) and then gives a DuckDB state file up
(`StateStore.release`): a run in another process hands the file over when a page asks for it,
and finds it free again afterwards. The project's files are read again for every page, so an
edited sync shows, and plans, as it now reads; the state store is the one the server started on.

Nothing secret is shown: workspaces by name, URLs through `display_url`. On a loopback address
(the default) a request whose Host header names another host is refused, which defeats DNS
rebinding, and every answer carries a Content-Security-Policy under which a page loads nothing:
no script, no font, no stylesheet but its own inline one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import logging
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import jinja2
import orjson
from aiohttp import web

from engine import compose, ledger, output
from engine.chart import history_chart, seconds_text
from engine.config import Project, Sync, display_url
from engine.errors import ConfigError, SyncError, UsageError
from engine.runner import Options, Runner
from engine.schedule import next_due
from engine.state import StateStore, now

log = logging.getLogger("cio_sync.serve")
T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

HISTORY_LIMIT = 50  # runs on a sync's page and in its chart
RECENT_LIMIT = 15  # runs of any sync on the first page
ISSUE_LIMIT = 500  # records with problems listed on a run's page
SYNC_ISSUE_LIMIT = 20  # ... and on a sync's page
PLAN_SAMPLE = 10
REFRESH_S = 5  # a page that shows a run going reloads itself this often
READ_METHODS = ("GET", "HEAD")
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass
class Site:
    """What the pages share: the project's directory, its state store and the templates."""

    root: Path
    store: StateStore
    state: str  # the store's URL as shown: its password hidden
    templates: jinja2.Environment = field(default_factory=lambda: templates())
    planning: asyncio.Lock = field(default_factory=asyncio.Lock)  # one plan at a time

    def project(self, selected: Sequence[str] = ()) -> Project:
        return compose.load_project(self.root, selected)

    async def read(self, reader: Callable[[StateStore], T]) -> T:
        """`reader(store)` in a worker thread; the DuckDB state file is given up after it."""
        return await asyncio.to_thread(self._read, reader)

    def _read(self, reader: Callable[[StateStore], T]) -> T:
        try:
            return reader(self.store)
        finally:
            self.store.release()

    def page(self, template: str, status: int = 200, **context: Any) -> web.Response:
        html = self.templates.get_template(template).render(
            root=str(self.root), state=self.state, **context
        )
        return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


SITE = web.AppKey("site", Site)


def templates() -> jinja2.Environment:
    """The pages' templates (shipped in the package), every value escaped."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("engine", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=when, seconds=seconds, number=number, value=value_text)
    return env


# --- serving -------------------------------------------------------------------------------------


def serve(
    root: Path, store: StateStore, host: str, port: int, announce: Callable[[str], None]
) -> None:
    """Serve the dashboard until SIGINT or SIGTERM; `announce` gets its address once it listens."""
    asyncio.run(_serve(root, store, host, port, announce))


async def _serve(
    root: Path, store: StateStore, host: str, port: int, announce: Callable[[str], None]
) -> None:
    runner = web.AppRunner(create_app(root, store, loopback=is_loopback(host)), access_log=None)
    await runner.setup()
    try:
        await _listen(runner, host, port, announce)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


async def _listen(
    runner: web.AppRunner, host: str, port: int, announce: Callable[[str], None]
) -> None:
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        raise UsageError(
            f"sync serve cannot listen on {host}:{port}: {exc.strerror or exc}",
            "give another --port (or --host), or stop what listens there",
        ) from exc
    bound = runner.addresses[0][1]
    url = f"http://{f'[{host}]' if ':' in host else host}:{bound}/"
    if not is_loopback(host):
        log.warning(
            "the dashboard listens on %s, beyond this machine: there is no login, so anyone who "
            "reaches the port reads run history and rejected records",
            host,
        )
    announce(url)


def create_app(root: Path, store: StateStore, *, loopback: bool = True) -> web.Application:
    """The dashboard's aiohttp application over the project at `root` and its state store."""
    guards = [problems, read_only, *([loopback_hosts] if loopback else [])]
    app = web.Application(middlewares=guards)
    app[SITE] = Site(root, store, display_url(store.url))
    app.on_response_prepare.append(_secure)
    app.router.add_get("/", index)
    app.router.add_get("/syncs/{name}", sync_page)
    app.router.add_get("/syncs/{name}/plan", plan_page)
    app.router.add_get("/runs/{run}", run_page)
    return app


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


async def _secure(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(HEADERS)


# --- middlewares ---------------------------------------------------------------------------------


@web.middleware
async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    """An HTTP error, or a SyncError (the project's files, the state store), as a page."""
    site = request.app[SITE]
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k.lower() != "content-type"}
        title = f"{exc.status} {exc.reason}"
        answer = site.page("error.html.j2", exc.status, title=title, message=exc.text, hint="")
        answer.headers.update(headers)
        return answer
    except SyncError as exc:
        status = 500 if isinstance(exc, ConfigError) else 503
        title = "The project cannot be read" if status == 500 else "The state store cannot be read"
        return site.page("error.html.j2", status, title=title, message=exc.message, hint=exc.hint)


@web.middleware
async def read_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The dashboard changes nothing: any method but GET and HEAD is answered 405."""
    if request.method not in READ_METHODS:
        raise web.HTTPMethodNotAllowed(
            request.method, READ_METHODS, text="the dashboard is read-only: only GET is served"
        )
    return await handler(request)


@web.middleware
async def loopback_hosts(request: web.Request, handler: Handler) -> web.StreamResponse:
    """On loopback, answer only requests addressed to a loopback name (no DNS rebinding)."""
    host = request.url.host or ""
    if not (is_loopback(host) or host.endswith(".localhost")):
        raise web.HTTPForbidden(
            text="this dashboard listens on loopback and answers only to localhost or its address"
        )
    return await handler(request)


# --- pages ---------------------------------------------------------------------------------------


async def index(request: web.Request) -> web.Response:
    site = request.app[SITE]
    project = site.project()
    last, recent = await site.read(
        lambda store: (ledger.last_runs(store), ledger.history(store, None, RECENT_LIMIT))
    )
    at = now()
    syncs = [sync_row(sync, last.get(sync.name), at) for sync in project.syncs.values()]
    runs = [run_view(row, at) for row in recent]
    return site.page("index.html.j2", syncs=syncs, runs=runs, refresh=_refresh(runs))


async def sync_page(request: web.Request) -> web.Response:
    site = request.app[SITE]
    project = site.project()
    sync = _sync_named(project, request.match_info["name"])
    rows, latest = await site.read(lambda store: _sync_history(store, sync.name))
    at = now()
    runs = [run_view(row, at) for row in rows]
    run, kinds, issues = latest
    return site.page(
        "sync.html.j2",
        sync=sync_details(project, sync, rows[0] if rows else None, at),
        runs=runs,
        chart=history_chart(runs[::-1]),
        latest=run and run_view(run, at),
        kinds=kinds,
        issues=issues,
        refresh=_refresh(runs),
    )


def _sync_history(store: StateStore, name: str) -> tuple[list[dict[str, Any]], Any]:
    """The sync's latest runs, and the records its latest finished run set aside."""
    rows = ledger.history(store, name, HISTORY_LIMIT)
    finished = next((row["id"] for row in rows if row["status"] != "running"), None)
    if finished is None:
        return rows, (None, {}, [])
    return rows, ledger.run_issues(store, finished, SYNC_ISSUE_LIMIT)


async def run_page(request: web.Request) -> web.Response:
    site = request.app[SITE]
    wanted = request.match_info["run"]
    run, kinds, issues = await site.read(
        lambda store: ledger.run_issues(store, wanted, ISSUE_LIMIT)
    )
    if run is None:
        raise web.HTTPNotFound(text=f"no run with the id '{wanted}' in the state store")
    view = run_view(run, now())
    return site.page(
        "run.html.j2",
        run=view,
        kinds=kinds,
        issues=issues,
        shown=len(issues),
        refresh=_refresh([view]),
    )


async def plan_page(request: web.Request) -> web.Response:
    """The plan, computed now: `Runner.plan` as `sync plan` runs it (no lock, nothing sent)."""
    site = request.app[SITE]
    name = _sync_named(site.project(), request.match_info["name"]).name
    project = site.project([name])
    sync = project.syncs[name]
    started = now()
    async with site.planning:
        runner = Runner(project, site.store, compose.opener(project))
        try:
            [report] = await runner.plan([sync], Options(sample=PLAN_SAMPLE))
        finally:
            await asyncio.to_thread(site.store.release)
    return site.page(
        "plan.html.j2",
        sync=sync_details(project, sync, None, started),
        plan=output.plan_document(report),
        hint=report.hint,
        sample=PLAN_SAMPLE,
        computed=started,
        took=(now() - started).total_seconds(),
    )


def _sync_named(project: Project, name: str) -> Sync:
    if name not in project.syncs:
        raise web.HTTPNotFound(text=f"no sync named '{name}' in {project.root}")
    return project.syncs[name]


def _refresh(runs: Sequence[Mapping[str, Any]]) -> int | None:
    return REFRESH_S if any(run["status"] == "running" for run in runs) else None


# --- what the templates show ---------------------------------------------------------------------


def sync_row(sync: Sync, run: dict[str, Any] | None, at: dt.datetime) -> dict[str, Any]:
    """A sync as the first page lists it, with its latest run."""
    return {
        "name": sync.name,
        "object": sync.object,
        "behavior": sync.behavior,
        "workspace": sync.workspace,
        "schedule": sync.schedule,
        "next": _next_time(sync, at),
        "enabled": sync.enabled,
        "last": run and run_view(run, at),
    }


def sync_details(
    project: Project, sync: Sync, run: dict[str, Any] | None, at: dt.datetime
) -> dict[str, Any]:
    """A sync as its own page shows it: its list row, its source and its description."""
    source = project.source_of(sync)
    return {
        **sync_row(sync, run, at),
        "source": sync.source,
        "source_url": display_url(source.url),
        "description": sync.description,
    }


def _next_time(sync: Sync, at: dt.datetime) -> dt.datetime | None:
    if not sync.schedule or not sync.enabled:
        return None
    return next_due(sync.schedule, at)


def run_view(row: Mapping[str, Any], at: dt.datetime) -> dict[str, Any]:
    """A history row with its duration: ended minus started, or so far for a run going on;
    none for a run whose process ended mid-run (it has no end)."""
    started, ended = _utc(row["started_at"]), row.get("ended_at")
    if ended is not None:
        duration: float | None = (_utc(ended) - started).total_seconds()
    elif row["status"] == "running":
        duration = (at - started).total_seconds()
    else:
        duration = None
    return {**row, "duration_s": duration, "started": when(started)}


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


# --- filters -------------------------------------------------------------------------------------


def when(value: dt.datetime | None) -> str:
    return "" if value is None else _utc(value).strftime("%Y-%m-%d %H:%M:%S UTC")


def seconds(value: float | None) -> str:
    return "" if value is None else seconds_text(value)


def number(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def value_text(value: Any) -> str:
    """A sample's value as compact JSON (a string in quotes, null for NULL)."""
    return orjson.dumps(value, default=str).decode()
