"""Issue 9's engine figures: N people from a DuckDB warehouse (DuckDB state) to a receiver, the
first run, an unchanged rerun and a 1%-changed rerun, each beside its floor measured in the same run.

The engine runs as its own process (`sync --project DIR run people --json`, this checkout's code:
PYTHONPATH names it), so its peak RSS is its own (os.wait4). It sends to a receiver, another
process (receivers.py): by default the counting sink (`--sink counting`, sink.py), which costs the
engine next to nothing; `--sink emulator` sends to the emulator instead, which checks every
operation but competes with the engine for the CPU. Every DuckDB step of the benchmark (building
the warehouse, the floors, the change) runs in a fresh process of its own, so the benchmark's
memory stays small at 10M rows.

Each run (`--runs N`, a fresh state store each time):

1. first run. Floor: requests / rate_limit (ceil(rows / 1000) requests) + the time DuckDB takes to
   write the same rows as JSON (`COPY (SELECT * FROM people) TO 'people.json'`, a fresh process).
   Target: wall <= 1.5 x floor + 1 s, and at most rate_limit request starts in any sliding second
   (from the receiver's clock).
2. unchanged rerun. Floor: the raw DuckDB diff (md5 of each source row cast to text against a
   snapshot table of (key, md5) of the same data, counting keys that differ or are missing).
   Target: <= 1.5 x floor + 0.5 s. It must send nothing.
3. 1%-changed rerun: ~1% of the rows get new `plan` and `score` values, then the rerun. Floor: the
   raw diff of the changed data against the same snapshot. Target: <= 2 x floor + 1 s. It must
   send exactly the changed rows.

Peak RSS of every engine run: target <= 1 GB (issue 9 asks it at 10M). With several sizes
(`--rows 1000000 10000000`), each larger size's medians are compared with the smallest size's
scaled by the rows: target within 1.2x.

Printed: the load before and after, each run's figures, then per size the min and median of each
figure, its target (from the median floor) and median / target. Exits 1 if something went wrong
(operations missing or extra, a failed run, a receiver reporting errors, more than rate_limit
starts in a second); a missed time target alone does not change the exit code.

    PYTHONPATH=$PWD .venv/bin/python tests/benchmarks/engine_people.py [--rows 1000000 ...] [--runs 1]
        [--sink counting|emulator] [--rate-limit 150] [--keep DIR]
        [--profile none|py-spy|cprofile] [--profile-out PATH]

Not collected by pytest (the file name does not start with test_).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import receivers
from receivers import APP_KEY, SITE_ID, TRACK_KEY, Receiver

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
ENGINE_ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p),
}
MAX_BATCH_OPS = 1000
TARGET_RSS_BYTES = 1_000_000_000
TARGET_SCALING = 1.2
# figure: (factor, seconds, its floor, what the floor is): the target is factor x floor + seconds
TARGETS = {
    "first run": (1.5, 1.0, "first run floor", "requests / rate_limit + JSON write"),
    "unchanged rerun": (1.5, 0.5, "unchanged floor", "raw DuckDB diff"),
    "1% changed rerun": (2.0, 1.0, "changed floor", "raw DuckDB diff, changed data"),
}


# --- DuckDB, each step in a fresh process --------------------------------------------------------


def in_child(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` in a fresh process: its DuckDB starts afresh, and its memory goes with it."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def _connect(path: Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    conn = duckdb.connect(str(path), read_only)
    conn.execute("SET enable_progress_bar = false")
    return conn


def make_warehouse(path: Path, rows: int) -> float:
    started = time.perf_counter()
    width = max(7, len(str(rows)))  # ids stay distinct (lpad cuts what is longer)
    with _connect(path) as conn:
        conn.execute(
            f"""
            CREATE OR REPLACE TABLE people AS
            SELECT
                'u' || lpad(CAST(i AS VARCHAR), {width}, '0') AS id,
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


