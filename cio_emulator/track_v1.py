"""Track API v1 (`/api/v1/...`): people, events, devices, suppression, merge, segments, region.

The path identifier's type comes from its shape: `cio_` prefix → cio_id, contains `@` →
email, else id (a phone number is an id in v1). Success is 200 `{}`; errors are 400
`{"meta": {"errors": [...]}}` (merge: `{"meta": {"error": ...}}`). Requests that Customer.io
accepts and then ignores (unknown cio_id, `_update` for an unknown person, a suppressed
identifier, an unknown or non-manual segment id) answer 200 and change nothing.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from cio_emulator.checks import check_attributes, check_event, check_id
from cio_emulator.limits import MAX_SEGMENT_IDS_PER_CALL
from cio_emulator.responses import (
    OPS,
    BadBody,
    emulator,
    json_response,
    meta_error,
    meta_errors,
    now,
    ok,
    read_json,
)
from cio_emulator.state import Record

EVENT_TYPES = ("event", "page", "screen")
ID_TYPES = ("id", "email", "cio_id")
CIO_PREFIX = "cio_"


def path_identifiers(value: str) -> Record:
    """v1 path identifier → v2 identifiers: `cio_…` → cio_id, `@` → email, else id."""
    if value.startswith(CIO_PREFIX):
        return {"cio_id": value[len(CIO_PREFIX) :]}
    return {"email": value} if "@" in value else {"id": value}


class V1Error(Exception):
    """A v1 request Customer.io answers 400 `{"meta": {"errors": [message]}}`."""


def _identifiers(request: web.Request) -> Record:
    value = request.match_info["identifier"]
    problem = check_id(value, "identifier")
    if problem is not None:
        raise V1Error(problem[2])
    return path_identifiers(value)


async def _object_body(request: web.Request) -> Record:
    try:
        body = await read_json(request, empty={})
    except BadBody as exc:
        raise V1Error(str(exc)) from exc
    if not isinstance(body, dict):
        raise V1Error("the body must be a JSON object")
    return body


def _commit(request: web.Request, ops: list[Record]) -> web.Response:
    emulator(request).commit(ops, now(request))
    return ok()


def _relationship_ops(identifiers: Record, rels: Any) -> tuple[list[Record], list[Record]]:
    """v1 `cio_relationships` → (relations to add on identify, a delete op list)."""
    if not isinstance(rels, dict):
        return [], []
    items = [r for r in rels.get("relationships") or [] if isinstance(r, dict)]
    if rels.get("action") == "delete_relationships":
        return [], [
            {
                "type": "person",
                "action": "delete_relationships",
                "identifiers": identifiers,
                "cio_relationships": items,
            }
        ]
    return items, []


async def identify(request: web.Request) -> web.Response:
    """PUT /customers/{identifier}: create or update a person."""
    identifiers = _identifiers(request)
    body = await _object_body(request)
    problem = check_attributes(body, "attributes")
    if problem is not None:
        raise V1Error(problem[2])
    attrs = {k: v for k, v in body.items() if k != "cio_relationships"}
    add, delete = _relationship_ops(identifiers, body.get("cio_relationships"))
    op = {
        "type": "person",
        "action": "identify",
        "identifiers": identifiers,
        "attributes": attrs,
        "cio_relationships": add,
    }
    return _commit(request, [op, *delete])


def _person_op(action: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        identifiers = _identifiers(request)
        return _commit(request, [{"type": "person", "action": action, "identifiers": identifiers}])

    handler.__doc__ = f"The v1 `{action}` of the person in the path."
    return handler


def _event_fields(body: Record) -> Record:
    name = body.get("name")
    if not isinstance(name, str) or not name.strip():
        raise V1Error("event name is required")
    kind = body.get("type", "event")
    if kind not in EVENT_TYPES:
        raise V1Error(f"type must be one of {', '.join(EVENT_TYPES)}")
    problem = check_event(name, body.get("data"), "data")
    if problem is not None:
        raise V1Error(problem[2])
    fields = {"action": kind, "name": name, "attributes": body.get("data") or {}}
    for key in ("id", "timestamp"):
        if body.get(key) is not None:
            fields[key] = body[key]
    return fields


async def event(request: web.Request) -> web.Response:
    """POST /customers/{identifier}/events: an event, page or screen view."""
    identifiers = _identifiers(request)
    fields = _event_fields(await _object_body(request))
    return _commit(request, [{"type": "person", "identifiers": identifiers, **fields}])


async def anonymous_event(request: web.Request) -> web.Response:
    """POST /events: an anonymous event (matched to a person who gets its anonymous_id)."""
    body = await _object_body(request)
    fields = _event_fields(body)
    op = {
        "type": "anonymous",
        **fields,
        "action": "event",
        "event_type": fields["action"],
        "anonymous_id": body.get("anonymous_id"),
    }
    return _commit(request, [op])


async def add_device(request: web.Request) -> web.Response:
    """PUT /customers/{identifier}/devices: add or update `device.id` (the token)."""
    identifiers = _identifiers(request)
    device = (await _object_body(request)).get("device")
    if not isinstance(device, dict) or not isinstance(device.get("id"), str) or not device["id"]:
        raise V1Error("device.id is required")
    if device.get("platform") not in ("ios", "android"):
        raise V1Error("device.platform must be ios or android")
    fields = {k: device[k] for k in ("platform", "last_used", "attributes") if k in device}
    return _commit(
        request,
        [
            {
                "type": "person",
                "action": "add_device",
                "identifiers": identifiers,
                "device": {"token": device["id"], **fields},
            }
        ],
    )


async def delete_device(request: web.Request) -> web.Response:
    """DELETE /customers/{identifier}/devices/{device_id}."""
    identifiers = _identifiers(request)
    token = request.match_info["device_id"]
    return _commit(
        request,
        [
            {
                "type": "person",
                "action": "delete_device",
                "identifiers": identifiers,
                "device": {"token": token},
            }
        ],
    )


def _merge_side(body: Record, side: str) -> Record:
    value = body.get(side)
    keys = [k for k in ID_TYPES if isinstance(value, dict) and k in value]
    if not isinstance(value, dict) or len(keys) != 1 or len(value) != 1:
        raise ValueError(f"{side} must have exactly one of id, email or cio_id")
    kind = keys[0]
    ident = str(value[kind])
    return {kind: ident.removeprefix(CIO_PREFIX) if kind == "cio_id" else ident}


async def merge(request: web.Request) -> web.Response:
    """POST /merge_customers: merge secondary into primary (400 uses `meta.error`)."""
    try:
        body = await _object_body(request)
        op = {
            "type": "person",
            "action": "merge",
            "primary": _merge_side(body, "primary"),
            "secondary": _merge_side(body, "secondary"),
        }
    except (ValueError, V1Error) as exc:
        return meta_error(str(exc))
    return _commit(request, [op])


def _segment_ids(body: Record) -> list[str]:
    ids = body.get("ids")
    if not isinstance(ids, list) or not ids:
        raise V1Error("ids must be a non-empty array")
    if len(ids) > MAX_SEGMENT_IDS_PER_CALL:
        raise V1Error(f"at most {MAX_SEGMENT_IDS_PER_CALL} ids per call; got {len(ids)}")
    if not all(isinstance(i, str | int) and not isinstance(i, bool) for i in ids):
        raise V1Error("ids must be strings")
    return [str(i) for i in ids]


def _segment_op(action: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        id_type = request.query.get("id_type", "id")
        if id_type not in ID_TYPES:
            raise V1Error(f"id_type must be one of {', '.join(ID_TYPES)}")
        ids = _segment_ids(await _object_body(request))
        request[OPS] = len(ids)
        if id_type == "cio_id":
            ids = [i.removeprefix(CIO_PREFIX) for i in ids]
        segment = request.match_info["segment_id"]
        segment_id = int(segment) if segment.isdigit() else -1
        return _commit(
            request,
            [
                {
                    "type": "segment",
                    "action": action,
                    "segment_id": segment_id,
                    "id_type": id_type,
                    "ids": ids,
                }
            ],
        )

    handler.__doc__ = f"POST /segments/{{segment_id}}/{action}: unknown ids are ignored."
    return handler


async def region(request: web.Request) -> web.Response:
    """GET /accounts/region: this emulator's base URL, region us, its environment id."""
    base = f"{request.scheme}://{request.host}"
    return json_response(
        {"url": base, "region": "us", "environment_id": emulator(request).workspace.environment_id}
    )


@web.middleware
async def v1_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn a V1Error raised by a v1 handler into its 400 answer."""
    try:
        return await handler(request)
    except V1Error as exc:
        return meta_errors(str(exc))


def add_routes(app: web.Application) -> None:
    """Register the v1 routes."""
    person = "/api/v1/customers/{identifier}"
    router = app.router
    router.add_put(person, identify)
    router.add_delete(person, _person_op("delete"))
    router.add_post(f"{person}/events", event)
    router.add_post("/api/v1/events", anonymous_event)
    router.add_put(f"{person}/devices", add_device)
    router.add_delete(f"{person}/devices/{{device_id}}", delete_device)
    router.add_post(f"{person}/suppress", _person_op("suppress"))
    router.add_post(f"{person}/unsuppress", _person_op("unsuppress"))
    router.add_post("/api/v1/merge_customers", merge)
    router.add_post("/api/v1/segments/{segment_id}/add_customers", _segment_op("add_customers"))
    router.add_post(
        "/api/v1/segments/{segment_id}/remove_customers", _segment_op("remove_customers")
    )
    router.add_get("/api/v1/accounts/region", region)
