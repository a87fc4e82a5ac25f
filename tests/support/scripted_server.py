"""A scripted HTTP server for the client's tests: each test scripts its answers (207 bodies, 400
splitting, 401, 429 with Retry-After, 503, dropped connections, slow answers), and helpers that
run the client against it."""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web

from connectors.customerio.client import CustomerIOClient, Op
from connectors.customerio.policy import ClientSettings
from engine.destination import DeliveryStats, Outcome
from engine.errors import SyncError

TRACK_KEY = "track-key-NEVER-PRINTED"
APP_KEY = "app-key-NEVER-PRINTED"
PAYLOAD_MARK = "PAYLOAD-MARK"


@dataclass
class Seen:
    """One request as the scripted server received it."""

    at: float
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    raw: bytes

    @property
    def json(self) -> Any:
        return orjson.loads(self.raw) if self.raw else None

    @property
    def refs(self) -> list[int]:
        """The `ref` each test op carries in its attributes (see `op`)."""
        return [entry["attributes"]["ref"] for entry in self.json["batch"]]


@dataclass
class Reply:
    status: int = 200
    body: Any = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    drop: bool = False
    text: str | None = None


Script = Callable[[Seen, int], Reply]


class ScriptedServer:
    """Answers each request with `script(seen, n)` (n counts requests from 0) and logs it."""

    def __init__(self, script: Script | None = None) -> None:
        self.script: Script = script or (lambda seen, n: Reply())
        self.seen: list[Seen] = []
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def __aenter__(self) -> ScriptedServer:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        seen = Seen(
            time.time(),
            request.method,
            request.path,
            dict(request.query),
            dict(request.headers),
            await request.read(),
        )
        n = len(self.seen)
        self.seen.append(seen)
        reply = self.script(seen, n)
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.drop:
            assert request.transport is not None
            request.transport.close()
            return web.Response()
        if reply.text is not None:
            return web.Response(status=reply.status, text=reply.text, headers=reply.headers)
        body = b"" if reply.body is None else orjson.dumps(reply.body)
        return web.Response(
            status=reply.status,
            body=body,
            headers=reply.headers,
            content_type="application/json",
        )

    @property
    def batch_requests(self) -> list[Seen]:
        return [s for s in self.seen if s.path == "/api/v2/batch"]


class Collector:
    """An `on_outcome` that keeps every Outcome."""

    def __init__(self) -> None:
        self.outcomes: list[Outcome] = []

    async def __call__(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)

    @property
    def acked(self) -> list[int]:
        return sorted(ref for o in self.outcomes for ref in o.acked)

    @property
    def rejected(self) -> dict[int, str]:
        return {ref: reason for o in self.outcomes for ref, reason in o.rejected}


def settings(url: str, **overrides: Any) -> ClientSettings:
    values: dict[str, Any] = {
        "track_url": url,
        "app_url": url,
        "site_id": "site-1",
        "track_api_key": TRACK_KEY,
        "app_api_key": APP_KEY,
        "rate_limit": 1000,
        "app_rate_limit": 1000,
        "timeout_s": 2.0,
        "max_retries": 3,
        "backoff_base_s": 0.01,
        "backoff_cap_s": 0.05,
    }
    values.update(overrides)
    return ClientSettings(**values)


def op(ref: int, **attributes: Any) -> Op:
    body = {
        "type": "person",
        "action": "identify",
        "identifiers": {"id": f"person-{ref}"},
        "attributes": {"ref": ref, **attributes},
    }
    return Op(ref, body)


def op_of_size(ref: int, size: int) -> Op:
    """An op whose compact JSON is exactly `size` bytes."""
    base = len(orjson.dumps(op(ref, pad="").body))
    made = op(ref, pad="x" * (size - base))
    assert len(orjson.dumps(made.body)) == size
    return made


async def deliver(
    server: ScriptedServer, ops: list[Op], **overrides: Any
) -> tuple[Collector, DeliveryStats]:
    collector, stats = Collector(), DeliveryStats()
    async with CustomerIOClient(settings(server.url, **overrides)) as client:
        await client.send_batches(ops, collector, stats)
    return collector, stats


def run_with_server(
    script: Script | None, body: Callable[[ScriptedServer], Awaitable[Any]]
) -> tuple[ScriptedServer, Any]:
    async def main() -> tuple[ScriptedServer, Any]:
        async with ScriptedServer(script) as server:
            return server, await body(server)

    return asyncio.run(main())


def send(
    ops: list[Op], script: Script | None = None, **overrides: Any
) -> tuple[ScriptedServer, Collector, DeliveryStats]:
    server, (collector, stats) = run_with_server(
        script, lambda server: deliver(server, ops, **overrides)
    )
    return server, collector, stats


def send_failing(
    ops: list[Op], script: Script, error: type[SyncError], **overrides: Any
) -> tuple[ScriptedServer, Collector, DeliveryStats, SyncError]:
    collector, stats = Collector(), DeliveryStats()

    async def body(server: ScriptedServer) -> SyncError:
        async with CustomerIOClient(settings(server.url, **overrides)) as client:
            with pytest.raises(error) as caught:
                await client.send_batches(ops, collector, stats)
        return caught.value

    server, raised = run_with_server(script, body)
    return server, collector, stats, raised


def max_in_window(stamps: list[float], period: float = 1.0) -> int:
    ordered = sorted(stamps)
    return max(bisect.bisect_left(ordered, t + period) - i for i, t in enumerate(ordered))
