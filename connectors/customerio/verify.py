"""Delivered records read back through the App API (`sync verify`, `verify:` on a sync).

Each record's last delivered payload (from the snapshot) is compared with what Customer.io holds,
under Customer.io's conversions: the App API gives every attribute value as a string (booleans
`"true"`/`"false"`, numbers as text, objects and arrays as JSON), and emails are compared
lowercased. An attribute delivered as NULL is not checked (it was left out, or cleared), nor is
an attribute Customer.io holds that the sync never sent.

    person          GET /v1/customers/{id}/attributes?id_type=...   404: missing
    device          the same, its person's `devices`                 token absent: missing
    object          GET /v1/objects/{type}/{id}/attributes          404: missing
    manual_segment  GET /v1/segments/{id}/membership, page by page   not a member: missing
    collection      GET /v1/collections, then .../{id}/content       not found: missing

Events and relationships cannot be read back (`CustomerIOWorkspace.unverifiable`). Every call
goes through `CustomerIOClient.app`, paced at `app_rate_limit`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import quote

import orjson

from connectors.customerio.client import CustomerIOClient
from connectors.customerio.errors import message
from connectors.customerio.limits import MAX_MEMBERSHIP_PAGE
from engine.config import (
    CollectionSync,
    DeviceSync,
    ManualSegmentSync,
    ObjectSync,
    PersonSync,
    Sync,
)
from engine.destination import DeliveryStats, Drift, PlannedRecord, key_parts
from engine.errors import DestinationError

Reader = Callable[
    [CustomerIOClient, Any, Sequence[PlannedRecord], DeliveryStats], Awaitable[list[Drift]]
]


def _text(value: Any) -> str:
    """A delivered value as the App API shows it."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return orjson.dumps(value).decode()


def _same(delivered: Any, held: Any, email: bool) -> bool:
    text = _text(delivered)
    held_text = held if isinstance(held, str) else _text(held)
    if email:
        return text.strip().lower() == held_text.strip().lower()
    if text == held_text:
        return True
    try:  # 49.5 and "49.50", {"a": 1} and '{"a":1}': the same value in other words
        return bool(orjson.loads(held_text) == delivered)
    except orjson.JSONDecodeError:
        return False


def _short(value: Any) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= 60 else text[:59] + "…"


def differences(delivered: dict[str, Any], held: dict[str, Any]) -> list[str]:
    """The delivered attributes Customer.io does not hold as delivered, in words."""
    found = []
    for name, value in delivered.items():
        if value is None:
            continue
        if name not in held or held[name] is None:
            found.append(f"{name}: delivered {_short(value)}, Customer.io has none")
        elif not _same(value, held[name], email=name == "email"):
            found.append(f"{name}: delivered {_short(value)}, Customer.io has {_short(held[name])}")
    return found


def _differs(key: str, delivered: dict[str, Any], held: dict[str, Any]) -> list[Drift]:
    found = differences(delivered, held)
    return [Drift(key, False, "; ".join(found))] if found else []


async def _get(
    api: CustomerIOClient, path: str, stats: DeliveryStats, params: dict[str, str] | None = None
) -> Any | None:
    """The body of a GET, None on 404; another failure raises DestinationError."""
    answer = await api.app("GET", path, params=params, stats=stats)
    if answer.status == 404:
        return None
    if answer.status >= 300:
        raise DestinationError(
            f"reading back GET {path} answered {answer.status}: {message(answer.body)}",
            "check the workspace's app_api_key, and that the identifier type is enabled",
        )
    return answer.body


# --- people and devices ---------------------------------------------------------------------------


async def _person(
    api: CustomerIOClient, identifier: str, value: str, stats: DeliveryStats
) -> dict[str, Any] | None:
    shown = f"cio_{value.removeprefix('cio_')}" if identifier == "cio_id" else value
    path = f"/v1/customers/{quote(shown, safe='')}/attributes"
    body = await _get(api, path, stats, {"id_type": identifier})
    return None if body is None else dict(body.get("customer") or {})


def _no_person(identifier: str, value: str) -> str:
    return (
        f"Customer.io has no person with {identifier} {value}: deleted or suppressed, or an "
        "_update (update_only) for someone who did not exist, which Customer.io answers 200 "
        "and ignores"
    )


async def _people(
    api: CustomerIOClient, sync: PersonSync, records: Sequence[PlannedRecord], stats: DeliveryStats
) -> list[Drift]:
    async def check(record: PlannedRecord) -> list[Drift]:
        held = await _person(api, sync.identifier, record.key, stats)
        if held is None:
            return [Drift(record.key, True, _no_person(sync.identifier, record.key))]
        return _differs(record.key, record.payload.get("a", {}), held.get("attributes") or {})

    return [d for found in await asyncio.gather(*map(check, records)) for d in found]


