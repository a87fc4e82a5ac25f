"""Small HTTP helpers shared by the routes: JSON bodies, request keys, the app key."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from cio_emulator.core import Emulator

EMULATOR = web.AppKey("emulator", Emulator)
OPS = web.RequestKey("ops", int)
ERRORS = web.RequestKey("errors", list)
ARRIVED = web.RequestKey("arrived", float)
DROPPED = web.RequestKey("dropped", bool)

JSON_TYPE = "application/json"


def emulator(request: web.Request) -> Emulator:
    """The emulator serving this request."""
    return request.app[EMULATOR]


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON response encoded with orjson (`application/json; charset=utf-8`)."""
    return web.Response(
        body=orjson.dumps(data),
        status=status,
        headers=headers,
        content_type=JSON_TYPE,
        charset="utf-8",
    )


def ok() -> web.Response:
    """200 `{}`: Customer.io's success answer for Track calls."""
    return web.Response(body=b"{}", content_type=JSON_TYPE, charset="utf-8")


def no_content() -> web.Response:
    """204 with no body."""
    return web.Response(status=204)


def meta_errors(message: str, status: int = 400) -> web.Response:
    """Track v1's error body: `{"meta": {"errors": [message]}}`."""
    return json_response({"meta": {"errors": [message]}}, status)


def meta_error(message: str, status: int = 400) -> web.Response:
    """The single-error body (merge, 401, App API): `{"meta": {"error": message}}`."""
    return json_response({"meta": {"error": message}}, status)


def v2_errors(reason: str, field: str, message: str, status: int = 400) -> web.Response:
    """Track v2's request-level error: `{"errors": [{reason, field, message}]}`."""
    return json_response(
        {"errors": [{"reason": reason, "field": field, "message": message}]}, status
    )


class BadBody(Exception):
    """A request body that is not the JSON the route needs."""


async def read_json(request: web.Request, empty: Any = None) -> Any:
    """The request body parsed as JSON; `empty` when there is no body; BadBody otherwise."""
    body = await request.read()
    if not body.strip():
        if empty is None:
            raise BadBody("a JSON body is required")
        return empty
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadBody(f"the body is not valid JSON: {exc.msg}") from exc


def logged_body(raw: bytes) -> Any:
    """A request body for the request log: JSON, text when it is not JSON, None when empty."""
    if not raw.strip():
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", errors="replace")


def now(request: web.Request) -> float:
    """The request's arrival time (epoch seconds)."""
    return request[ARRIVED]
