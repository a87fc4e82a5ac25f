"""App API (`/v1/...`, Bearer key): collections, manual segments, people and object lookups.

Unknown ids answer 404 `{"meta": {"error": "..."}}`; bad requests 400 with the same shape.
Collections: a `data` array whose compact JSON exceeds 10,000,000 bytes answers 413 (a body
over the request limit); a row over 10,000 bytes answers 400 (an invalid row). Segment
membership pages with an opaque `start` cursor; `next` is "" on the last page; `limit`
defaults to 1000 and above 30,000 answers 400. Attribute values are returned as strings
(booleans as "true"/"false", objects and arrays as JSON).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from cio_emulator.limits import (
    MAX_COLLECTION_BYTES,
    MAX_COLLECTION_ROW_BYTES,
    MAX_MEMBERSHIP_PAGE,
)
from cio_emulator.responses import (
    BadBody,
    emulator,
    json_response,
    meta_error,
    no_content,
    now,
    read_json,
)
from cio_emulator.state import Record, Workspace

DEFAULT_MEMBERSHIP_PAGE = 1000
MAX_BULK_ATTRIBUTE_IDS = 100
ID_TYPES = ("id", "email", "phone", "cio_id")


class AppError(Exception):
    """An App API request answered `{"meta": {"error": message}}` with `status`."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@web.middleware
async def app_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn an AppError or BadBody raised by an App API handler into its answer."""
    try:
        return await handler(request)
    except AppError as exc:
        return meta_error(str(exc), exc.status)
    except BadBody as exc:
        return meta_error(str(exc))


def _int_id(request: web.Request, name: str) -> int:
    value = request.match_info[name]
    if not value.isdigit():
        raise AppError(f"{name} {value!r} not found", 404)
    return int(value)


async def _object_body(request: web.Request) -> Record:
    body = await read_json(request)
    if not isinstance(body, dict):
        raise AppError("the body must be a JSON object")
    return body


def as_string(value: Any) -> str:
    """An attribute value as the App API shows it: a string."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return orjson.dumps(value).decode()


# ---- collections -------------------------------------------------------------------------


def _check_data(data: Any) -> None:
    if not isinstance(data, list):
        raise AppError("data must be an array of objects")
    if len(orjson.dumps(data)) > MAX_COLLECTION_BYTES:
        raise AppError(f"a collection holds at most {MAX_COLLECTION_BYTES} bytes", 413)
    for index, row in enumerate(data):
        if len(orjson.dumps(row)) > MAX_COLLECTION_ROW_BYTES:
            raise AppError(f"row {index} is over {MAX_COLLECTION_ROW_BYTES} bytes")


def _check_content(data: Any) -> None:
    if len(orjson.dumps(data)) > MAX_COLLECTION_BYTES:
        raise AppError(f"a collection holds at most {MAX_COLLECTION_BYTES} bytes", 413)
    for index, row in enumerate(data if isinstance(data, list) else [data]):
        if len(orjson.dumps(row)) > MAX_COLLECTION_ROW_BYTES:
            raise AppError(f"row {index} is over {MAX_COLLECTION_ROW_BYTES} bytes")


def collection_view(coll: Record) -> Record:
    """The App API's collection object (without its contents)."""
    data = coll["data"]
    rows = data if isinstance(data, list) else [data]
    keys = sorted({key for row in rows if isinstance(row, dict) for key in row})
    return {
        "id": coll["id"],
        "name": coll["name"],
        "bytes": len(orjson.dumps(data)),
        "rows": len(rows),
        "schema": keys,
        "created_at": coll["created_at"],
        "updated_at": coll["updated_at"],
    }


def _collection(request: web.Request) -> Record:
    coll = emulator(request).workspace.collections.get(_int_id(request, "collection_id"))
    if coll is None:
        raise AppError("collection not found", 404)
    return coll


async def create_collection(request: web.Request) -> web.Response:
    """POST /collections `{name, data}`."""
    body = await _object_body(request)
    if not isinstance(body.get("name"), str) or not body["name"]:
        raise AppError("name is required")
    if "url" in body and "data" not in body:
        raise AppError("this emulator takes `data` only; `url` imports are not supported")
    _check_data(body.get("data"))
    emu = emulator(request)
    emu.commit(
        [{"type": "collection", "action": "create", "name": body["name"], "data": body["data"]}],
        now(request),
    )
    coll = emu.workspace.collections[max(emu.workspace.collections)]
    return json_response({"collection": collection_view(coll)})


async def list_collections(request: web.Request) -> web.Response:
    """GET /collections (not paginated)."""
    colls = emulator(request).workspace.collections.values()
    return json_response({"collections": [collection_view(c) for c in colls]})


async def get_collection(request: web.Request) -> web.Response:
    """GET /collections/{id}."""
    return json_response({"collection": collection_view(_collection(request))})


