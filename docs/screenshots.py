"""Screenshots of `sync serve` for the README, taken by headless Chromium.

Builds a demo project from the example in `syncs/` (its embedded emulator, no credentials), gives
it a history (deliveries of growing data, a row with no id, a device Customer.io refuses, a change
not yet sent), serves it on a free port and writes one PNG per page into `docs/`:

    python docs/screenshots.py        # needs `chromium` on PATH (apt-get install -y chromium)

Run from any directory; the demo project lives in a temporary directory removed at the end.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
WIDTH = 1200
PLANS = ("free", "pro", "team")
SCHEDULES = {"people": "0 * * * *", "devices": "*/15 * * * *", "events": "0 9 * * MON-FRI"}


def main() -> int:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("chromium is not on PATH: apt-get install -y chromium", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="cio-sync-") as tmp:
        root = Path(tmp) / "demo"
        shutil.copytree(REPO / "syncs", root / "syncs")
        rejected_run = make_history(root)
        shots = {
            "dashboard-syncs.png": ("/", 820),
            "dashboard-sync.png": ("/syncs/people", 1180),
            "dashboard-run.png": (f"/runs/{rejected_run}", 780),
            "dashboard-plan.png": ("/syncs/people/plan", 980),
        }
        serve(root, browser, Path(tmp) / "profile", shots)
    return 0


def make_history(root: Path) -> str:
    """Runs that leave something to see; returns the id of the run with a refused record."""
    for name, schedule in SCHEDULES.items():
        with (root / "syncs" / f"{name}.yml").open("a") as file:
            file.write(f'schedule: "{schedule}"\n')
    sync(root, "run", "--all")
    add_people(root, range(1009, 1021), plan_changes={"u1002": "pro", "u1003": "pro"})
    sync(root, "run", "people")
    add_people(root, range(1021, 1027), plan_changes={"u1005": "team"})
    append(root, "people.csv", ["", "nobody@example.com", "No", "Id", "free", "", "0", "true"])
    sync(root, "run", "people")
    append(root, "devices.csv", ["u1004", "tok-kj-surface", "windows", "", "5.2.0", "true"])
    sync(root, "run", "devices")
    sync(root, "run", "--all")
    add_people(root, range(1027, 1030), plan_changes={"u1001": "team", "u1010": "free"})
    runs = json.loads(sync(root, "history", "devices", "--json"))["runs"]
    return str(next(run["id"] for run in runs if run["status"] == "rejected"))


def add_people(root: Path, ids: range, plan_changes: dict[str, str]) -> None:
    path = root / "syncs" / "data" / "people.csv"
    with path.open(newline="") as file:
        rows = list(csv.reader(file))
    for row in rows[1:]:
        row[4] = plan_changes.get(row[0], row[4])
    for n in ids:
        created = f"2025-{(n % 12) + 1:02d}-{(n % 27) + 1:02d} 10:00:00"
        plan = PLANS[n % len(PLANS)]
        rows.append([f"u{n}", f"person{n}@example.com", f"Person{n}", "Demo", plan, created])
        rows[-1] += [f"{(n % 7) * 150}.00", "true"]
    with path.open("w", newline="") as file:
        csv.writer(file, lineterminator="\n").writerows(rows)


def append(root: Path, name: str, row: list[str]) -> None:
    with (root / "syncs" / "data" / name).open("a", newline="") as file:
        csv.writer(file, lineterminator="\n").writerow(row)


def sync(root: Path, *args: str) -> str:
    """`sync --project ROOT ARGS` with this checkout's engine; its stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "--project", str(root), *args],
        capture_output=True,
        text=True,
        cwd=root,
        env=_env(),
        check=False,
    )
    if done.returncode not in (0, 6):  # 6: records were refused, as the demo intends
        raise SystemExit(f"sync {' '.join(args)} exited {done.returncode}: {done.stderr}")
    return done.stdout


def _env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(REPO) + (os.pathsep + path if path else "")}


def serve(root: Path, browser: str, profile: Path, shots: dict[str, tuple[str, int]]) -> None:
    """`sync serve --port 0` while Chromium takes each shot."""
    command = [sys.executable, "-m", "engine.cli", "--project", str(root), "serve", "--port", "0"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=root, env=_env())
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split(" on ", 1)[1].split()[0].rstrip("/")
        for name, (path, height) in shots.items():
            shoot(browser, profile, url + path, DOCS / name, height)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def shoot(browser: str, profile: Path, url: str, target: Path, height: int) -> None:
    flags = [
        "--headless=new",
        "--disable-gpu",
        "--no-sandbox",
        "--no-first-run",
        "--hide-scrollbars",
    ]
    flags += [f"--user-data-dir={profile}", f"--window-size={WIDTH},{height}"]
    subprocess.run(
        [browser, *flags, f"--screenshot={target}", url],
        capture_output=True,
        check=True,
        timeout=120,
    )
    print(f"wrote {target.relative_to(REPO)} ({target.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    sys.exit(main())
