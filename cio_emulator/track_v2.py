"""Track API v2: `POST /api/v2/entity` (one operation) and `POST /api/v2/batch`.

Each operation is validated by the OpenAPI schema of its (type, action), then by the documented
limits (checks.py); an operation over 32,000 bytes (compact JSON) is rejected on its own.
A batch applies every valid operation and answers 207 listing the others by `batch_index`.
A body over the request limit (32,000 bytes for /entity, 500,000 for /batch) answers 413.

`check_v2` checks one operation step by step; `check_ops` finds the same problems for a batch
with one schema call per (type, action) it holds (see schema.py, `FAST_ACCEPT`).
"""

from __future__ import annotations

import operator
from typing import Any

import orjson
from aiohttp import web

from cio_emulator.checks import Problem, check_operation
from cio_emulator.limits import MAX_BATCH_BYTES, MAX_ENTITY_BYTES
from cio_emulator.responses import (
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
from cio_emulator.schema import batch_validators, first_error, validators


def check_v2(op: Any) -> Problem | None:
    """The first problem of one v2 operation (shape, size, schema, limits), or None.

    This is the reference check: `check_ops` must agree with it on every operation.
    """
    if not isinstance(op, dict):
        return _NOT_AN_OBJECT
    kind, action = op.get("type"), op.get("action")
    validator = (
        validators().get((kind, action))
        if isinstance(kind, str) and isinstance(action, str)
        else None
    )
    if validator is None:
        return _unknown(kind, action)
    size = len(orjson.dumps(op))
    if size > MAX_ENTITY_BYTES:
        return _too_large_op(size)
    error = first_error(validator, op)
    if error is not None:
        return ("invalid", error[0], error[1])
    return check_operation(op, size)


def check_ops(ops: list[Any]) -> dict[int, Problem]:
    """The problem `check_v2` finds in each operation that has one, by index in index order.

    The operations of one (type, action) are checked together. A group the fast-accept
    validator passes (schema, limits and size at once) needs nothing more; any other group is
    measured and validated with one call, and its operations examined one by one only where
    that fails.
    """
    problems: dict[int, Problem] = {}
    for key, indexes in _groups(ops, problems).items():
        members = ops if len(indexes) == len(ops) else [ops[i] for i in indexes]
        fast = batch_validators(key).fast
        if fast is None or not fast.is_valid(members):
            _check_group(key, ops, indexes, problems)
    return dict(sorted(problems.items()))


def _check_group(
    key: tuple[str, str], ops: list[Any], indexes: list[int], problems: dict[int, Problem]
) -> None:
    """`check_v2` for operations of one known (type, action), the schema in one call."""
    sizes = {}
    for i in indexes:
        size = len(orjson.dumps(ops[i]))
        if size > MAX_ENTITY_BYTES:
            problems[i] = _too_large_op(size)
        else:
            sizes[i] = size
    if not batch_validators(key).exact.is_valid([ops[i] for i in sizes]):
        for i in sizes:
            error = first_error(validators()[key], ops[i])
            if error is not None:
                problems[i] = ("invalid", error[0], error[1])
    for i, size in sizes.items():
        problem = None if i in problems else check_operation(ops[i], size)
        if problem is not None:
            problems[i] = problem


_TYPE_ACTION = operator.itemgetter("type", "action")


def _groups(ops: list[Any], problems: dict[int, Problem]) -> dict[tuple[str, str], list[int]]:
    """The indexes of the operations of each known (type, action); the other operations get
    their problem. A batch of one known (type, action) is recognised without a Python loop."""
    known = validators()
    try:
        keys = set(map(_TYPE_ACTION, ops))
    except (TypeError, KeyError):  # an operation not an object, or without a type or action
        keys = set()
    if len(keys) == 1 and next(iter(keys)) in known:
        return {next(iter(keys)): list(range(len(ops)))}
    groups: dict[tuple[str, str], list[int]] = {}
    for index, op in enumerate(ops):
        try:
            key = _TYPE_ACTION(op)
            listed = key in known  # so both are strings
        except (TypeError, KeyError):  # not an object, a key missing, an unhashable value
            listed = False
        if not listed:
            problems[index] = _unlisted(op)
        elif key in groups:
            groups[key].append(index)
        else:
            groups[key] = [index]
    return groups


_NOT_AN_OBJECT: Problem = ("invalid", "", "each operation must be a JSON object")


def _unlisted(op: Any) -> Problem:
    """The problem of an operation that is not an object of a known (type, action)."""
    problem = check_v2(op)
    assert problem is not None
    return problem


def _unknown(kind: Any, action: Any) -> Problem:
    return ("invalid", "action", f"unknown type/action: {kind!r}/{action!r}")


def _too_large_op(size: int) -> Problem:
    return ("too_large", "", f"operation is {size} bytes; at most {MAX_ENTITY_BYTES}")


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
    problems = check_ops(ops)
    valid = [op for i, op in enumerate(ops) if i not in problems] if problems else ops
    emulator(request).commit(valid, now(request))
    errors = [
        {"batch_index": index, "reason": reason, "field": field, "message": message}
        for index, (reason, field, message) in problems.items()
    ]
    if errors:
        request[ERRORS] = errors
        return json_response({"errors": errors}, status=207)
    return ok()


def add_routes(app: web.Application) -> None:
    """Register the v2 routes."""
    app.router.add_post("/api/v2/entity", entity)
    app.router.add_post("/api/v2/batch", batch)