async def get_content(request: web.Request) -> web.Response:
    """GET /collections/{id}/content: the stored contents."""
    return json_response(_collection(request)["data"])


async def update_collection(request: web.Request) -> web.Response:
    """PUT /collections/{id} `{name?, data?}`: new data fully replaces the contents."""
    coll = _collection(request)
    body = await _object_body(request)
    op: Record = {"type": "collection", "action": "update", "collection_id": coll["id"]}
    if "name" in body:
        if not isinstance(body["name"], str) or not body["name"]:
            raise AppError("name must be a non-empty string")
        op["name"] = body["name"]
    if "data" in body:
        _check_data(body["data"])
        op["data"] = body["data"]
    emulator(request).commit([op], now(request))
    return json_response({"collection": collection_view(coll)})


async def replace_content(request: web.Request) -> web.Response:
    """PUT /collections/{id}/content: any JSON replaces the contents."""
    coll = _collection(request)
    data = await read_json(request)
    _check_content(data)
    emulator(request).commit(
        [{"type": "collection", "action": "update", "collection_id": coll["id"], "data": data}],
        now(request),
    )
    return json_response({"collection": collection_view(coll)})


async def delete_collection(request: web.Request) -> web.Response:
    """DELETE /collections/{id}: 204."""
    coll = _collection(request)
    emulator(request).commit(
        [{"type": "collection", "action": "delete", "collection_id": coll["id"]}], now(request)
    )
    return no_content()


# ---- segments ----------------------------------------------------------------------------


def segment_view(segment: Record) -> Record:
    """The App API's segment object (without members)."""
    return {k: v for k, v in segment.items() if k != "members"}


def _segment(request: web.Request) -> Record:
    segment = emulator(request).workspace.segments.get(_int_id(request, "segment_id"))
    if segment is None:
        raise AppError("segment not found", 404)
    return segment


async def create_segment(request: web.Request) -> web.Response:
    """POST /segments `{"segment": {name, description?}}`: an empty manual segment."""
    spec = (await _object_body(request)).get("segment")
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
        raise AppError("segment.name is required")
    op = {
        "type": "segment",
        "action": "create",
        "name": spec["name"],
        "description": spec.get("description"),
    }
    emu = emulator(request)
    emu.commit([op], now(request))
    return json_response(
        {"segment": segment_view(emu.workspace.segments[max(emu.workspace.segments)])}
    )


async def list_segments(request: web.Request) -> web.Response:
    """GET /segments."""
    segments = emulator(request).workspace.segments.values()
    return json_response({"segments": [segment_view(s) for s in segments]})


async def get_segment(request: web.Request) -> web.Response:
    """GET /segments/{id}."""
    return json_response({"segment": segment_view(_segment(request))})


async def delete_segment(request: web.Request) -> web.Response:
    """DELETE /segments/{id}: 204."""
    segment = _segment(request)
    emulator(request).commit(
        [{"type": "segment", "action": "delete", "segment_id": segment["id"]}], now(request)
    )
    return no_content()


def _page_bounds(request: web.Request) -> tuple[int, int]:
    start, limit = request.query.get("start", ""), request.query.get("limit", "")
    if start and not start.isdigit():
        raise AppError("start is not a cursor this emulator issued")
    if limit and (not limit.isdigit() or not 1 <= int(limit) <= MAX_MEMBERSHIP_PAGE):
        raise AppError(f"limit must be between 1 and {MAX_MEMBERSHIP_PAGE}")
    return int(start or 0), int(limit or DEFAULT_MEMBERSHIP_PAGE)


async def membership(request: web.Request) -> web.Response:
    """GET /segments/{id}/membership?start=&limit=: one page of members, `next` cursor."""
    segment = _segment(request)
    start, limit = _page_bounds(request)
    people = emulator(request).workspace.people
    members = list(segment["members"])[start : start + limit]
    identifiers = [
        {"id": people[c]["id"] or "", "email": people[c]["email"], "cio_id": c}
        for c in members
        if c in people
    ]
    more = start + limit < len(segment["members"])
    return json_response(
        {
            "identifiers": identifiers,
            "ids": [i["id"] for i in identifiers],
            "next": str(start + limit) if more else "",
        }
    )


async def customer_count(request: web.Request) -> web.Response:
    """GET /segments/{id}/customer_count."""
    return json_response({"count": len(_segment(request)["members"])})


# ---- people and objects ------------------------------------------------------------------