def json_floor(root: Path) -> tuple[float, int]:
    """Seconds DuckDB takes to write the people as JSON (a fresh connection), and the bytes."""
    out = root / "people.json"
    started = time.perf_counter()
    with _connect(root / "warehouse.duckdb", read_only=True) as conn:
        conn.execute(f"COPY (SELECT * FROM people) TO '{out}'")
    elapsed = time.perf_counter() - started
    size = out.stat().st_size
    out.unlink()
    return elapsed, size


def prepare_raw_diff(root: Path) -> Path:
    """A snapshot database holding (key, md5 of the row as text) of a copy of the source."""
    path = root / "raw_snapshot.duckdb"
    path.unlink(missing_ok=True)
    with _connect(path) as conn:
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
    """Time one DuckDB connection hashing the source and counting keys that differ or are missing."""
    started = time.perf_counter()
    with _connect(snapshot, read_only=True) as conn:
        conn.execute(f"ATTACH '{root / 'warehouse.duckdb'}' AS wh (READ_ONLY)")
        (changed,) = conn.execute(
            """
            WITH src AS (SELECT p.id AS key, md5(CAST(p AS VARCHAR)) AS fp FROM wh.people AS p)
            SELECT count(*) FROM src FULL OUTER JOIN snap USING (key)
            WHERE src.fp IS DISTINCT FROM snap.fp
            """
        ).fetchone() or (0,)
    return time.perf_counter() - started, int(changed)


def change_rows(path: Path, round_: int) -> int:
    """New `plan` and `score` values for ~1% of the people (another 1% each round); how many."""
    with _connect(path) as conn:
        (changed,) = conn.execute(
            f"""
            UPDATE people SET plan = 'changed{round_}', score = score + 1000 * {round_}
            WHERE hash(id || '{round_}') % 100 = 0
            """
        ).fetchone() or (0,)
    return int(changed)


# --- the engine ----------------------------------------------------------------------------------


