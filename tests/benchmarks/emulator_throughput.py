"""Throughput of the emulator's hot path: POST /api/v2/batch with ~1000 identify ops.

Runs the emulator in a subprocess pinned to one core (when the OS allows it) and posts
batches from this process (pinned to another core). Prints the operations absorbed per second
for two request shapes, each in the in-memory and the --db (DuckDB journal) modes:

- `mixed`: new and repeated people, five attributes each, 4 requests in flight;
- `engine`: the shape `engine_people.py` sends (every person new, the seven attributes of its
  warehouse, 224 bytes an operation, keys in the engine's order), 8 requests in flight.

    .venv/bin/python tests/benchmarks/emulator_throughput.py [--batches 200] [--ops 1000]
        [--case all|mixed|engine] [--memory-only]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson

REPO = Path(__file__).resolve().parents[2]
AUTH = {
    "Authorization": "Basic " + base64.b64encode(b"bench:key").decode(),
    "Content-Type": "application/json",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _mixed_bodies(batches: int, ops: int) -> list[bytes]:
    """Distinct batches of identify ops (new and repeated people, a few attributes each)."""
    return [
        orjson.dumps(
            {
                "batch": [
                    {
                        "type": "person",
                        "identifiers": {"id": f"user-{(b * ops + i) % 150_000}"},
                        "action": "identify",
                        "attributes": {
                            "email_opt_in": True,
                            "plan": "premium",
                            "seats": i,
                            "country": "FR",
                            "signup_source": "benchmark",
                        },
                    }
                    for i in range(ops)
                ]
            }
        )
        for b in range(batches)
    ]


def _engine_op(i: int) -> dict[str, Any]:
    return {
        "type": "person",
        "action": "identify",
        "identifiers": {"id": f"u{i:07d}"},
        "attributes": {
            "created_at": 1577836800 + i * 37,
            "email": f"user{i}@example.com",
            "first_name": f"First{i % 5000}",
            "is_active": i % 3 != 0,
            "lifetime_value": (i % 100_000) / 100,
            "plan": ("free", "starter", "pro", "enterprise")[i % 4],
            "score": i % 1000,
        },
    }


def _engine_bodies(batches: int, ops: int) -> list[bytes]:
    """Distinct batches of new people, as the engine's first run of engine_people.py sends."""
    return [
        orjson.dumps({"batch": [_engine_op(b * ops + i + 1) for i in range(ops)]})
        for b in range(batches)
    ]


def _start(db: Path | None, core: int | None) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    args = [
        sys.executable,
        "-m",
        "cio_emulator",
        "--port",
        str(port),
        "--site-id",
        "bench",
        "--track-api-key",
        "key",
    ]
    if db is not None:
        args += ["--db", str(db)]
    pin = (lambda: os.sched_setaffinity(0, {core})) if core is not None else None
    process = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, preexec_fn=pin)
    url = f"http://127.0.0.1:{port}"
    for _ in range(400):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.1):
                return process, url
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("the emulator did not start")


async def _post_all(url: str, bodies: list[bytes], in_flight: int) -> float:
    queue = list(reversed(bodies))
    connector = aiohttp.TCPConnector(limit=in_flight)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            while queue:
                body = queue.pop()
                async with session.post(f"{url}/api/v2/batch", data=body, headers=AUTH) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"status {response.status}")

        await session.post(f"{url}/api/v2/batch", data=bodies[0], headers=AUTH)  # warm-up
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        return time.perf_counter() - started


def measure(
    label: str, db: Path | None, bodies: list[bytes], ops: int, cores: list[int], in_flight: int
) -> None:
    """Start an emulator, post every body, print ops/s, stop it."""
    server_core = cores[0] if cores else None
    process, url = _start(db, server_core)
    try:
        elapsed = asyncio.run(_post_all(url, bodies, in_flight))
    finally:
        process.terminate()
        process.wait(timeout=60)
    total = len(bodies) * ops
    mb = sum(len(b) for b in bodies) / 1e6
    pinned = f"server pinned to core {server_core}" if server_core is not None else "unpinned"
    print(
        f"{label:17s} {total:>9,} ops in {elapsed:6.2f} s = {total / elapsed:>9,.0f} ops/s"
        f"  ({len(bodies) / elapsed:6.1f} req/s, {mb / elapsed:5.1f} MB/s; {pinned})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--ops", type=int, default=1000)
    parser.add_argument("--case", choices=("all", "mixed", "engine"), default="all")
    parser.add_argument("--memory-only", action="store_true", help="skip the --db runs")
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cores) > 1:
        os.sched_setaffinity(0, set(cores[1:]))
    print(f"{args.batches} batches of {args.ops} identify ops; {len(cores)} cores available")
    for case, make, in_flight in (("mixed", _mixed_bodies, 4), ("engine", _engine_bodies, 8)):
        if args.case not in ("all", case):
            continue
        bodies = make(args.batches, args.ops)
        print(f"{case}: {len(bodies[0]):,} bytes a request, {in_flight} in flight")
        measure(f"{case} in-memory", None, bodies, args.ops, cores, in_flight)
        if not args.memory_only:
            with tempfile.TemporaryDirectory() as tmp:
                db = Path(tmp) / "bench.duckdb"
                measure(f"{case} --db", db, bodies, args.ops, cores, in_flight)
    return 0


if __name__ == "__main__":
    sys.exit(main())
