"""`/_emulator/...`: inspection of the workspace, the request log, faults and reset (no auth).

Shapes:
- people: `{"people": [{cio_id, id, email, phone, attributes, devices: [{token, platform,
  last_used, attributes}], suppressed: false}, ...]}` followed by one entry per suppression
  `{cio_id, id, email, phone, attributes: {}, devices: [], suppressed: true}`.
- suppressions: `{"suppressions": [{cio_id, id, email, phone, at}]}`.
- objects: `{"objects": [{object_type_id, object_id, cio_object_id, attributes}]}`.
- relationships: `{"relationships": [{person: {cio_id, id, email, phone} | {anonymous_id},
  object_type_id, object_id, attributes}]}`.
- devices: `{"devices": [{token, platform, last_used, attributes, person: {cio_id, id, email}}]}`.
- events: `{"events": [{person: {<the identifier sent>} | {anonymous_id}, type, name, id,
  timestamp, data}]}` (an event moved by a merge: `person` names the primary, with
  `merged_from`); deliveries: `{"deliveries": [{delivery_id, name, attributes, at}]}`.
- segments: `{"segments": [{...App API segment, members: [{cio_id, id, email}]}]}`.
- collections: `{"collections": [{...App API collection, data}]}`.
- requests: `{"requests": [{at, method, path, status, ops, errors}]}`; a dropped connection is
  logged with status null. With `EmulatorConfig(log_bodies=True)` each entry also has `query`
  (its parameters) and `body` (the parsed JSON, or None).
- faults: GET shows, POST sets any subset of `{rate_limit, retry_after, fail_rate,
  latency_ms, drop_rate, script: [{count, status} | {count, action: "drop"}], script_paths}`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from cio_emulator.app_api import collection_view, segment_view
from cio_emulator.faults import FaultSpecError
from cio_emulator.responses import (
    BadBody,
    emulator,
    json_response,
    meta_error,
    read_json,
)
from cio_emulator.state import PERSON_KINDS, Record, Workspace


def _identity(person: Record) -> Record:
    return {k: person.get(k) for k in PERSON_KINDS}


def _person_view(person: Record) -> Record:
    return {
        **_identity(person),
        "attributes": person["attributes"],
        "devices": list(person["devices"].values()),
        "suppressed": False,
    }


def people_view(ws: Workspace) -> list[Record]:
    """Live people, then one entry per suppression."""
    live = [_person_view(p) for p in ws.people.values()]
    blocked = [
        {**_identity(r), "attributes": {}, "devices": [], "suppressed": True}
        for r in ws.suppressions
    ]
    return live + blocked


def relationships_view(ws: Workspace) -> list[Record]:
    """Every person and anonymous relationship with its object and attributes."""
    rows = []
    for cio_id, rels in ws.relations.items():
        for key, attrs in rels.items():
            rows.append(_relation(ws, _identity(ws.people[cio_id]), key, attrs))
    for anonymous_id, rels in ws.anon_relations.items():
        for key, attrs in rels.items():
            rows.append(_relation(ws, {"anonymous_id": anonymous_id}, key, attrs))
    return rows


def _relation(ws: Workspace, person: Record, key: str, attrs: Record) -> Record:
    type_id, object_id = key.split(":", 1)
    return {
        "person": person,
        "object_type_id": type_id,
        "object_id": object_id,
        "attributes": attrs,
    }


def devices_view(ws: Workspace) -> list[Record]:
    """Every device with its owner."""
    return [
        {**device, "person": {k: p.get(k) for k in ("cio_id", "id", "email")}}
        for p in ws.people.values()
        for device in p["devices"].values()
    ]


def segments_view(ws: Workspace) -> list[Record]:
    """Segments with their members."""
    return [
        {
            **segment_view(s),
            "members": [
                {"cio_id": c, "id": ws.people[c]["id"], "email": ws.people[c]["email"]}
                for c in s["members"]
                if c in ws.people
            ],
        }
        for s in ws.segments.values()
    ]


_VIEWS: dict[str, Any] = {
    "people": people_view,
    "suppressions": lambda ws: ws.suppressions,
    "objects": lambda ws: list(ws.objects.values()),
    "relationships": relationships_view,
    "devices": devices_view,
    "events": lambda ws: ws.events,
    "deliveries": lambda ws: ws.deliveries,
    "segments": segments_view,
    "collections": lambda ws: [
        {**collection_view(c), "data": c["data"]} for c in ws.collections.values()
    ],
}


def _view(name: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        return json_response({name: _VIEWS[name](emulator(request).workspace)})

    handler.__doc__ = f"GET /_emulator/{name}."
    return handler


async def requests_log(request: web.Request) -> web.Response:
    """GET /_emulator/requests: the request log, oldest first."""
    return json_response({"requests": emulator(request).requests})


async def get_faults(request: web.Request) -> web.Response:
    """GET /_emulator/faults."""
    return json_response(emulator(request).describe_faults())


async def set_faults(request: web.Request) -> web.Response:
    """POST /_emulator/faults: set any subset; 400 `{"meta": {"error"}}` when invalid."""
    try:
        emulator(request).faults.update(await read_json(request))
    except (FaultSpecError, BadBody) as exc:
        return meta_error(str(exc))
    return json_response(emulator(request).describe_faults())


async def reset(request: web.Request) -> web.Response:
    """POST /_emulator/reset: clear data, the request log and faults."""
    emulator(request).reset()
    return json_response({})


def add_routes(app: web.Application) -> None:
    """Register the /_emulator routes."""
    for name in _VIEWS:
        app.router.add_get(f"/_emulator/{name}", _view(name))
    app.router.add_get("/_emulator/requests", requests_log)
    app.router.add_get("/_emulator/faults", get_faults)
    app.router.add_post("/_emulator/faults", set_faults)
    app.router.add_post("/_emulator/reset", reset)
