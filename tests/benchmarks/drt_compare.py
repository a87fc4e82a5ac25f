"""cio-sync beside drt on the same data: the first run (issue 9), then incremental reruns.

N people (default 1,000,000) in a DuckDB warehouse `people(id, email, plan, updated_at)` (built
by `teams.make_warehouse`) go through two tools, each run timed as a whole process:

- cio-sync: `sync run full` for a first run (a fresh state store each time), `sync run
  incremental` (`incremental: {cursor: updated_at, lookback: 1m}`) for the reruns; the project
  `teams.write_project` writes (rate_limit 150);
- drt (drt-core, its own virtualenv, `--drt`) in its best configuration: its generic `rest_api`
  destination in `body_mode: batch` to the Track v2 batch endpoint (`POST /api/v2/batch`, Basic
  auth), 1000 records a request, its rate limiter off (`requests_per_second: 0`); `mode: full`
  for the first run, `mode: incremental` with `cursor_field: updated_at` for the reruns (no
  `watermark.lag`: drt keeps no per-row state, so a lag window would re-send every row in it).
  drt has no Customer.io destination.

1. First run (alone: `--only initial`): for --runs rounds, each tool sends all N rows to the counting
   sink (sink.py, its own process, so the receiver costs the tools next to nothing), alternately
   (the tool that goes first alternates by round). Each run must deliver N operations without
   errors. Printed: each round's times, CPU times (user + sys, the tool's processes), requests
   and peak request starts in a second; the min and median of each tool's time, and drt /
   cio-sync of the medians as "cio-sync is N x faster" against the target (>= 5x).
2. Incremental reruns (alone: `--only incremental`): both tools make their first run to the emulator (in
   memory, its own process), then for --runs rounds 1% of the rows change
   (`teams.change_one_percent`) and each tool's incremental run is timed, alternately. The rounds'
   changes are 1 s apart, so cio-sync's 1-minute lookback re-reads the earlier rounds' rows (its
   `rows_read` grows by ~1% a round) and skips them by its snapshot; drt reads only the rows past
   its watermark. The emulator's request log is read before and after each run, so each run's
   requests and operations are its own; every run must deliver exactly the changed rows, without
   errors. Printed: the min and median of each, and cio-sync / drt of the medians against the
   target (cio-sync within 1.5x of drt's).

Also printed: the load before and after. Exits 1 if a run failed or delivered other than it should;
a missed target alone does not change the exit code.

    PYTHONPATH=$PWD .venv/bin/python tests/benchmarks/drt_compare.py [--rows 1000000] [--runs 3]
        [--only initial|incremental] [--drt /tmp/drtvenv/bin/drt] [--rate-limit 150]

`--rate-limit` sets cio-sync's `rate_limit` for the first runs (default 150, what Customer.io
takes; at 150 cio-sync's 1000 requests cannot start in less than 6.67 s, so the ratio to drt's
unpaced run is bounded by drt's time / 6.67 s); a higher one lifts its pacing as drt's is off.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import teams
from engine_people import byte_compile
from receivers import SITE_ID, TRACK_KEY, CountingSink, Emulator

TARGET_RATIO = 1.5  # incremental: cio-sync's median within 1.5x of drt's
TARGET_SPEEDUP = 5.0  # first run: cio-sync at least 5x faster than drt
DRT_AUTH = {"CIO_SITE_ID": SITE_ID, "CIO_TRACK_KEY": TRACK_KEY}
BATCH_TEMPLATE = (
    '{"batch": [{% for row in rows %}{"type": "person", "action": "identify", '
    '"identifiers": {"id": {{ row.id | tojson }}}, "attributes": {"email": '
    '{{ row.email | tojson }}, "plan": {{ row.plan | tojson }}}}'
    "{% if not loop.last %},{% endif %}{% endfor %}]}"
)


# --- drt ---------------------------------------------------------------------------------------


def write_drt_project(root: Path, warehouse: Path, url: str, mode: str) -> None:
    """A drt project in `root`; its profile in `root/home/.drt` (drt reads ~/.drt/profiles.yml).

    `mode`: "full" (every row, every run) or "incremental" (rows past the `updated_at` mark).
    """
    (root / "syncs").mkdir(parents=True)
    (root / "home" / ".drt").mkdir(parents=True)
    (root / "drt_project.yml").write_text(
        json.dumps({"name": "drt_compare", "version": "0.1", "profile": "warehouse"})
    )
    (root / "home" / ".drt" / "profiles.yml").write_text(
        json.dumps({"warehouse": {"type": "duckdb", "database": str(warehouse)}})
    )
    no_pacing = {"requests_per_second": 0}
    sync = {
        "name": "people",
        "model": "SELECT id, email, plan, updated_at FROM people",
        "destination": {
            "type": "rest_api",
            "url": f"{url}/api/v2/batch",
            "method": "POST",
            "headers": {"Content-Type": "application/json"},
            "body_mode": "batch",
            "batch_template": BATCH_TEMPLATE,
            "max_records_per_request": 1000,
            "auth": {
                "type": "basic",
                "username_env": "CIO_SITE_ID",
                "password_env": "CIO_TRACK_KEY",
            },
            "rate_limit": no_pacing,
        },
        "sync": {
            "mode": mode,
            **({"cursor_field": "updated_at"} if mode == "incremental" else {}),
            "batch_size": 1000,
            "rate_limit": no_pacing,
            "on_error": "fail",
        },
    }
    (root / "syncs" / "people.yml").write_text(json.dumps(sync, indent=2))


def run_drt(drt: Path, root: Path) -> tuple[float, dict[str, Any]]:
    """`drt run -o json` as a whole process: wall time and its sync's result."""
    env = {**os.environ, **DRT_AUTH, "HOME": str(root / "home")}
    started = time.perf_counter()
    done = subprocess.run(
        [str(drt), "run", "-o", "json"], cwd=root, env=env, capture_output=True, check=False
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(
            f"drt run failed:\n{done.stdout.decode()[-2000:]}{done.stderr.decode()[-2000:]}"
        )
    result: dict[str, Any] = json.loads(done.stdout)["syncs"][0]
    return wall, result


# --- the first run, into the counting sink ------------------------------------------------------

Run = Callable[[], tuple[float, dict[str, Any]]]


def in_turn(runs: dict[str, Run], round_: int) -> list[str]:
    """The tools in the order of this round: the one that goes first alternates."""
    return list(runs) if round_ % 2 else list(reversed(runs))


def first_cio_sync(root: Path) -> tuple[float, dict[str, Any]]:
    """cio-sync's first run: `sync run full` with a fresh state store."""
    shutil.rmtree(root / ".sync", ignore_errors=True)
    return teams.run(root, "full")


def children_cpu_s() -> float:
    """CPU time (user + sys) of this process's finished children: a tool's run is the difference
    around it (the sink, still running, is not among them)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def initial(root: Path, rows: int, rounds: int, drt: Path, rate_limit: int) -> list[str]:
    """Each tool's first run of every row into the counting sink, `rounds` times; the problems.
    cio-sync paces its requests at `rate_limit` (drt does not pace at all)."""
    times: dict[str, list[float]] = {"cio-sync": [], "drt": []}
    problems: list[str] = []
    sink = CountingSink()
    try:
        teams.write_project(root, sink.url, rate_limit)
        write_drt_project(root / "drt-full", root / "warehouse.duckdb", sink.url, "full")
        runs: dict[str, Run] = {
            "cio-sync": lambda: first_cio_sync(root),
            "drt": lambda: run_drt(drt, root / "drt-full"),
        }
        for round_ in range(1, rounds + 1):
            line = []
            for tool in in_turn(runs, round_):
                sink.reset()
                cpu = children_cpu_s()
                wall, _ = runs[tool]()
                cpu = children_cpu_s() - cpu
                got = sink.stats()
                times[tool].append(wall)
                problems += [f"{tool} first run {round_}: {p}" for p in got["problems"]]
                if got["ops"] != rows:
                    problems.append(f"{tool} first run {round_}: {got['ops']:,} ops of {rows:,}")
                line.append(
                    f"{tool} {wall:.2f} s (CPU {cpu:.1f} s; {got['requests']:,} requests, "
                    f"{got['ops']:,} ops, peak {got['peak_per_s']} starts/s)"
                )
            print(f"first run, round {round_}: " + "; ".join(line), flush=True)
    finally:
        sink.stop()
    report_initial(times, rate_limit)
    return problems


def report_initial(times: dict[str, list[float]], rate_limit: int) -> None:
    print(
        f"cio-sync paces at rate_limit {rate_limit} (1,000 requests take at least "
        f"{1000 / rate_limit:.2f} s); drt does not pace"
    )
    for tool, walls in times.items():
        median = statistics.median(walls)
        print(f"{tool} first run: min {min(walls):.2f} s, median {median:.2f} s")
    speedup = statistics.median(times["drt"]) / statistics.median(times["cio-sync"])
    verdict = "met" if speedup >= TARGET_SPEEDUP else "NOT met"
    print(
        f"drt / cio-sync (medians): cio-sync is {speedup:.2f}x faster; "
        f"target: at least {TARGET_SPEEDUP:g}x: {verdict}\n"
    )


# --- incremental reruns, into the emulator -------------------------------------------------------


def delivered(emulator: Emulator, since: int) -> dict[str, Any]:
    """What the emulator received after its first `since` requests: requests, ops, errors."""
    log = emulator.log()[since:]
    return {
        "seen": since + len(log),
        "requests": len(log),
        "ops": sum(r.get("ops") or 0 for r in log),
        "bad": [r for r in log if r["status"] != 200 or r.get("errors")],
        "paths": sorted({r["path"] for r in log}),
    }


def measured(emulator: Emulator, since: int, run: Run) -> dict[str, Any]:
    wall, result = run()
    return {"wall": wall, "result": result, **delivered(emulator, since)}


def describe(tool: str, run: dict[str, Any]) -> str:
    result = run["result"]
    if tool == "drt":
        read = (
            f"extracted {result['rows_extracted']:,} rows past cursor "
            f"{result.get('cursor_value_used')}, synced {result['rows_synced']:,}"
        )
    else:
        read = f"read {result['rows_read']:,} rows"
    return (
        f"{tool} {run['wall']:.2f} s ({read}; sent {run['ops']:,} ops in {run['requests']} "
        f"requests to {', '.join(run['paths']) or '-'})"
    )


def check(tool: str, run: dict[str, Any], expected: int) -> list[str]:
    problems = []
    if run["ops"] != expected:
        problems.append(f"{tool} sent {run['ops']:,} ops, expected {expected:,}")
    if run["bad"]:
        problems.append(
            f"{tool}: {len(run['bad'])} requests failed or had errors: {run['bad'][:3]}"
        )
    return problems


def incremental(root: Path, rows: int, rounds: int, drt: Path) -> list[str]:
    """Both tools' first run, then `rounds` rounds of a 1% change and each tool's rerun."""
    times: dict[str, list[float]] = {"cio-sync": [], "drt": []}
    problems: list[str] = []
    warehouse = root / "warehouse.duckdb"
    emulator = Emulator()
    try:
        shutil.rmtree(root / ".sync", ignore_errors=True)
        teams.write_project(root, emulator.url)
        write_drt_project(root / "drt", warehouse, emulator.url, "incremental")
        runs: dict[str, Run] = {
            "cio-sync": lambda: teams.run(root, "incremental"),
            "drt": lambda: run_drt(drt, root / "drt"),
        }
        seen = 0
        for tool in runs:
            first = measured(emulator, seen, runs[tool])
            seen = first["seen"]
            problems += check(f"{tool} first run", first, rows)
            print(f"first run: {describe(tool, first)}")
        for round_ in range(1, rounds + 1):
            changed, _ = teams.change_one_percent(warehouse, round_)
            line = []
            for tool in in_turn(runs, round_):
                done = measured(emulator, seen, runs[tool])
                seen = done["seen"]
                problems += check(f"{tool} round {round_}", done, changed)
                times[tool].append(done["wall"])
                line.append(describe(tool, done))
            print(f"round {round_}: {changed:,} changed; " + "; ".join(line), flush=True)
    finally:
        emulator.stop()
    report(times)
    return problems


def report(times: dict[str, list[float]]) -> None:
    for tool, walls in times.items():
        print(
            f"{tool} incremental run: min {min(walls):.2f} s, median {statistics.median(walls):.2f} s"
        )
    ratio = statistics.median(times["cio-sync"]) / statistics.median(times["drt"])
    verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
    print(
        f"cio-sync / drt (medians): {ratio:.2f}x; target: cio-sync within {TARGET_RATIO}x "
        f"of drt's: {verdict}"
    )


def compare(rows: int, rounds: int, drt: Path, only: str | None, rate_limit: int) -> int:
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="cio-sync-drt-") as tmp:
        root = Path(tmp)
        teams.make_warehouse(root / "warehouse.duckdb", rows)
        if only != "incremental":
            problems += initial(root, rows, rounds, drt, rate_limit)
        if only != "initial":
            problems += incremental(root, rows, rounds, drt)
    for problem in problems:
        print(f"PROBLEM: {problem}")
    return 1 if problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=["initial", "incremental"], default=None)
    parser.add_argument("--drt", type=Path, default=Path("/tmp/drtvenv/bin/drt"))
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=teams.RATE,
        help="cio-sync's rate_limit for the first runs (drt does not pace)",
    )
    args = parser.parse_args()
    version = subprocess.run(
        [str(args.drt), "--version"], capture_output=True, text=True, check=True
    ).stdout.splitlines()[0]
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"load (1, 5, 15 min): {load}; cores {os.cpu_count()}; rows {args.rows:,}; rounds {args.runs}"
    )
    print(f"{version}: rest_api, body_mode batch, 1000 records a request, rate limiter off")
    byte_compile()
    code = compare(args.rows, args.runs, args.drt, args.only, args.rate_limit)
    print(f"load after (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return code


if __name__ == "__main__":
    sys.exit(main())
