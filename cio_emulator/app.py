"""The aiohttp application: middlewares (log → faults → auth → errors) and routes.

Only `/api/...` (Track, Basic `site_id:track_api_key`) and `/v1/...` (App, `Bearer
app_api_key`) requests are logged, subject to faults and authenticated; a failure answers
401 `{"meta": {"error": "Unauthorized request"}}`. `/_emulator/...` needs no auth.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from cio_emulator import app_api, control, track_v1, track_v2
from cio_emulator.config import EmulatorConfig
from cio_emulator.core import Emulator
from cio_emulator.faults import DROP
from cio_emulator.responses import (
    ARRIVED,
    DROPPED,
    EMULATOR,
    ERRORS,
    OPS,
    emulator,
    json_response,
    logged_body,
    meta_error,
)

TRACK_PREFIX, APP_PREFIX = "/api/", "/v1/"


def _served(path: str) -> bool:
    return path.startswith(TRACK_PREFIX) or path.startswith(APP_PREFIX)


@web.middleware
async def log_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Stamp the arrival time; log /api and /v1 requests with status, ops and errors (and,
    with `log_bodies`, query parameters and body)."""
    request[ARRIVED] = time.time()
    if not _served(request.path):
        return await handler(request)
    response = await handler(request)
    emu = emulator(request)
    entry = {
        "at": request[ARRIVED],
        "method": request.method,
        "path": request.path,
        "status": None if request.get(DROPPED) else response.status,
        "ops": request.get(OPS, 1),
        "errors": request.get(ERRORS, []),
    }
    if emu.config.log_bodies:
        entry["query"] = dict(request.query)
        entry["body"] = None if request.get(DROPPED) else logged_body(await request.read())
    emu.log(entry)
    return response


@web.middleware
async def inject_faults(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Apply latency, scripted answers, drops, the rate limit and random 5xx."""
    if not _served(request.path):
        return await handler(request)
    emu = emulator(request)
    if emu.faults.latency_ms:
        await asyncio.sleep(emu.faults.latency_ms / 1000)
    verdict = emu.faults.decide(request.path, time.monotonic(), emu.rng)
    if verdict.action == DROP:
        request[DROPPED] = True
        if request.transport is not None:
            request.transport.abort()
        return web.Response()
    if verdict.action == "status":
        return json_response({}, verdict.status, verdict.headers)
    return await handler(request)


def _basic_ok(header: str, site_id: str, key: str) -> bool:
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return False
    return decoded == f"{site_id}:{key}"


def _authorized(request: web.Request, config: EmulatorConfig, basic: str) -> bool:
    header = request.headers.get("Authorization", "")
    if request.path.startswith(TRACK_PREFIX):
        return header == basic or _basic_ok(header, config.site_id, config.track_api_key)
    return header == f"Bearer {config.app_api_key}"


def _auth_middleware(config: EmulatorConfig) -> Middleware:
    basic = (
        "Basic " + base64.b64encode(f"{config.site_id}:{config.track_api_key}".encode()).decode()
    )

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        """401 unless /api carries the Track Basic credentials and /v1 the App bearer key."""
        if _served(request.path) and not _authorized(request, config, basic):
            return meta_error("Unauthorized request", 401)
        return await handler(request)

    return authenticate


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Unknown routes and methods under /api and /v1 answer with a JSON body."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if not _served(request.path) or exc.status < 400:
            raise
        return meta_error(exc.reason, exc.status)


@web.middleware
async def route_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map the v1 and App API handlers' own errors to their documented bodies."""
    if request.path.startswith("/api/v1/"):
        return await track_v1.v1_errors(request, handler)
    if request.path.startswith(APP_PREFIX):
        return await app_api.app_errors(request, handler)
    return await handler(request)


def create_app(config: EmulatorConfig) -> web.Application:
    """An aiohttp application serving one emulated workspace; its DuckDB file (if any) is
    opened now and compacted and closed on the application's cleanup."""
    app = web.Application(
        middlewares=[
            log_requests,
            inject_faults,
            _auth_middleware(config),
            json_errors,
            route_errors,
        ],
        client_max_size=64 * 1024 * 1024,
    )
    app[EMULATOR] = Emulator(config)
    for module in (track_v1, track_v2, app_api, control):
        module.add_routes(app)
    app.on_cleanup.append(_close)
    return app


async def _close(app: web.Application) -> None:
    app[EMULATOR].close()
