"""Start-up benchmark: how long `sync --help`, `--version`, `list` and `validate` take as whole
processes, beside the floor `python -c "import click, yaml"` measured in the same run, and beside
the imports the command cannot avoid (SQLAlchemy, the DuckDB driver, pydantic).

Runs each command N times (default 15) after one warm-up, A and floor alternately, on the
repository's example project (`syncs/`, state in a temporary copy so nothing is touched), and
prints min and median wall seconds and the median ratio to the floor.

Targets (issue): `--help` and `--version` within 3x of the floor, `list` and `validate` within 6x.

    .venv/bin/python tests/benchmarks/startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
FLOOR = [sys.executable, "-c", "import click, yaml"]
DEPENDENCIES = [sys.executable, "-c", "import click, yaml, pydantic, sqlalchemy, duckdb_engine"]
TARGETS = {"--help": 3.0, "--version": 3.0, "list": 6.0, "validate": 6.0}


def wall(command: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - started


def measure(command: list[str], cwd: Path, runs: int) -> tuple[list[float], list[float]]:
    """Wall times of `command` and of the floor, alternately (one warm-up each)."""
    wall(command, cwd), wall(FLOOR, cwd)
    ours, floor = [], []
    for _ in range(runs):
        ours.append(wall(command, cwd))
        floor.append(wall(FLOOR, cwd))
    return ours, floor


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cio-sync-startup-") as tmp:
        project = Path(tmp)
        shutil.copytree(REPO / "syncs", project / "syncs")
        sync = str(BIN / "sync")
        subprocess.run([sync, "run", "--all"], cwd=project, capture_output=True, check=True)
        print(f"load: {os.getloadavg()[0]:.2f} (1 min)   runs: {args.runs} each, after a warm-up")
        print(f"{'command':22} {'min s':>7} {'median s':>9} {'floor median s':>15} {'ratio':>6}  target")
        deps, deps_floor = measure(DEPENDENCIES, project, args.runs)
        rows = [("import the dependencies", deps, deps_floor, None)]
        for name, target in TARGETS.items():
            ours, floor = measure([sync, name], project, args.runs)
            rows.append((f"sync {name}", ours, floor, target))
        for name, ours, floor, target in rows:
            ratio = statistics.median(ours) / statistics.median(floor)
            verdict = "" if target is None else f"<= {target:.0f}x {'met' if ratio <= target else 'MISSED'}"
            print(
                f"{name:22} {min(ours):7.3f} {statistics.median(ours):9.3f} "
                f"{statistics.median(floor):15.3f} {ratio:6.1f}  {verdict}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
