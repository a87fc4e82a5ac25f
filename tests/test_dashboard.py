"""SPEC §7.6, end to end: `sync serve` as a real process over a state store filled by real runs of
the CLI against the emulator; its pages fetched over HTTP, and rendered by headless Chromium.

The project's workspace carries real keys (the emulator is started with them) and one source URL
a password: no page may show either. The browser test skips when Chromium is missing, except
under CI (`CI` set), where it fails.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
import sqlalchemy as sa
from support import PEOPLE_SYNC, Project, emu_post, people_table, track_requests

from cio_emulator import EmulatorConfig, EmulatorHandle, start_in_thread
from engine.chart import history_chart, nice_ceiling

TRACK_KEY = "SECRET-KEY-123"
APP_KEY = "SECRET-APP-KEY-456"
SOURCE_PASSWORD = "PASSWORD-XYZ-789"
STATE_PASSWORD = "STATE-PASSWORD-321"  # PostgreSQL on loopback trusts; the password is a decoy
ROWS = [
    ("u1", "a@x.io", "free", 1),
    ("u2", "b@x.io", "pro", 2),
    ("u3", "c@x.io", "free", None),
    (None, "nobody@x.io", "free", 4),  # a NULL key: an invalid record
]
DEVICES_SYNC = """\
object: device
person: {identifier: id, column: user_id}
key: token
platform: platform
query: SELECT * FROM devices
"""
LEADS_SYNC = """\
object: person
behavior: mirror
identifier: email
source: crm
query: SELECT email FROM leads
"""
START_TIMEOUT_S = 30.0


# --- a project with a history --------------------------------------------------------------------


@pytest.fixture
def emulator() -> Iterator[EmulatorHandle]:
    """The emulator, answering only to the workspace's secret keys."""
    handle = start_in_thread(EmulatorConfig(track_api_key=TRACK_KEY, app_api_key=APP_KEY))
    yield handle
    handle.stop()


@pytest.fixture
def history(project: Project) -> Project:
    """Runs of three syncs made by the CLI: people (twice, an invalid row each time), devices (a
    record refused by Customer.io), leads (a source that does not answer); then the warehouse
    changes, so that the people plan has something to do."""
    write_secret_project(project)
    people_table(project, ROWS)
    project.write_sync("people", PEOPLE_SYNC.format(behavior="upsert") + SCHEDULE)
    project.sql(
        "CREATE TABLE devices AS SELECT * FROM (VALUES ('u1', 't1', 'ios'), "
        "('u2', 't2', 'windows')) v(user_id, token, platform)"
    )
    project.write_sync("devices", DEVICES_SYNC)
    project.write_sync("leads", LEADS_SYNC)
    assert project.run_json("people", "devices")["exit_code"] == 6
    project.sql("UPDATE people SET plan = 'team' WHERE id = 'u1'")
    assert project.run_json("people")["syncs"][0]["status"] == "invalid"
    assert project.run_json("leads")["syncs"][0]["status"] == "failed"
    project.sql("INSERT INTO people VALUES ('u4', 'd@x.io', 'pro', 4), ('u5', 'e@x.io', 'free', 5)")
    project.sql("UPDATE people SET score = 20 WHERE id = 'u2'")
    return project


SCHEDULE = 'schedule: "0 9 * * MON"\ndescription: Customers, every Monday\n'


def write_secret_project(project: Project) -> None:
    """The project with the emulator's secret keys, a source whose URL holds a password, and on
    PostgreSQL a state URL with a password too."""
    project.write_project(track_api_key=TRACK_KEY, app_api_key=APP_KEY)
    path = project.root / "syncs" / "project.yml"
    document = json.loads(path.read_text())
    crm = f"postgresql+psycopg://etl:{SOURCE_PASSWORD}@127.0.0.1:9/crm?connect_timeout=2"
    document["sources"]["crm"] = {"url": crm}
    state = sa.make_url(document["state"])
    if state.get_backend_name() == "postgresql" and state.password is None:
        document["state"] = state.set(password=STATE_PASSWORD).render_as_string(hide_password=False)
    path.write_text(json.dumps(document, indent=2))


def secrets(project: Project) -> list[str]:
    state = json.loads((project.root / "syncs" / "project.yml").read_text())["state"]
    password = sa.make_url(state).password
    return [TRACK_KEY, APP_KEY, SOURCE_PASSWORD, *([str(password)] if password else [])]


# --- the server ----------------------------------------------------------------------------------


@dataclass
class Page:
    status: int
    headers: Any
    text: str


