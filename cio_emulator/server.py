"""Serving the app: on its own thread and event loop (for the engine and tests) or as a CLI."""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
from aiohttp import web

from cio_emulator.app import create_app
from cio_emulator.config import EmulatorConfig
from cio_emulator.persist import DatabaseError
from cio_emulator.schema import batch_validators, validators

_START_TIMEOUT_S = 30.0
_CLI_GC_THRESHOLDS = (100_000, 50, 100)


@dataclass
class EmulatorHandle:
    """A running emulator: `url` serves /api (Track), /v1 (App) and /_emulator."""

    url: str
    config: EmulatorConfig
    _loop: asyncio.AbstractEventLoop = field(repr=False)
    _runner: web.AppRunner = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    def stop(self) -> None:
        """Close the server (compacting and closing the DuckDB file) and join the thread."""
        if not self._thread.is_alive():
            return
        future = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop)
        future.result(timeout=_START_TIMEOUT_S)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=_START_TIMEOUT_S)


def start_in_thread(
    config: EmulatorConfig, host: str = "127.0.0.1", port: int = 0
) -> EmulatorHandle:
    """Run the emulator on a new thread with its own event loop; return once it listens.

    Port 0 picks a free port. Errors while starting (a port in use, a locked database) are
    raised here.
    """
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    outcome: dict[str, object] = {}

    def serve() -> None:
        asyncio.set_event_loop(loop)
        try:
            outcome["runner"], outcome["port"] = loop.run_until_complete(_start(config, host, port))
        except (OSError, RuntimeError, ValueError, duckdb.Error, DatabaseError) as exc:
            outcome["error"] = exc
            ready.set()
            loop.close()
            return
        ready.set()
        loop.run_forever()
        loop.close()

    thread = threading.Thread(target=serve, name="cio-emulator", daemon=True)
    thread.start()
    ready.wait(_START_TIMEOUT_S)
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    runner = outcome["runner"]
    assert isinstance(runner, web.AppRunner)
    return EmulatorHandle(f"http://{host}:{outcome['port']}", config, loop, runner, thread)


async def _start(config: EmulatorConfig, host: str, port: int) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(create_app(config), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner, runner.addresses[0][1]


def _parser() -> argparse.ArgumentParser:
    defaults = EmulatorConfig()
    parser = argparse.ArgumentParser(
        prog="python -m cio_emulator",
        description="Serve the local Customer.io emulator (Track v1/v2 and App API).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8787)
    parser.add_argument(
        "--db", type=Path, default=None, help="DuckDB file that keeps the data (default: in memory)"
    )
    parser.add_argument("--site-id", default=defaults.site_id)
    parser.add_argument("--track-api-key", default=defaults.track_api_key)
    parser.add_argument("--app-api-key", default=defaults.app_api_key)
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=None,
        help="requests admitted in any sliding second before 429",
    )
    parser.add_argument(
        "--retry-after", type=float, default=None, help="seconds sent as Retry-After with a 429"
    )
    parser.add_argument(
        "--fail-rate", type=float, default=0.0, help="probability of a random 500/502/503"
    )
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--seed", type=int, default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The CLI: serve until SIGINT/SIGTERM, then compact and close the database."""
    args = _parser().parse_args(argv)
    config = EmulatorConfig(
        site_id=args.site_id,
        track_api_key=args.track_api_key,
        app_api_key=args.app_api_key,
        db_path=args.db,
        rate_limit=args.rate_limit,
        retry_after=args.retry_after,
        fail_rate=args.fail_rate,
        latency_ms=args.latency_ms,
        seed=args.seed,
    )
    # This process holds the workspace: many small acyclic dicts. Rare cyclic collections keep
    # the collector from rescanning them on every batch (about 1.5x the throughput).
    gc.set_threshold(*_CLI_GC_THRESHOLDS)
    validators(), batch_validators(("person", "identify"))  # compiled before the first batch
    try:
        web.run_app(
            create_app(config),
            host=args.host,
            port=args.port,
            access_log=None,
            print=lambda _: print(
                f"emulator listening on http://{args.host}:{args.port}", flush=True
            ),
        )
    except (DatabaseError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
