"""cio-sync's incremental rerun beside drt's cursor (incremental) mode, on the same data.

N people (default 1,000,000) in a DuckDB warehouse `people(id, email, plan, updated_at)` (built
by `teams.make_warehouse`) go to one emulator (in memory, its own process) through two tools:

- cio-sync: `sync run incremental` (`incremental: {cursor: updated_at, lookback: 1m}`, the
  project `teams.write_project` writes);
- drt (drt-core, its own virtualenv, `--drt`): `drt run` of one sync with `mode: incremental`,
  `cursor_field: updated_at`, through its generic `rest_api` destination in `body_mode: batch`
  to the Track v2 batch endpoint (`POST /api/v2/batch`, Basic auth), 1000 records a request and
  its rate limiter off (`requests_per_second: 0`); drt has no Customer.io destination. No
  `watermark.lag`: drt keeps no per-row state, so a lag window would re-send every row in it.

The rounds' changes are 1 s apart, so cio-sync's 1-minute lookback re-reads the earlier rounds'
rows (its `rows_read` grows by ~1% a round) and skips them by its snapshot; drt reads only the
rows past its watermark.

Both tools make their first (full) run, then for --runs rounds 1% of the rows change
(`teams.change_one_percent`) and each tool's incremental run is timed as a whole process,
alternately (the tool that goes first alternates by round). The emulator's request log is read
before and after each run, so the requests and operations of each run are its own; every run must
deliver exactly the changed rows, without errors. Printed: the load, each round's times and what
each tool sent, the min and median of each, and cio-sync / drt of the medians against the target
(cio-sync within 1.5x of drt's). Exits 1 if a run failed or delivered other than the changed rows;
a missed target alone does not change the exit code.

    .venv/bin/python tests/benchmarks/drt_compare.py [--rows 1000000] [--runs 3]
        [--drt /tmp/drtvenv/bin/drt]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import teams
from engine_people import _free_port, emulator_get, start_emulator, stop

TARGET_RATIO = 1.5
DRT_AUTH = {"CIO_SITE_ID": "emulator-site", "CIO_TRACK_KEY": "emulator-track-key"}
BATCH_TEMPLATE = (
    '{"batch": [{% for row in rows %}{"type": "person", "action": "identify", '
    '"identifiers": {"id": {{ row.id | tojson }}}, "attributes": {"email": '
    '{{ row.email | tojson }}, "plan": {{ row.plan | tojson }}}}'
    "{% if not loop.last %},{% endif %}{% endfor %}]}"
)


# --- drt ---------------------------------------------------------------------------------------


def write_drt_project(root: Path, warehouse: Path, port: int) -> None:
    """A drt project in `root`; its profile in `root/home/.drt` (drt reads ~/.drt/profiles.yml)."""
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
            "url": f"http://127.0.0.1:{port}/api/v2/batch",
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
            "mode": "incremental",
            "cursor_field": "updated_at",
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


# --- both --------------------------------------------------------------------------------------


def delivered(port: int, since: int) -> dict[str, Any]:
    """What the emulator received after its first `since` requests: requests, ops, errors."""
    log = emulator_get(port, "requests")["requests"][since:]
    return {
        "seen": since + len(log),
        "requests": len(log),
        "ops": sum(r.get("ops") or 0 for r in log),
        "bad": [r for r in log if r["status"] != 200 or r.get("errors")],
        "paths": sorted({r["path"] for r in log}),
    }


def measured(
    port: int, since: int, run: Callable[[], tuple[float, dict[str, Any]]]
) -> dict[str, Any]:
    wall, result = run()
    return {"wall": wall, "result": result, **delivered(port, since)}


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


def compare(rows: int, rounds: int, drt: Path) -> int:
    times: dict[str, list[float]] = {"cio-sync": [], "drt": []}
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="cio-sync-drt-") as tmp:
        root = Path(tmp)
        warehouse = root / "warehouse.duckdb"
        port = _free_port()
        emulator = start_emulator(port)
        try:
            teams.make_warehouse(warehouse, rows)
            teams.write_project(root, port)
            write_drt_project(root / "drt", warehouse, port)
            runs = {
                "cio-sync": lambda: teams.run(root, "incremental"),
                "drt": lambda: run_drt(drt, root / "drt"),
            }
            seen = 0
            for tool in runs:
                first = measured(port, seen, runs[tool])
                seen = first["seen"]
                problems += check(f"{tool} first run", first, rows)
                print(f"first run: {describe(tool, first)}")
            for round_ in range(1, rounds + 1):
                changed, _ = teams.change_one_percent(warehouse, round_)
                order = list(runs) if round_ % 2 else list(reversed(runs))
                line = []
                for tool in order:
                    done = measured(port, seen, runs[tool])
                    seen = done["seen"]
                    problems += check(f"{tool} round {round_}", done, changed)
                    times[tool].append(done["wall"])
                    line.append(describe(tool, done))
                print(f"round {round_}: {changed:,} changed; " + "; ".join(line))
        finally:
            stop(emulator)
    report(times)
    for problem in problems:
        print(f"PROBLEM: {problem}")
    return 1 if problems else 0


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--drt", type=Path, default=Path("/tmp/drtvenv/bin/drt"))
    args = parser.parse_args()
    version = subprocess.run(
        [str(args.drt), "--version"], capture_output=True, text=True, check=True
    ).stdout.splitlines()[0]
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"load (1, 5, 15 min): {load}; cores {os.cpu_count()}; rows {args.rows:,}; rounds {args.runs}"
    )
    print(f"{version}: rest_api, body_mode batch, 1000 records a request, rate limiter off")
    code = compare(args.rows, args.runs, args.drt)
    print(f"load after (1, 5, 15 min): {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return code


if __name__ == "__main__":
    sys.exit(main())