@dataclass
class Served:
    """A `sync serve` process and its address."""

    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def get(self, path: str, method: str = "GET", host: str | None = None) -> Page:
        request = urllib.request.Request(self.url + path, method=method)
        if host is not None:
            request.add_header("Host", host)
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return Page(answer.status, answer.headers, answer.read().decode())
        except urllib.error.HTTPError as refused:
            return Page(refused.code, refused.headers, refused.read().decode())

    def ok(self, path: str) -> str:
        page = self.get(path)
        assert page.status == 200, (path, page.status, page.text[-2000:])
        return page.text

    def output(self) -> str:
        return self.log.read_text() + self.log.with_suffix(".err").read_text()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    """Starts `sync serve` for a project; stops it (SIGTERM) after the test: it must exit 0."""
    started: list[Served] = []

    def start(project: Project, *args: str) -> Served:
        port = free_port()
        log = tmp_path / f"serve-{port}.out"
        command = [sys.executable, "-m", "engine.cli", "--project", str(project.root), "serve"]
        with log.open("wb") as out, log.with_suffix(".err").open("wb") as err:
            process = subprocess.Popen(
                [*command, "--port", str(port), *args], stdout=out, stderr=err, cwd=project.root
            )
        served = Served(process, f"http://127.0.0.1:{port}", log)
        started.append(served)
        wait_until_up(served)
        return served

    yield start
    for served in started:
        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(timeout=30) == 0, served.output()


def wait_until_up(served: Served) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert served.process.poll() is None, f"sync serve ended: {served.output()}"
        try:
            with urllib.request.urlopen(served.url + "/", timeout=5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"sync serve did not answer in {START_TIMEOUT_S} s: {served.output()}")


# --- what the pages show -------------------------------------------------------------------------


def figure(text: str, name: str) -> int:
    """The figure a page shows under `data-count="name"`."""
    found = re.search(rf'data-count="{name}">([\d,]+)<', text)
    assert found, f"no figure {name}"
    return int(found.group(1).replace(",", ""))


def run_ids(project: Project, sync: str) -> list[str]:
    return [run["id"] for run in project.json("history", sync)["runs"]]


def test_pages_show_syncs_runs_records_set_aside_and_a_plan(history: Project, serve: Any) -> None:
    project = history
    served = serve(project)
    index = served.ok("/")
    for name, object_, behavior, status in [
        ("people", "person", "upsert", "invalid"),
        ("devices", "device", "upsert", "rejected"),
        ("leads", "person", "mirror", "failed"),
    ]:
        row = re.search(rf'<tr data-sync="{name}">(.*?)</tr>', index, re.S)
        assert row, name
        cells = row.group(1)
        for shown in (object_, behavior, "test", f'status s-{status}">{status}<'):
            assert shown in cells, (name, shown)
    assert "<code>0 9 * * MON</code>" in index and "next " in index

    people = served.ok("/syncs/people")
    assert "<svg" in people and people.count('<rect class="bar s-') == 2
    assert "Customers, every Monday" in people
    for run in project.json("history", "people")["runs"]:
        assert f'data-run="{run["id"]}"' in people

    reason = project.json("errors", "people")["errors"][0]["reason"]
    assert reason in html.unescape(people)  # the latest finished run's invalid record


def test_a_runs_page_shows_its_counts_requests_and_records_set_aside(
    history: Project, serve: Any
) -> None:
    project = history
    served = serve(project)
    for sync in ("people", "devices", "leads"):
        run = project.json("history", sync)["runs"][0]
        page = served.ok(f"/runs/{run['id']}")
        for name in ("planned", "sent", "rejected", "invalid", "skipped"):
            assert figure(page, name) == run[name], (sync, name)
        for name in ("requests", "retries", "throttled"):
            assert figure(page, name) == run[name], (sync, name)
        for issue in project.json("errors", sync)["errors"]:
            assert issue["reason"] in html.unescape(page), (sync, issue)
            assert f'data-kind="{issue["kind"]}"' in page
    devices = served.ok(f"/runs/{run_ids(project, 'devices')[0]}")
    assert figure(devices, "rejected") == 1 and "windows" in devices
    leads = served.ok(f"/runs/{run_ids(project, 'leads')[0]}")
    assert 'class="error"' in leads  # the failed run's message


def test_the_plan_is_computed_as_sync_plan_computes_it(history: Project, serve: Any) -> None:
    project = history
    served = serve(project)
    before = len(track_requests(project.emulator))
    page = served.ok("/syncs/people/plan")
    counts = project.json("plan", "people")["syncs"][0]["counts"]
    assert counts == {
        "add": 2,
        "update": 1,
        "remove": 0,
        "unchanged": 2,
        "invalid": 1,
        "skipped": 0,
    }
    assert {name: figure(page, name) for name in counts} == counts
    assert '<tr data-op="update">' in page and "20" in page  # u2's score: 2 → 20
    assert len(track_requests(project.emulator)) == before  # nothing was sent
    runs = len(project.json("history", "people")["runs"])
    served.ok("/syncs/people/plan")
    assert len(project.json("history", "people")["runs"]) == runs  # a plan is not a run
    failed = served.ok("/syncs/leads/plan")
    assert 'class="error"' in failed and "crm" in failed