async def _devices(
    api: CustomerIOClient, sync: DeviceSync, records: Sequence[PlannedRecord], stats: DeliveryStats
) -> list[Drift]:
    by_person: dict[str, list[PlannedRecord]] = {}
    for record in records:
        by_person.setdefault(key_parts(record.key, 2)[0], []).append(record)

    async def check(person: str, owned: list[PlannedRecord]) -> list[Drift]:
        held = await _person(api, sync.person.identifier, person, stats)
        if held is None:
            why = _no_person(sync.person.identifier, person)
            return [Drift(r.key, True, f"its person is gone: {why}") for r in owned]
        devices = {str(d.get("id")): d for d in held.get("devices") or []}
        found = []
        for record in owned:
            token = key_parts(record.key, 2)[1]
            device = devices.get(token)
            if device is None:
                found.append(Drift(record.key, True, f"person {person} has no device {token}"))
                continue
            payload = record.payload
            delivered = {"platform": str(payload.get("r", {}).get("platform") or "")}
            delivered |= payload.get("a", {})
            attributes = {"platform": device.get("platform"), **(device.get("attributes") or {})}
            found += _differs(record.key, delivered, attributes)
        return found

    checks = [check(person, owned) for person, owned in by_person.items()]
    return [d for found in await asyncio.gather(*checks) for d in found]


# --- objects, segments, collections -------------------------------------------------------------


async def _objects(
    api: CustomerIOClient, sync: ObjectSync, records: Sequence[PlannedRecord], stats: DeliveryStats
) -> list[Drift]:
    async def check(record: PlannedRecord) -> list[Drift]:
        path = f"/v1/objects/{sync.object_type_id}/{quote(record.key, safe='')}/attributes"
        body = await _get(api, path, stats)
        if body is None:
            why = f"Customer.io has no object {record.key} of type {sync.object_type_id}"
            return [Drift(record.key, True, why)]
        held = (body.get("object") or {}).get("attributes") or {}
        return _differs(record.key, record.payload.get("a", {}), held)

    return [d for found in await asyncio.gather(*map(check, records)) for d in found]


async def _segment_id(
    api: CustomerIOClient, sync: ManualSegmentSync, stats: DeliveryStats
) -> int | None:
    """The segment's id; a segment named by `segment:` is only looked for, never created."""
    if sync.segment_id is not None:
        return int(sync.segment_id)
    body = await _get(api, "/v1/segments", stats) or {}
    for segment in body.get("segments", []):
        if segment.get("name") == sync.segment and segment.get("type") == "manual":
            return int(segment["id"])
    return None


async def _segment(
    api: CustomerIOClient,
    sync: ManualSegmentSync,
    records: Sequence[PlannedRecord],
    stats: DeliveryStats,
) -> list[Drift]:
    """Page through the membership until every sampled key is found or the pages end."""
    segment_id = await _segment_id(api, sync, stats)
    email = sync.identifier == "email"
    wanted = {r.key.lower() if email else r.key.removeprefix("cio_") for r in records}
    missing = set(wanted)
    start = ""
    while segment_id is not None and missing:
        params = {"limit": str(MAX_MEMBERSHIP_PAGE), **({"start": start} if start else {})}
        body = await _get(api, f"/v1/segments/{segment_id}/membership", stats, params)
        if body is None:
            break
        for member in body.get("identifiers") or []:
            value = str(member.get(sync.identifier) or "")
            missing.discard(value.lower() if email else value)
        start = str(body.get("next") or "")
        if not start:
            break
    where = f"segment {segment_id}" if segment_id is not None else f"segment '{sync.segment}'"
    why = "not a member of" if segment_id is not None else "no member: there is no manual"
    return [
        Drift(r.key, True, f"{why} {where}")
        for r in records
        if (r.key.lower() if email else r.key.removeprefix("cio_")) in missing
    ]


async def _collection(
    api: CustomerIOClient,
    sync: CollectionSync,
    records: Sequence[PlannedRecord],
    stats: DeliveryStats,
) -> list[Drift]:
    body = await _get(api, "/v1/collections", stats) or {}
    ids = [c["id"] for c in body.get("collections", []) if c.get("name") == sync.collection]
    found = []
    for record in records:
        if not ids:
            found.append(
                Drift(record.key, True, f"Customer.io has no collection '{sync.collection}'")
            )
            continue
        held = await _get(api, f"/v1/collections/{ids[0]}/content", stats)
        rows = [row.get("a", row) for row in record.payload.get("r", {}).get("rows", [])]
        if held != rows:
            count = len(held) if isinstance(held, list) else 1
            detail = f"delivered {len(rows):,} row(s); Customer.io holds {count:,} other contents"
            found.append(Drift(record.key, False, detail))
    return found


READERS: dict[type[Sync], Reader] = {
    PersonSync: _people,
    DeviceSync: _devices,
    ObjectSync: _objects,
    ManualSegmentSync: _segment,
    CollectionSync: _collection,
}


async def read_back(
    api: CustomerIOClient, sync: Sync, records: Sequence[PlannedRecord], stats: DeliveryStats
) -> list[Drift]:
    """The delivered records Customer.io does not hold as delivered."""
    return await READERS[type(sync)](api, sync, records, stats)