def customer_view(ws: Workspace, cio_id: str) -> Record:
    """The App API's customer object: identifiers, string attributes, devices."""
    person = ws.people[cio_id]
    identifiers = {"id": person["id"], "email": person["email"], "cio_id": cio_id}
    if person["phone"]:
        identifiers["phone"] = person["phone"]
    attributes = {k: as_string(v) for k, v in person["attributes"].items()}
    attributes |= {k: v for k, v in identifiers.items() if v is not None}
    unsubscribed = str(person["attributes"].get("unsubscribed", "")).lower() in ("true", "1")
    return {
        "id": person["id"],
        "identifiers": identifiers,
        "attributes": attributes,
        "timestamps": {},
        "unsubscribed": unsubscribed,
        "devices": [
            {
                "id": d["token"],
                "platform": d["platform"],
                "last_used": d["last_used"],
                "attributes": d["attributes"],
            }
            for d in person["devices"].values()
        ],
    }


def _lookup(ws: Workspace, id_type: str, value: str) -> str | None:
    if id_type == "cio_id":
        value = value.removeprefix("cio_")
    return ws.find(id_type, value)


async def find_by_email(request: web.Request) -> web.Response:
    """GET /customers?email=: `{"results": [{email, id, cio_id}]}` (empty when none)."""
    ws = emulator(request).workspace
    cio_id = ws.find("email", request.query.get("email", ""))
    results = (
        []
        if cio_id is None
        else [
            {"email": ws.people[cio_id]["email"], "id": ws.people[cio_id]["id"], "cio_id": cio_id}
        ]
    )
    return json_response({"results": results})


async def customer_attributes(request: web.Request) -> web.Response:
    """GET /customers/{customer_id}/attributes?id_type=: 404 when the person is unknown."""
    id_type = request.query.get("id_type", "id")
    if id_type not in ID_TYPES:
        raise AppError(f"id_type must be one of {', '.join(ID_TYPES)}")
    ws = emulator(request).workspace
    cio_id = _lookup(ws, id_type, request.match_info["customer_id"])
    if cio_id is None:
        raise AppError("customer not found", 404)
    return json_response({"customer": customer_view(ws, cio_id)})


async def bulk_attributes(request: web.Request) -> web.Response:
    """POST /customers/attributes `{"ids": [≤100]}`: unknown ids are left out."""
    ids = (await _object_body(request)).get("ids")
    if not isinstance(ids, list) or len(ids) > MAX_BULK_ATTRIBUTE_IDS:
        raise AppError(f"ids must be an array of at most {MAX_BULK_ATTRIBUTE_IDS}")
    ws = emulator(request).workspace
    found = [c for c in (ws.find("id", str(i)) for i in ids) if c is not None]
    return json_response({"customers": [customer_view(ws, c) for c in found]})


async def object_attributes(request: web.Request) -> web.Response:
    """GET /objects/{object_type_id}/{object_id}/attributes?id_type=object_id|cio_object_id."""
    type_id, object_id = request.match_info["object_type_id"], request.match_info["object_id"]
    id_type = request.query.get("id_type", "object_id")
    ws = emulator(request).workspace
    identifiers = (
        {"cio_object_id": object_id}
        if id_type == "cio_object_id"
        else {"object_type_id": type_id, "object_id": object_id}
    )
    key = ws.find_object(identifiers)
    obj = ws.objects.get(key) if key is not None else None
    if obj is None or obj["object_type_id"] != type_id:
        raise AppError("object not found", 404)
    return json_response(
        {
            "object": {
                "attributes": {k: as_string(v) for k, v in obj["attributes"].items()},
                "timestamps": {},
                "object_type_id": int(type_id) if type_id.isdigit() else type_id,
                "identifiers": {
                    "object_id": obj["object_id"],
                    "cio_object_id": obj["cio_object_id"],
                },
            }
        }
    )


def add_routes(app: web.Application) -> None:
    """Register the App API routes."""
    router = app.router
    router.add_post("/v1/collections", create_collection)
    router.add_get("/v1/collections", list_collections)
    router.add_get("/v1/collections/{collection_id}", get_collection)
    router.add_put("/v1/collections/{collection_id}", update_collection)
    router.add_delete("/v1/collections/{collection_id}", delete_collection)
    router.add_get("/v1/collections/{collection_id}/content", get_content)
    router.add_put("/v1/collections/{collection_id}/content", replace_content)
    router.add_post("/v1/segments", create_segment)
    router.add_get("/v1/segments", list_segments)
    router.add_get("/v1/segments/{segment_id}", get_segment)
    router.add_delete("/v1/segments/{segment_id}", delete_segment)
    router.add_get("/v1/segments/{segment_id}/membership", membership)
    router.add_get("/v1/segments/{segment_id}/customer_count", customer_count)
    router.add_get("/v1/customers", find_by_email)
    router.add_post("/v1/customers/attributes", bulk_attributes)
    router.add_get("/v1/customers/{customer_id}/attributes", customer_attributes)
    router.add_get("/v1/objects/{object_type_id}/{object_id}/attributes", object_attributes)