def test_no_page_shows_a_secret_or_loads_anything_from_elsewhere(
    history: Project, serve: Any
) -> None:
    project = history
    served = serve(project)
    paths = ["/", "/syncs/people/plan", "/syncs/leads/plan", "/runs/none", "/syncs/none"]
    for sync in ("people", "devices", "leads"):
        paths.append(f"/syncs/{sync}")
        paths += [f"/runs/{run}" for run in run_ids(project, sync)]
    pages = {path: served.get(path) for path in paths}
    assert pages["/syncs/leads"].text.count("etl:***@127.0.0.1:9/crm") == 1  # the URL, hidden
    for path, page in pages.items():
        assert page.status == (404 if path.endswith("/none") else 200), path
        for secret in secrets(project):
            assert secret not in page.text, (path, secret)
        linked = re.findall(r'(?:src|href|action)="([^"]*)"', page.text)
        assert all(link.startswith(("/", "data:")) for link in linked), (path, linked)
        assert "<script" not in page.text and "@import" not in page.text
        assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    for secret in secrets(project):
        assert secret not in served.output()


def test_only_get_is_served(duck_project: Project, serve: Any) -> None:
    project = duck_project
    people_table(project, ROWS[:2])
    project.write_sync("people", PEOPLE_SYNC.format(behavior="upsert"))
    project.run_json("people")
    served = serve(project)
    run = run_ids(project, "people")[0]
    for method, path in [
        ("POST", "/"),
        ("PUT", "/syncs/people"),
        ("POST", "/syncs/people/plan"),
        ("DELETE", f"/runs/{run}"),
        ("PATCH", "/nowhere"),
    ]:
        page = served.get(path, method)
        assert page.status == 405, (method, path)
        assert page.headers["Allow"] == "GET,HEAD"
    assert served.get("/syncs/people", "HEAD").status == 200
    assert served.get("/", host="attacker.example").status == 403  # DNS rebinding
    assert served.get("/", host="localhost:1234").status == 200
    assert run_ids(project, "people") == [run]

    port = served.url.rsplit(":", 1)[1]
    taken = subprocess.run(
        [
            sys.executable,
            "-m",
            "engine.cli",
            "--project",
            str(project.root),
            "serve",
            "--port",
            port,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert taken.returncode == 2, taken.stderr
    assert "cannot listen on 127.0.0.1" in taken.stderr and "--port" in taken.stderr


def test_sync_help_loads_neither_aiohttp_nor_jinja2() -> None:
    program = (
        "import sys\nfrom engine.cli import main\ntry:\n    main(['--help'])\n"
        "except SystemExit:\n    pass\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'aiohttp', 'jinja2'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=60
    )
    assert "serve" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"


# --- while a run holds the DuckDB state file -----------------------------------------------------

SLOW_ROWS = 600


@pytest.mark.slow
def test_pages_answer_while_a_run_holds_the_duckdb_state_file(
    duck_project: Project, serve: Any, tmp_path: Path
) -> None:
    project = duck_project
    people_table(project, [(f"u{i}", f"{i}@x.io", "free", i) for i in range(SLOW_ROWS)])
    project.write_project(
        track_api_key=TRACK_KEY, app_api_key=APP_KEY, max_batch_ops=10, concurrency=1
    )
    project.write_sync("people", PEOPLE_SYNC.format(behavior="upsert"))
    served = serve(project)
    emu_post(project.emulator, "faults", {"latency_ms": 200})  # 60 requests one at a time: 12 s
    command = [sys.executable, "-m", "engine.cli", "--project", str(project.root)]
    with (tmp_path / "run.out").open("wb") as out, (tmp_path / "run.err").open("wb") as err:
        running = subprocess.Popen(
            [*command, "run", "people", "--json"], stdout=out, stderr=err, cwd=project.root
        )
    try:
        deadline = time.monotonic() + 60
        while len(track_requests(project.emulator)) < 3:
            assert time.monotonic() < deadline and running.poll() is None, "the run never sent"
            time.sleep(0.05)
        index = served.ok("/")  # the run holds the file: the page asks for it
        sync = served.ok("/syncs/people")
        assert running.poll() is None, "the run ended before the pages were read: lengthen it"
        assert 'status s-running">running<' in index and 'http-equiv="refresh"' in index
        run = re.search(r'data-run="([0-9A-Z]+)"', sync)
        assert run and 'status s-running">running<' in sync
        going = served.ok(f"/runs/{run.group(1)}")
        assert "still going" in going
        while figure(going, "sent") == 0:  # its progress, as the run records it (every second)
            assert running.poll() is None and time.monotonic() < deadline, "no progress shown"
            time.sleep(0.2)
            going = served.ok(f"/runs/{run.group(1)}")
        assert figure(going, "planned") == SLOW_ROWS and figure(going, "sent") < SLOW_ROWS
    finally:
        emu_post(project.emulator, "faults", {"latency_ms": 0})
        code = running.wait(timeout=120)
    assert code == 0, (tmp_path / "run.err").read_text()
    done = served.ok(f"/runs/{run.group(1)}")
    assert figure(done, "sent") == SLOW_ROWS and 'status s-ok">ok<' in done
    # between pages the dashboard keeps no hold on the file: another process opens it at once
    duckdb.connect(str(project.root / ".sync" / "state.duckdb")).close()


# --- in a browser --------------------------------------------------------------------------------


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed (CI installs it: see .ci/run)")
    pytest.skip("chromium is not installed (apt-get install -y chromium)")


def browse(browser: str, url: str, profile: Path, *args: str) -> tuple[str, list[str]]:
    """The DOM headless Chromium rendered from `url`, and the console messages it logged (the
    pages run no script, so every console message is an error: a script error, a blocked load)."""
    flags = ["--headless=new", "--disable-gpu", "--no-sandbox", "--no-first-run"]
    logging = ["--enable-logging=stderr", "--v=0"]
    done = subprocess.run(
        [browser, *flags, f"--user-data-dir={profile}", *logging, *args, url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    console = [
        line for line in done.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line
    ]
    return done.stdout, console


@pytest.mark.parametrize("state_url", ["duckdb"], indirect=True)  # the store is not the subject
def test_pages_render_in_headless_chromium_without_console_errors(
    history: Project, serve: Any, tmp_path: Path
) -> None:
    browser = chromium()
    project = history
    broken = tmp_path / "broken.html"
    broken.write_text("<!doctype html><p>x</p><script>throw new Error('on purpose')</script>")
    _, console = browse(browser, broken.as_uri(), tmp_path / "profile", "--dump-dom")
    assert any("on purpose" in line for line in console), "the console check sees nothing"

    served = serve(project)
    people_run = run_ids(project, "people")[0]
    paths = ["/", "/syncs/people", "/syncs/devices", f"/runs/{people_run}", "/syncs/people/plan"]
    for path in paths:
        dom, console = browse(browser, served.url + path, tmp_path / "profile", "--dump-dom")
        assert console == [], (path, console)
        assert "</main>" in dom, path
        if path.startswith("/syncs/") and not path.endswith("/plan"):
            svg = re.search(r"<svg class=\"chart\".*?</svg>", dom, re.S)
            assert svg, path
            drawn = svg.group(0)
            runs = len(run_ids(project, path.rsplit("/", 1)[1]))
            assert drawn.count('<rect class="bar s-') == runs == drawn.count("<circle"), path
            assert ("<polyline" in drawn) == (runs > 1), path  # durations, joined
    shot = tmp_path / "people.png"
    args = ("--hide-scrollbars", "--window-size=1200,900", f"--screenshot={shot}")
    _, console = browse(browser, served.url + "/syncs/people", tmp_path / "profile", *args)
    assert console == [] and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- the chart -----------------------------------------------------------------------------------


def test_the_chart_scales_bars_to_records_sent_and_skips_unknown_durations() -> None:
    runs = [
        {"id": "a", "status": "ok", "sent": 1000, "duration_s": 4.0, "started": "one"},
        {"id": "b", "status": "interrupted", "sent": 500, "duration_s": None, "started": "two"},
        {"id": "c", "status": "ok", "sent": 0, "duration_s": 1.0, "started": "three"},
    ]
    chart = history_chart(runs)
    assert chart is not None and history_chart([]) is None
    assert (chart.sent_max, chart.seconds_max) == (1000, 5.0)
    full, half, empty = chart.bars
    assert full.height == pytest.approx(2 * half.height)
    assert full.y == chart.top and empty.height > 0  # a run that sent nothing still shows
    assert [p.title for p in chart.points] == ["one: 4.00 s", "three: 1.00 s"]
    assert [bar.x for bar in chart.bars] == sorted(bar.x for bar in chart.bars)
    assert [nice_ceiling(v) for v in (0, 1, 3, 7, 12, 0.3, 250)] == [1, 1, 5, 10, 20, 0.5, 250]


def test_the_wheel_carries_every_template() -> None:
    repo = Path(__file__).resolve().parents[1]
    config = tomllib.loads((repo / "pyproject.toml").read_text())
    shipped = config["tool"]["setuptools"]["package-data"]["engine"]
    found = sorted((repo / "engine" / "templates").iterdir())
    assert found
    for template in found:
        relative = template.relative_to(repo / "engine")
        assert any(relative.match(pattern) for pattern in shipped), relative
