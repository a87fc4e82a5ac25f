"""Planned records → Customer.io v2 operations. This is where a person row becomes a request.

`build(sync, record)` returns the v2 operation, a `Rejection` when the record breaks a documented
limit (it is then never sent), or None when the change needs no request (under `nulls: skip`,
a change to NULL only). Builders follow SPEC §2.2:

- a record delivered whole (op "add": first delivery, `--full`, after `reset`) omits NULL attributes;
- a changed record (op "update") sends only attributes whose value changed, plus its identifiers;
  an attribute that became NULL is sent as null under `nulls: clear` and left out under `skip`;
- a removal (op "remove") carries identifiers only;
- a rekey (op "rekey": the same person, by the sync's `stable_key`, under a new identifier) is
  delivered in two steps: an identify of the new identifier with the whole record (`build`), then,
  once that is acknowledged, a `merge` of the old person into it (`merge`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from ulid import ULID

from connectors.customerio import limits
from connectors.customerio.limits import utf8_len
from engine.config import DeviceSync, EventSync, ObjectSync, PersonSync, RelationshipSync, Sync
from engine.destination import PlannedRecord, key_parts

Body = dict[str, Any]


@dataclass(frozen=True)
class Rejection:
    reason: str


Built = Body | Rejection | None


def build(sync: Sync, record: PlannedRecord) -> Built:
    return BUILDERS[type(sync)](sync, record)


@dataclass
class Encoded:
    """One chunk of planned records as the client takes them, and what was settled locally."""

    items: list[tuple[int, bytes | str]] = field(default_factory=list)  # (seq, compact JSON)
    acked: list[int] = field(default_factory=list)  # nothing to send: the snapshot just follows
    rejected: list[tuple[int, str]] = field(default_factory=list)


def encode(sync: Sync, records: Iterable[PlannedRecord]) -> Encoded:
    """Build and encode a chunk's operations in one pass (the engine's hot loop)."""
    builder = BUILDERS[type(sync)]
    spliced = SPLICED.get(type(sync))
    out = Encoded()
    for record in records:
        data = spliced(sync, record) if spliced else None
        if data is not None:
            out.items.append((record.seq, data))
            continue
        built = builder(sync, record)
        if built is None:
            out.acked.append(record.seq)
        elif isinstance(built, Rejection):
            out.rejected.append((record.seq, built.reason))
        else:
            try:
                out.items.append((record.seq, orjson.dumps(built)))
            except orjson.JSONEncodeError as exc:
                out.rejected.append((record.seq, f"operation cannot be encoded as JSON ({exc})"))
    return out


# --- attributes --------------------------------------------------------------------------------


def check_attributes(attrs: dict[str, Any]) -> Rejection | None:
    """The documented attribute limits: count, name bytes, value bytes."""
    if len(attrs) > limits.MAX_ATTRIBUTES_PER_CALL:
        return Rejection(
            f"{len(attrs)} attributes; Customer.io takes at most "
            f"{limits.MAX_ATTRIBUTES_PER_CALL} per call"
        )
    names_fit = all(len(name) * 4 <= limits.MAX_ATTRIBUTE_NAME_BYTES for name in attrs)
    if names_fit and len(orjson.dumps(attrs)) <= limits.MAX_ATTRIBUTE_VALUE_BYTES:
        return None  # no name can be too long, no value longer than the whole object
    for name, value in attrs.items():
        if len(name.encode()) > limits.MAX_ATTRIBUTE_NAME_BYTES:
            return Rejection(
                f"attribute name '{name[:40]}…' is over {limits.MAX_ATTRIBUTE_NAME_BYTES} bytes"
            )
        if value is not None and utf8_len(value) > limits.MAX_ATTRIBUTE_VALUE_BYTES:
            return Rejection(
                f"attribute '{name}' is {utf8_len(value)} bytes; Customer.io takes at "
                f"most {limits.MAX_ATTRIBUTE_VALUE_BYTES} bytes a value"
            )
    return None


def check_id(label: str, value: str) -> Rejection | None:
    if len(value) * 4 <= limits.MAX_ID_BYTES:
        return None  # no UTF-8 character is longer than 4 bytes
    size = len(value.encode())
    if size > limits.MAX_ID_BYTES:
        return Rejection(
            f"{label} is {size} bytes; Customer.io takes at most {limits.MAX_ID_BYTES}"
        )
    return None


def check_person(identifier: str, value: str) -> Rejection | None:
    """The 150-byte limit on a person identifier (emails excepted, as Customer.io documents)."""
    return None if identifier == "email" else check_id(f"person {identifier}", value)


def person_identifiers(identifier: str, value: str) -> dict[str, str]:
    """v2 person identifiers: exactly one; a cio_id is sent bare (SPEC §2.2)."""
    if identifier == "cio_id" and value.startswith("cio_"):
        value = value[len("cio_") :]
    return {identifier: value}


# --- one builder per object type ----------------------------------------------------------------


def _person(sync: PersonSync, record: PlannedRecord) -> Built:
    ids = person_identifiers(sync.identifier, record.key)
    bad = check_id(sync.identifier, record.key) if sync.identifier != "email" else None
    if bad:
        return bad
    if record.op == "remove":
        return {"type": "person", "action": sync.on_remove, "identifiers": ids}
    if record.op == "rekey":  # the new person, whole: it may not exist yet
        attrs = {k: v for k, v in record.payload.get("a", {}).items() if v is not None}
        return check_attributes(attrs) or {
            "type": "person",
            "action": "identify",
            "identifiers": ids,
            "attributes": attrs,
        }
    attrs = record.attributes(sync.nulls)
    if record.op == "update" and not attrs:
        return None
    if sync.behavior == "update_only":
        attrs = {**attrs, "_update": True}
    return check_attributes(attrs) or {
        "type": "person",
        "action": "identify",
        "identifiers": ids,
        "attributes": attrs,
    }


_NO_ROLES = ',"r":{}}'


def _person_add_spliced(sync: PersonSync, record: PlannedRecord) -> bytes | None:
    """A person's first delivery, spliced from the stored payload without parsing it: the bytes
    `orjson.dumps(_person(sync, record))` would give. Only for a payload without roles and
    without a null, whose "a" object is then exactly the attributes to send, and short enough
    that no value can break a limit (the names are column names, which
    `engine.extract.layout_for` checks); None sends the record down the general path."""
    text = record.payload_json
    if record.op != "add" or text is None or not text.endswith(_NO_ROLES) or "null" in text:
        return None
    if len(record.key) * 4 > limits.MAX_ID_BYTES or '"_update":' in text:
        return None
    attrs = text[len('{"a":') : -len(_NO_ROLES)].encode()
    if sync.behavior == "update_only":
        attrs = attrs[:-1] + (b',"_update":true}' if attrs != b"{}" else b'"_update":true}')
    if len(attrs) > limits.MAX_ATTRIBUTE_VALUE_BYTES:
        return None
    ids = orjson.dumps(person_identifiers(sync.identifier, record.key))
    return b'{"type":"person","action":"identify","identifiers":%b,"attributes":%b}' % (ids, attrs)


def merge(sync: PersonSync, record: PlannedRecord) -> Built:
    """A rekey's second step: merge the person of the old key (secondary) into the person of the
    new key (primary), which Customer.io then keeps (customerio-api.md §2.5)."""
    assert record.prior is not None, "a merge is built for a rekey"
    bad = check_person(sync.identifier, record.prior)
    if bad:
        return bad
    return {
        "type": "person",
        "action": "merge",
        "primary": person_identifiers(sync.identifier, record.key),
        "secondary": person_identifiers(sync.identifier, record.prior),
    }


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return str(value) if not isinstance(value, (dict, list)) else _compact(value)


def _compact(value: Any) -> str:
    return orjson.dumps(value).decode()


def _device(sync: DeviceSync, record: PlannedRecord) -> Built:
    person, token = key_parts(record.key, 2)
    bad = check_person(sync.person.identifier, person)
    if bad:
        return bad
    ids = person_identifiers(sync.person.identifier, person)
    if record.op == "remove":
        return {
            "type": "person",
            "action": "delete_device",
            "identifiers": ids,
            "device": {"token": token},
        }
    payload = record.payload
    roles = payload.get("r", {})
    device: Body = {"token": token, "platform": str(roles.get("platform") or "")}
    if roles.get("last_used") is not None:
        device["last_used"] = roles["last_used"]
    attrs = {k: _as_text(v) for k, v in payload.get("a", {}).items() if v is not None}
    if attrs:
        device["attributes"] = attrs
    return check_attributes(attrs) or {
        "type": "person",
        "action": "add_device",
        "identifiers": ids,
        "device": device,
    }


def event_id(sync_name: str, key: str, timestamp: int | None) -> str:
    """The deterministic ULID of SPEC §2.2: 48-bit ms timestamp + 80 bits of sha256(name, key)."""
    millis = max(0, int(timestamp or 0) * 1000) & (2**48 - 1)
    digest = hashlib.sha256(f"{sync_name}\x00{key}".encode()).digest()[:10]
    return str(ULID.from_bytes(millis.to_bytes(6, "big") + digest))


def _event(sync: EventSync, record: PlannedRecord) -> Built:
    payload = record.payload
    roles = payload.get("r", {})
    name = roles.get("event_name", sync.event_name)
    kind = roles.get("event_type") or sync.event_type
    if kind not in ("event", "page", "screen"):
        return Rejection(f"event type '{kind}' is not event, page or screen")
    if len(str(name).encode()) > limits.MAX_EVENT_NAME_BYTES:
        return Rejection(f"event name is over {limits.MAX_EVENT_NAME_BYTES} bytes")
    data = {k: v for k, v in payload.get("a", {}).items() if v is not None}
    if utf8_len(data) > limits.MAX_EVENT_DATA_BYTES:
        return Rejection(f"event data is over {limits.MAX_EVENT_DATA_BYTES} bytes")
    bad = check_person(sync.person.identifier, str(roles["person"]))
    if bad:
        return bad
    timestamp = roles.get("timestamp")
    body: Body = {
        "type": "person",
        "action": kind,
        "identifiers": person_identifiers(sync.person.identifier, str(roles["person"])),
        "name": str(name),
        "id": event_id(sync.name, record.key, timestamp),
    }
    if timestamp is not None:
        body["timestamp"] = int(timestamp)
    if data:
        body["attributes"] = data
    return body


def _object_ids(sync: ObjectSync | RelationshipSync, object_id: str) -> dict[str, str]:
    return {"object_type_id": str(sync.object_type_id), "object_id": object_id}


def _object(sync: ObjectSync, record: PlannedRecord) -> Built:
    ids = _object_ids(sync, record.key)
    bad = check_id("object id", record.key)
    if bad:
        return bad
    if record.op == "remove":
        return {"type": "object", "action": "delete", "identifiers": ids}
    attrs = record.attributes(sync.nulls)
    if record.op == "update" and not attrs:
        return None
    return check_attributes(attrs) or {
        "type": "object",
        "action": "identify",
        "identifiers": ids,
        "attributes": attrs,
    }


def _relationship(sync: RelationshipSync, record: PlannedRecord) -> Built:
    person, object_id = key_parts(record.key, 2)
    bad = check_person(sync.person.identifier, person) or check_id("object id", object_id)
    if bad:
        return bad
    ids = person_identifiers(sync.person.identifier, person)
    relation: Body = {"identifiers": _object_ids(sync, object_id)}
    action = "delete_relationships" if record.op == "remove" else "add_relationships"
    if record.op != "remove":
        attrs = record.attributes(sync.nulls)
        if record.op == "update" and not attrs:
            return None
        bad = check_attributes(attrs)
        if bad:
            return bad
        if attrs:
            relation["relationship_attributes"] = attrs
    return {"type": "person", "action": action, "identifiers": ids, "cio_relationships": [relation]}


Builder = Callable[[Any, PlannedRecord], Built]  # each takes its own sync model
BUILDERS: dict[type[Sync], Builder] = {
    PersonSync: _person,
    DeviceSync: _device,
    EventSync: _event,
    ObjectSync: _object,
    RelationshipSync: _relationship,
}
"""The operation builder of each sync type delivered as v2 operations."""
SPLICED: dict[type[Sync], Callable[[Any, PlannedRecord], bytes | None]] = {
    PersonSync: _person_add_spliced
}
"""Fast paths that write an operation's bytes without building it (None: take the builder)."""
