"""End-to-end benchmark: N people from a DuckDB warehouse to the emulator, then an unchanged rerun.

The engine runs as its own process (`sync --project DIR run people --json`), so its peak RSS is
measured alone (os.wait4); the emulator runs as another process, in memory. Printed:

- first run: wall time, records/s, requests, the peak request starts in any sliding second (from
  the emulator's request log, which also confirms every operation arrived without errors), the
  engine's peak RSS;
- unchanged rerun: its wall time beside the raw DuckDB diff of the same data, measured in the same
  run (one DuckDB connection: md5 over each source row cast to text, against a snapshot table of
  (key, md5) built from a copy of the data; count the keys that differ or are missing).

Targets (issue): the initial 1M in <= 30 s, the rerun within 3x the raw diff + 1 s, and a peak
RSS <= 1 GB.

    .venv/bin/python tests/benchmarks/engine_people.py [--rows 1000000] [--rate-limit 150]
        [--keep DIR] [--profile none|py-spy|cprofile] [--profile-out PATH]

Not collected by pytest (the file name does not start with test_). On a machine with few cores the
emulator and the engine compete for CPU; the figures then understate the engine alone.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import duckdb

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TARGET_FIRST_S = 30.0
TARGET_RSS_BYTES = 1_000_000_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_warehouse(path: Path, rows: int) -> float:
    started = time.perf_counter()
    with duckdb.connect(str(path)) as conn:
        conn.execute(
            f"""
            CREATE OR REPLACE TABLE people AS
            SELECT
                'u' || lpad(CAST(i AS VARCHAR), 7, '0') AS id,
                'user' || i || '@example.com' AS email,
                'First' || (i % 5000) AS first_name,
                ['free', 'starter', 'pro', 'enterprise'][1 + (i % 4)] AS plan,
                TIMESTAMPTZ '2020-01-01 00:00:00+00' + to_seconds(i * 37) AS created_at,
                CAST((i % 100000) / 100.0 AS DECIMAL(12, 2)) AS lifetime_value,
                i % 3 <> 0 AS is_active,
                CAST(i % 1000 AS INTEGER) AS score
            FROM range(1, {rows} + 1) AS t(i)
            """
        )
    return time.perf_counter() - started


# --- the emulator ------------------------------------------------------------------------------


def start_emulator(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cio_emulator",
            "--port",
            str(port),
            "--site-id",
            "emulator-site",
            "--track-api-key",
            "emulator-track-key",
            "--app-api-key",
            "emulator-app-key",
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            emulator_get(port, "requests")
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the emulator did not start")


def emulator_get(port: int, what: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_emulator/{what}", timeout=120) as r:
        return json.loads(r.read())


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def request_stats(log: list[dict[str, Any]], since: float) -> dict[str, Any]:
    """Track/App requests after `since`: count, ops, errors, statuses, peak starts in any second."""
    served = [r for r in log if r["path"].startswith(("/api/", "/v1/")) and r["at"] >= since]
    starts = sorted(r["at"] for r in served)
    peak, low = 0, 0
    for high, at in enumerate(starts):  # sliding window [at - 1 s, at]
        while starts[low] <= at - 1.0:
            low += 1
        peak = max(peak, high - low + 1)
    statuses: dict[str, int] = {}
    for r in served:
        statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
    return {
        "requests": len(served),
        "ops": sum(r.get("ops") or 0 for r in served),
        "op_errors": sum(len(r.get("errors") or []) for r in served),
        "statuses": statuses,
        "peak_per_s": peak,
        "span_s": (starts[-1] - starts[0]) if starts else 0.0,
    }


# --- the engine --------------------------------------------------------------------------------


def write_project(root: Path, port: int, rate_limit: int) -> None:
    url = f"http://127.0.0.1:{port}"
    project = {
        "state": "duckdb:///.sync/state.duckdb",
        "sources": {"warehouse": {"url": "duckdb:///warehouse.duckdb"}},
        "workspaces": {
            "bench": {
                "site_id": "emulator-site",
                "track_api_key": "emulator-track-key",
                "app_api_key": "emulator-app-key",
                "track_url": url,
                "app_url": url,
                "rate_limit": rate_limit,
                "max_batch_ops": 1000,
            }
        },
        "defaults": {"workspace": "bench", "source": "warehouse"},
    }
    syncs = root / "syncs"
    syncs.mkdir(parents=True, exist_ok=True)
    (syncs / "project.yml").write_text(json.dumps(project, indent=2))
    (syncs / "people.yml").write_text(
        "object: person\nbehavior: upsert\nidentifier: id\nkey: id\nquery: SELECT * FROM people\n"
    )


def run_engine(root: Path, wrap: list[str] | None = None) -> dict[str, Any]:
    """`sync run people --json` as a child process: wall time, peak RSS, its JSON document.

    os.wait4 gives the engine's own rusage (RUSAGE_CHILDREN would mix in the emulator).
    """
    command = [str(BIN / "sync"), "--project", str(root), "run", "people", "--json"]
    if wrap:
        command = [*wrap, *command]
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=errors)
        # read stdout to its end, then reap the child ourselves so that its rusage is its own
        stdout = process.stdout.read()  # type: ignore[union-attr]
        _, status, usage = os.wait4(process.pid, 0)
        errors.seek(0)
        stderr = errors.read()
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    rss = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    try:
        document = json.loads(stdout)
    except ValueError:
        document = {"exit_code": process.returncode, "syncs": []}
    if process.returncode != 0 or not document.get("syncs"):
        sys.stderr.write(stderr.decode(errors="replace")[-4000:])
    sync = (document.get("syncs") or [{}])[0]
    return {
        "wall_s": wall,
        "rss": rss,
        "exit_code": process.returncode,
        "sync": sync,
        "cpu_s": usage.ru_utime + usage.ru_stime,
    }


# --- the raw DuckDB diff -----------------------------------------------------------------------


def prepare_raw_diff(root: Path) -> Path:
    """A snapshot database holding (key, md5 of the row as text) of a copy of the source."""
    path = root / "raw_snapshot.duckdb"
    path.unlink(missing_ok=True)
    with duckdb.connect(str(path)) as conn:
        conn.execute(f"ATTACH '{root / 'warehouse.duckdb'}' AS wh (READ_ONLY)")
        conn.execute("CREATE TABLE people_copy AS SELECT * FROM wh.people")
        conn.execute("DETACH wh")
        conn.execute(
            "CREATE TABLE snap AS SELECT p.id AS key, md5(CAST(p AS VARCHAR)) AS fp "
            "FROM people_copy AS p"
        )
        conn.execute("DROP TABLE people_copy")
    return path


def raw_diff(root: Path, snapshot: Path) -> tuple[float, int]:
    """Time one DuckDB process hashing the source and counting keys that differ or are missing."""
    started = time.perf_counter()
    with duckdb.connect(str(snapshot), read_only=True) as conn:
        conn.execute(f"ATTACH '{root / 'warehouse.duckdb'}' AS wh (READ_ONLY)")
        (changed,) = conn.execute(
            """
            WITH src AS (SELECT p.id AS key, md5(CAST(p AS VARCHAR)) AS fp FROM wh.people AS p)
            SELECT count(*) FROM src FULL OUTER JOIN snap USING (key)
            WHERE src.fp IS DISTINCT FROM snap.fp
            """
        ).fetchone()
    return time.perf_counter() - started, int(changed)


# --- main --------------------------------------------------------------------------------------


def _revision() -> str:
    done = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True
    )
    return done.stdout.strip() or "unknown revision"


def _mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB"


def _table(rows: list[tuple[str, str, str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip() for r in rows
    )


def profile_run(root: Path, rate_limit: int, how: str, out: Path) -> None:
    """One more first run (fresh state, fresh emulator) under py-spy or cProfile."""
    shutil.rmtree(root / ".sync", ignore_errors=True)
    port = _free_port()
    emulator = start_emulator(port)
    try:
        write_project(root, port, rate_limit)
        if how == "py-spy":
            wrap = [
                str(BIN / "py-spy"),
                "record",
                "--threads",
                "--subprocesses",
                "--format",
                "speedscope",
                "--rate",
                "200",
                "-o",
                str(out),
                "--",
            ]
            result = run_engine(root, wrap)
        else:
            command = [
                sys.executable,
                "-m",
                "cProfile",
                "-o",
                str(out),
                "-m",
                "engine.cli",
                "--project",
                str(root),
                "run",
                "people",
                "--json",
            ]
            started = time.perf_counter()
            done = subprocess.run(command, cwd=REPO, capture_output=True)
            result = {"wall_s": time.perf_counter() - started, "exit_code": done.returncode}
        print(
            f"\nprofile ({how}{', main thread only' if how == 'cprofile' else ''}): {out}; "
            f"wall {result['wall_s']:.1f} s, exit {result['exit_code']}"
        )
    finally:
        stop(emulator)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rate-limit", type=int, default=150)
    parser.add_argument("--keep", type=Path, default=None, help="project directory to keep")
    parser.add_argument("--profile", choices=["none", "py-spy", "cprofile"], default="none")
    parser.add_argument("--profile-out", type=Path, default=None)
    args = parser.parse_args()

    root = args.keep or Path(tempfile.mkdtemp(prefix="cio-sync-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(root / ".sync", ignore_errors=True)
    generated = make_warehouse(root / "warehouse.duckdb", args.rows)
    print(
        f"warehouse: {args.rows:,} people in {generated:.1f} s ({root}); engine at {_revision()}",
        flush=True,
    )

    port = _free_port()
    emulator = start_emulator(port)
    failures: list[str] = []
    try:
        write_project(root, port, args.rate_limit)
        since = time.time()
        first = run_engine(root)
        stats = request_stats(emulator_get(port, "requests")["requests"], since)
        since = time.time()
        rerun = run_engine(root)
        rerun_stats = request_stats(emulator_get(port, "requests")["requests"], since)
    finally:
        stop(emulator)
    snapshot = prepare_raw_diff(root)
    raw_s, raw_changed = raw_diff(root, snapshot)

    counts = first["sync"].get("counts", {})
    if first["exit_code"] != 0:
        failures.append(f"first run exited {first['exit_code']}: {first['sync'].get('message')}")
    if stats["ops"] != args.rows or stats["op_errors"]:
        failures.append(f"emulator received {stats['ops']:,} ops with {stats['op_errors']} errors")
    if counts.get("sent") != args.rows:
        failures.append(f"first run sent {counts.get('sent')} of {args.rows}")
    if stats["peak_per_s"] > args.rate_limit:
        failures.append(f"peak {stats['peak_per_s']} requests/s over the {args.rate_limit} limit")
    rerun_counts = rerun["sync"].get("counts", {})
    if rerun["exit_code"] != 0 or rerun_counts.get("planned") or rerun_stats["requests"]:
        failures.append(
            f"rerun: exit {rerun['exit_code']}, planned {rerun_counts.get('planned')}, "
            f"{rerun_stats['requests']} requests"
        )
    if raw_changed:
        failures.append(f"raw diff found {raw_changed} changed keys on unchanged data")

    scale = args.rows / 1_000_000
    rerun_bound = 3 * raw_s + 1
    rows = [
        ("measure", "value", "target"),
        (
            "first run: wall",
            f"{first['wall_s']:.2f} s (engine {first['sync'].get('duration_s')} s)",
            f"<= {TARGET_FIRST_S * scale:.1f} s" + (" (scaled)" if scale != 1 else ""),
        ),
        ("first run: records/s", f"{args.rows / first['wall_s']:,.0f}", ""),
        (
            "first run: requests",
            f"{stats['requests']:,} (engine says "
            f"{first['sync'].get('requests')}, retries {first['sync'].get('retries')})",
            "",
        ),
        (
            "first run: peak req/s",
            f"{stats['peak_per_s']} in any sliding second",
            f"<= {args.rate_limit}",
        ),
        (
            "first run: ops received",
            f"{stats['ops']:,}, {stats['op_errors']} errors, statuses {stats['statuses']}",
            f"= {args.rows:,}",
        ),
        ("first run: engine CPU", f"{first['cpu_s']:.1f} s user+sys", ""),
        ("first run: peak RSS", _mb(first["rss"]), f"<= {_mb(TARGET_RSS_BYTES)}"),
        (
            "rerun: wall",
            f"{rerun['wall_s']:.2f} s (planned {rerun_counts.get('planned')}, "
            f"{rerun_stats['requests']} requests)",
            f"<= {rerun_bound:.2f} s",
        ),
        ("rerun: raw DuckDB diff", f"{raw_s:.2f} s ({raw_changed} changed)", ""),
        ("rerun: peak RSS", _mb(rerun["rss"]), f"<= {_mb(TARGET_RSS_BYTES)}"),
    ]
    print()
    print(_table(rows))
    verdicts = {
        "first run time": first["wall_s"] <= TARGET_FIRST_S * scale,
        "rerun time": rerun["wall_s"] <= rerun_bound,
        "peak RSS": max(first["rss"], rerun["rss"]) <= TARGET_RSS_BYTES,
    }
    shown = (f"{k} {'met' if ok else 'MISSED'}" for k, ok in verdicts.items())
    print("\ntargets: " + ", ".join(shown))
    for failure in failures:
        print(f"FAILURE: {failure}")

    if args.profile != "none":
        suffix = ".speedscope.json" if args.profile == "py-spy" else ".prof"
        out = args.profile_out or Path(tempfile.gettempdir()) / f"cio-sync-engine-people{suffix}"
        profile_run(root, args.rate_limit, args.profile, out)

    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
