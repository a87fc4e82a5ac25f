"""What the benchmarks send to, each its own process: the emulator or the counting sink.

Both answer a valid Track v2 request the same way (200 `{}`), and both say, for the requests
since the last `reset()`, the same things (`stats()`):

    {"requests": int, "ops": int, "peak_per_s": int, "problems": [str], "cpu_s": float | None}

`peak_per_s` is the most request starts in any sliding second; `problems` lists what was not a
clean delivery (errors, other statuses, unknown paths); `cpu_s` is the receiver's own CPU time
(the sink reports it, the emulator does not: None).

- `Emulator`: `python -m cio_emulator`, in memory. It validates every operation against the
  OpenAPI document and keeps the workspace, so it checks correctness; it costs the CPU that a
  sender on the same machine then lacks.
- `CountingSink`: `sink.py`. It counts and answers, and costs little CPU: the sender's figures
  are then its own.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Protocol

REPO = Path(__file__).resolve().parents[2]
SITE_ID, TRACK_KEY, APP_KEY = "emulator-site", "emulator-track-key", "emulator-app-key"


class Receiver(Protocol):
    url: str

    def reset(self) -> None: ...
    def stats(self) -> dict[str, Any]: ...
    def stop(self) -> None: ...


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get_json(url: str, method: str = "GET") -> Any:
    with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=120) as r:
        return json.loads(r.read())


def start_process(command: list[str], ready_url: str) -> subprocess.Popen[bytes]:
    """Start `command` and return once `ready_url` answers."""
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            get_json(ready_url)
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"{' '.join(command[:3])} did not start")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start(kind: str) -> Receiver:
    """A running receiver: "counting" (the sink) or "emulator"."""
    return CountingSink() if kind == "counting" else Emulator()


class CountingSink:
    """`sink.py` on a free port; operations counted by `"type":` (see its docstring)."""

    def __init__(self) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        command = [sys.executable, str(Path(__file__).with_name("sink.py")), "--port", str(port)]
        self.process = start_process(command, f"{self.url}/_sink/stats")

    def reset(self) -> None:
        get_json(f"{self.url}/_sink/reset", method="POST")

    def stats(self) -> dict[str, Any]:
        found = get_json(f"{self.url}/_sink/stats")
        problems = [
            f"{found[kind]} {kind.replace('_', ' ')} requests"
            for kind in ("unauthorized", "too_large", "other")
            if found[kind]
        ]
        return {**found, "problems": problems}

    def stop(self) -> None:
        stop(self.process)


class Emulator:
    """The emulator in memory on a free port; `reset()` marks the time its log is read from."""

    def __init__(self) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "cio_emulator", "--port", str(port), "--site-id"]
        command += [SITE_ID, "--track-api-key", TRACK_KEY, "--app-api-key", APP_KEY]
        self.process = start_process(command, f"{self.url}/_emulator/requests")
        self.since = time.time()

    def reset(self) -> None:
        self.since = time.time()

    def stats(self) -> dict[str, Any]:
        return request_stats(self.log(), self.since)

    def log(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = get_json(f"{self.url}/_emulator/requests")["requests"]
        return found

    def stop(self) -> None:
        stop(self.process)


def request_stats(log: list[dict[str, Any]], since: float) -> dict[str, Any]:
    """Track/App requests of the emulator's log from `since` on, in `Receiver.stats` form."""
    served = [r for r in log if r["path"].startswith(("/api/", "/v1/")) and r["at"] >= since]
    errors = sum(len(r.get("errors") or []) for r in served)
    statuses: dict[str, int] = {}
    for r in served:
        statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
    problems = [f"{errors} operation errors"] if errors else []
    if set(statuses) - {"200"}:
        problems.append(f"statuses {statuses}")
    return {
        "requests": len(served),
        "ops": sum(r.get("ops") or 0 for r in served),
        "peak_per_s": peak_per_second([r["at"] for r in served]),
        "problems": problems,
        "cpu_s": None,
    }


def peak_per_second(starts: list[float]) -> int:
    """The most starts in any sliding second [t - 1 s, t]."""
    ordered = sorted(starts)
    peak, low = 0, 0
    for high, at in enumerate(ordered):
        while ordered[low] <= at - 1.0:
            low += 1
        peak = max(peak, high - low + 1)
    return peak
