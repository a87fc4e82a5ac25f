"""Track API v2: `POST /api/v2/entity` (one operation) and `POST /api/v2/batch`.

Each operation is validated by the OpenAPI schema of its (type, action), then by the documented
limits (checks.py); an operation over 32,000 bytes (compact JSON) is rejected on its own.
A batch applies every valid operation and answers 207 listing the others by `batch_index`.
A body over the request limit (32,000 bytes for /entity, 500,000 for /batch) answers 413.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from connectors.customerio.emulator.checks import Problem, check_operation
from connectors.customerio.emulator.responses import (
    ERRORS,
    OPS,
    BadBody,
    emulator,
    json_response,
    now,
    ok,
    read_json,
    v2_errors,
)
from connectors.customerio.emulator.schema import first_error, validators
from connectors.customerio.limits import MAX_BATCH_BYTES, MAX_ENTITY_BYTES


def check_v2(op: Any) -> Problem | None:
    """The first problem of one v2 operation (shape, size, schema, limits), or None."""
    if not isinstance(op, dict):
        return ("invalid", "", "each operation must be a JSON object")
    kind, action = op.get("type"), op.get("action")
    validator = (
        validators().get((kind, action))
        if isinstance(kind, str) and isinstance(action, str)
        else None
    )
    if validator is None:
        return ("invalid", "action", f"unknown type/action: {kind!r}/{action!r}")
    size = len(orjson.dumps(op))
    if size > MAX_ENTITY_BYTES:
        return ("too_large", "", f"operation is {size} bytes; at most {MAX_ENTITY_BYTES}")
    error = first_error(validator, op)
    if error is not None:
        return ("invalid", error[0], error[1])
    return check_operation(op, size)


async def _body(request: web.Request, limit: int) -> Any:
    if request.content_length is not None and request.content_length > limit:
        raise _TooLarge(request.content_length, limit)
    raw = await request.read()
    if len(raw) > limit:
        raise _TooLarge(len(raw), limit)
    return await read_json(request)


class _TooLarge(Exception):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"the request body is {size} bytes; at most {limit}")


def _too_large(exc: _TooLarge) -> web.Response:
    return v2_errors("too_large", "", str(exc), status=413)


async def entity(request: web.Request) -> web.Response:
    """One operation: 200 `{}` when applied, 400 with its problem otherwise."""
    try:
        op = await _body(request, MAX_ENTITY_BYTES)
    except _TooLarge as exc:
        return _too_large(exc)
    except BadBody as exc:
        return v2_errors("malformed", "", str(exc))
    problem = check_v2(op)
    if problem is not None:
        request[ERRORS] = [dict(zip(("reason", "field", "message"), problem, strict=True))]
        return v2_errors(*problem)
    emulator(request).commit([op], now(request))
    return ok()


def _batch_ops(document: Any) -> list[Any]:
    batch = document.get("batch") if isinstance(document, dict) else None
    if not isinstance(batch, list):
        raise BadBody("the body must be an object with a `batch` array")
    if not batch:
        raise BadBody("the `batch` array is empty")
    return batch


async def batch(request: web.Request) -> web.Response:
    """Many operations: valid ones applied; 207 lists the invalid ones by `batch_index`."""
    try:
        ops = _batch_ops(await _body(request, MAX_BATCH_BYTES))
    except _TooLarge as exc:
        return _too_large(exc)
    except BadBody as exc:
        return v2_errors("malformed", "batch", str(exc))
    request[OPS] = len(ops)
    valid, errors = [], []
    for index, op in enumerate(ops):
        problem = check_v2(op)
        if problem is None:
            valid.append(op)
        else:
            errors.append(
                {
                    "batch_index": index,
                    "reason": problem[0],
                    "field": problem[1],
                    "message": problem[2],
                }
            )
    emulator(request).commit(valid, now(request))
    if errors:
        request[ERRORS] = errors
        return json_response({"errors": errors}, status=207)
    return ok()


def add_routes(app: web.Application) -> None:
    """Register the v2 routes."""
    app.router.add_post("/api/v2/entity", entity)
    app.router.add_post("/api/v2/batch", batch)