def write_project(root: Path, url: str, rate_limit: int) -> None:
    project = {
        "state": "duckdb:///.sync/state.duckdb",
        "sources": {"warehouse": {"url": "duckdb:///warehouse.duckdb"}},
        "workspaces": {
            "bench": {
                "site_id": SITE_ID,
                "track_api_key": TRACK_KEY,
                "app_api_key": APP_KEY,
                "track_url": url,
                "app_url": url,
                "rate_limit": rate_limit,
                "max_batch_ops": MAX_BATCH_OPS,
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
    """`sync run people --json` as a child process: wall time, peak RSS, CPU, its JSON document.

    os.wait4 gives the engine's own rusage (RUSAGE_CHILDREN would mix in other children).
    """
    command = [*(wrap or []), str(BIN / "sync"), "--project", str(root), "run", "people", "--json"]
    with tempfile.TemporaryFile() as errors:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, cwd=REPO, env=ENGINE_ENV, stdout=subprocess.PIPE, stderr=errors
        )
        # read stdout to its end, then reap the child ourselves so that its rusage is its own
        stdout = process.stdout.read()  # type: ignore[union-attr]
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        errors.seek(0)
        stderr = errors.read()
    process.returncode = os.waitstatus_to_exitcode(status)
    try:
        document = json.loads(stdout)
    except ValueError:
        document = {"exit_code": process.returncode, "syncs": []}
    if process.returncode != 0 or not document.get("syncs"):
        sys.stderr.write(stderr.decode(errors="replace")[-4000:])
    return {
        "wall_s": wall,
        "rss": usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024),
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "exit_code": process.returncode,
        "sync": (document.get("syncs") or [{}])[0],
    }


def engine_step(
    root: Path, receiver: Receiver, label: str, expected_ops: int
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """One engine run against a freshly reset receiver: the run, what arrived, what went wrong."""
    receiver.reset()
    run = run_engine(root)
    got = receiver.stats()
    sync = run["sync"]
    sent = (sync.get("counts") or {}).get("sent")
    failures = [f"{label}: {problem}" for problem in got["problems"]]
    if run["exit_code"] != 0:
        failures.append(f"{label} exited {run['exit_code']}: {sync.get('message')}")
    if got["ops"] != expected_ops or sent != expected_ops:
        failures.append(
            f"{label}: the engine sent {sent} operations, the receiver counted {got['ops']:,}; "
            f"expected {expected_ops:,}"
        )
    return run, got, failures


# --- one run -------------------------------------------------------------------------------------


def measure(
    root: Path, receiver: Receiver, rows: int, rate_limit: int, round_: int
) -> tuple[dict[str, float], list[str]]:
    """A first run, an unchanged rerun and a 1%-changed rerun, each after its floor."""
    shutil.rmtree(root / ".sync", ignore_errors=True)
    json_s, json_bytes = in_child(json_floor, root)
    requests = -(-rows // MAX_BATCH_OPS)
    figures: dict[str, float] = {
        "JSON write": json_s,
        "JSON bytes": json_bytes,
        "first run floor": requests / rate_limit + json_s,
    }
    run, got, failures = engine_step(root, receiver, "first run", rows)
    figures |= _engine_figures("first run", run, got)
    if got["peak_per_s"] > rate_limit:
        failures.append(f"{got['peak_per_s']} request starts in one second, over {rate_limit}")

    snapshot = in_child(prepare_raw_diff, root)
    figures["unchanged floor"], found = in_child(raw_diff, root, snapshot)
    if found:
        failures.append(f"the raw diff found {found} changes in unchanged data")
    run, got, more = engine_step(root, receiver, "unchanged rerun", 0)
    figures |= _engine_figures("unchanged rerun", run, got)

    changed = in_child(change_rows, root / "warehouse.duckdb", round_)
    figures["changed rows"] = changed
    figures["changed floor"], found = in_child(raw_diff, root, snapshot)
    if found != changed:
        failures.append(f"the raw diff found {found} of {changed} changed rows")
    run, got, most = engine_step(root, receiver, "1% changed rerun", changed)
    figures |= _engine_figures("1% changed rerun", run, got)
    return figures, failures + more + most


def _engine_figures(label: str, run: dict[str, Any], got: dict[str, Any]) -> dict[str, float]:
    figures = {
        label: run["wall_s"],
        f"{label}: peak RSS": run["rss"],
        f"{label}: engine CPU": run["cpu_s"],
        f"{label}: requests": got["requests"],
        f"{label}: peak starts/s": got["peak_per_s"],
    }
    if got["cpu_s"] is not None:
        figures[f"{label}: sink CPU"] = got["cpu_s"]
    return figures


def describe_run(f: dict[str, float]) -> str:
    """One line: each wall beside its floor, the first run's requests and peak, peak RSS."""
    return (
        f"first {f['first run']:.2f} s (floor {f['first run floor']:.2f}, JSON "
        f"{f['JSON write']:.2f}; {f['first run: requests']:,.0f} requests, peak "
        f"{f['first run: peak starts/s']:.0f}/s, {_mb(f['first run: peak RSS'])}); unchanged "
        f"{f['unchanged rerun']:.2f} s (floor {f['unchanged floor']:.2f}, "
        f"{_mb(f['unchanged rerun: peak RSS'])}); {f['changed rows']:,.0f} changed "
        f"{f['1% changed rerun']:.2f} s (floor {f['changed floor']:.2f}, "
        f"{_mb(f['1% changed rerun: peak RSS'])})"
    )


# --- the report ----------------------------------------------------------------------------------


def _mb(n: float) -> str:
    return f"{n / 1e6:,.0f} MB"


def _s(n: float) -> str:
    return f"{n:.2f} s"


def _count(n: float) -> str:
    return f"{n:,.0f}"


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip() for r in rows
    )


def _row(
    label: str,
    values: list[float],
    shown: Callable[[float], str],
    target: str = "",
    ratio: float | None = None,
) -> tuple[str, ...]:
    """label, min, median, target, ratio (measured / target, and whether it is met)."""
    verdict = "" if ratio is None else f"{ratio:.2f} {'met' if ratio <= 1 else 'MISSED'}"
    return (label, shown(min(values)), shown(statistics.median(values)), target, verdict)


def report(rows: int, runs: list[dict[str, float]], rate_limit: int) -> None:
    """Min and median of each figure; each wall against its target from the median floor."""

    def col(name: str) -> list[float]:
        return [run[name] for run in runs]

    table: list[tuple[str, ...]] = [("figure", "min", "median", "target", "median / target")]
    for figure in TARGETS:
        table += _timed_rows(figure, col)
        if figure == "first run":
            table += _first_run_rows(rows, col, rate_limit)
        table.append(_row("  engine CPU (user + sys)", col(f"{figure}: engine CPU"), _s))
        if f"{figure}: sink CPU" in runs[0]:
            table.append(_row("  sink CPU", col(f"{figure}: sink CPU"), _s))
        rss = col(f"{figure}: peak RSS")
        shown = f"<= {_mb(TARGET_RSS_BYTES)} (max {_mb(max(rss))})"
        table.append(_row("  engine peak RSS", rss, _mb, shown, max(rss) / TARGET_RSS_BYTES))
    print(f"\n{rows:,} people, {len(runs)} run(s); ratios: median / target (peaks: max / target)")
    print(_table(table))


def _timed_rows(figure: str, col: Callable[[str], list[float]]) -> list[tuple[str, ...]]:
    """The wall of `figure` against factor x its floor + seconds, and the floor."""
    factor, plus, floor, what = TARGETS[figure]
    target = factor * statistics.median(col(floor)) + plus
    shown = f"<= {target:.2f} s ({factor:g} x floor + {plus:g} s)"
    label = figure
    if figure == "1% changed rerun":
        label += f" ({_count(statistics.median(col('changed rows')))} rows)"
    ratio = statistics.median(col(figure)) / target
    return [_row(label, col(figure), _s, shown, ratio), _row(f"  floor: {what}", col(floor), _s)]


def _first_run_rows(
    rows: int, col: Callable[[str], list[float]], rate_limit: int
) -> list[tuple[str, ...]]:
    requests = -(-rows // MAX_BATCH_OPS)
    json_mb = _mb(statistics.median(col("JSON bytes")))
    peaks = col("first run: peak starts/s")
    return [
        _row("    requests / rate_limit", [requests / rate_limit], _s, f"({requests:,} requests)"),
        _row("    JSON write (DuckDB COPY)", col("JSON write"), _s, f"({json_mb})"),
        _row("  requests received", col("first run: requests"), _count),
        _row("  peak request starts/s", peaks, _count, f"<= {rate_limit}", max(peaks) / rate_limit),
    ]


def report_scaling(results: dict[int, list[dict[str, float]]]) -> None:
    """Each larger size's median walls against the smallest size's, scaled by the rows."""
    base = min(results)
    for rows in sorted(results)[1:]:
        scale = rows / base
        print(
            f"\n{rows:,} people against {scale:g} x the {base:,} figures (target <= {TARGET_SCALING}x):"
        )
        for figure in TARGETS:
            big = statistics.median(run[figure] for run in results[rows])
            small = statistics.median(run[figure] for run in results[base])
            ratio = big / (scale * small)
            verdict = "met" if ratio <= TARGET_SCALING else "MISSED"
            print(
                f"  {figure}: {big:.2f} s against {scale:g} x {small:.2f} s: {ratio:.2f}x {verdict}"
            )


# --- main ----------------------------------------------------------------------------------------


def _revision() -> str:
    done = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True
    )
    return done.stdout.strip() or "unknown revision"


def _engine_location() -> str:
    """Where the engine's process imports `engine` from (PYTHONPATH must name this checkout)."""
    done = subprocess.run(
        [sys.executable, "-c", "import engine; print(engine.__file__)"],
        cwd="/",
        env=ENGINE_ENV,
        capture_output=True,
        text=True,
    )
    return str(Path(done.stdout.strip()).parent)


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def profile_run(root: Path, receiver: Receiver, how: str, out: Path) -> None:
    """One more first run (fresh state) under py-spy or cProfile."""
    shutil.rmtree(root / ".sync", ignore_errors=True)
    receiver.reset()
    if how == "py-spy":
        wrap = [str(BIN / "py-spy"), "record", "--threads", "--subprocesses"]
        wrap += ["--format", "speedscope", "--rate", "200", "-o", str(out), "--"]
        result = run_engine(root, wrap)
    else:
        command = [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "engine.cli"]
        command += ["--project", str(root), "run", "people", "--json"]
        started = time.perf_counter()
        done = subprocess.run(command, cwd=REPO, env=ENGINE_ENV, capture_output=True)
        result = {"wall_s": time.perf_counter() - started, "exit_code": done.returncode}
    print(
        f"\nprofile ({how}{', main thread only' if how == 'cprofile' else ''}): {out}; "
        f"wall {result['wall_s']:.1f} s, exit {result['exit_code']}"
    )


def measure_sizes(
    root: Path, receiver: Receiver, sizes: list[int], runs: int, rate_limit: int
) -> tuple[dict[int, list[dict[str, float]]], list[str]]:
    """For each size: build its warehouse, then `runs` runs (each changes another 1%)."""
    results: dict[int, list[dict[str, float]]] = {}
    failures: list[str] = []
    for rows in sizes:
        built = in_child(make_warehouse, root / "warehouse.duckdb", rows)
        print(f"warehouse: {rows:,} people in {built:.1f} s", flush=True)
        results[rows] = []
        for run in range(1, runs + 1):
            figures, problems = measure(root, receiver, rows, rate_limit, run)
            print(f"  run {run}: {describe_run(figures)}", flush=True)
            results[rows].append(figures)
            failures += problems
    return results, failures


def byte_compile() -> None:
    """Compile the checkout's modules to bytecode, as pip does when it installs a package: an
    editable checkout under PYTHONDONTWRITEBYTECODE (this machine sets it) otherwise compiles
    the engine's sources again in every run it starts (about 0.1 s of each)."""
    packages = [str(REPO / name) for name in ("engine", "connectors")]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *packages], check=True)
    print("the engine's modules are byte-compiled, as an installed package's are")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--sink", choices=["counting", "emulator"], default="counting")
    parser.add_argument("--rate-limit", type=int, default=150)
    parser.add_argument("--keep", type=Path, default=None, help="project directory to keep")
    parser.add_argument("--profile", choices=["none", "py-spy", "cprofile"], default="none")
    parser.add_argument("--profile-out", type=Path, default=None)
    args = parser.parse_args()

    root = args.keep or Path(tempfile.mkdtemp(prefix="cio-sync-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"load before (1, 5, 15 min): {_load()}; {os.cpu_count()} cores")
    print(f"engine at {_revision()} ({_engine_location()}); receiver: {args.sink}; {root}")
    byte_compile()
    receiver = receivers.start(args.sink)
    try:
        write_project(root, receiver.url, args.rate_limit)
        results, failures = measure_sizes(root, receiver, args.rows, args.runs, args.rate_limit)
        if args.profile != "none":
            suffix = ".speedscope.json" if args.profile == "py-spy" else ".prof"
            out = args.profile_out or Path(tempfile.gettempdir()) / f"cio-sync-people{suffix}"
            profile_run(root, receiver, args.profile, out)
    finally:
        receiver.stop()
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    for rows, runs in results.items():
        report(rows, runs, args.rate_limit)
    report_scaling(results)
    print(f"\nload after (1, 5, 15 min): {_load()}")
    for failure in failures:
        print(f"FAILURE: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
