"""Apply validated operations to a workspace: the only code that mutates `Workspace`.

Every operation is a v2-shaped dict `{"type", "action", ...}`; Track v1 and App API requests
are translated into such dicts by the routes, so the journal replays them through this same
table. Given the same workspace, operations and `now`, the result is the same.

Behaviour where Customer.io's docs are silent (choices of this emulator):
- A person identify with an attribute set to `null` removes it; `""` is stored as a value.
- Identifiers (`id`, `email`, `phone`) live apart from `attributes`. `email` may change when the
  person is addressed by `id` (as with "Allow updates to email using ID"); `id` may be set when
  the person has none; any identifier may change when addressed by `cio_id`. A change to an
  identifier that another person holds is ignored.
- Events, devices and relationships addressed to an unknown `id`/`email`/`phone` create the
  person, as identify does; an unknown `cio_id` drops the operation.
- An attribute update older (`timestamp`/`_timestamp`) than the last timestamped update of the
  same attribute is ignored.
- Relationships to an unknown object given by type and id create the object.
- A merge moves the secondary's events of the last 30 days (by their timestamp) to the primary:
  such an event's `person` then names the primary by the kind of identifier it was sent with (or
  by cio_id when the primary has none of that kind), with `merged_from`, the reference it had.
  Older events keep their reference, as a deleted person's events do.

The most common operation, a person identify by `id` with plain attributes, takes a shorter
path (`_identify_by_id`) with the same outcome; a test compares it with the rules step by step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cio_emulator.state import PERSON_KINDS, Record, Workspace, object_key

Applier = Callable[[Workspace, Record, float], None]

_IDENTIFIER_ATTRS = ("id", "email", "phone")
_IDENTIFIER_SET = frozenset(_IDENTIFIER_ATTRS)
_NOT_STORED = frozenset(
    {"_update", "_timestamp", "cio_relationships", "cio_id", *_IDENTIFIER_ATTRS}
)
_PREFERENCES = "cio_subscription_preferences."
_PREFERENCES_END = "cio_subscription_preferences/"  # the first string after the prefixed ones


def person_ref(identifiers: Record) -> tuple[str, Any]:
    """The (kind, value) of a person's identifiers dict (the first known kind)."""
    for kind in PERSON_KINDS:
        if kind in identifiers:
            return kind, identifiers[kind]
    raise KeyError("no person identifier")


def _new_person(ws: Workspace, kind: str, value: str) -> str:
    cio_id = f"e{ws.next_id('person'):07x}"
    person: Record = {
        "cio_id": cio_id,
        "id": None,
        "email": None,
        "phone": None,
        "attributes": {},
        "devices": {},
        "timestamps": {},
    }
    person[kind] = value
    ws.people[cio_id] = person  # as ws.add_person, for a record with one identifier
    if value and kind != "cio_id":
        ws.set_index(kind, value, cio_id)
    return cio_id


def resolve_or_create(ws: Workspace, identifiers: Record) -> str | None:
    """The person an operation addresses, created for id/email/phone; None when dropped."""
    kind, value = person_ref(identifiers)
    if ws.is_blocked(kind, value):
        return None
    found = ws.find(kind, value)
    if found is not None or kind == "cio_id":
        return found
    return _new_person(ws, kind, str(value))


def _body_matches(ws: Workspace, kind: str, attrs: Record) -> set[str]:
    matches: set[str] = set()
    if attrs.keys().isdisjoint(_IDENTIFIER_SET):
        return matches
    for other in _IDENTIFIER_ATTRS:
        if other != kind and attrs.get(other):
            found = ws.find(other, attrs[other])
            if found is not None:
                matches.add(found)
    return matches


def _identify_target(ws: Workspace, kind: str, value: Any, attrs: Record) -> str | None:
    """The person an identify updates, per the resolution rules; None when dropped."""
    if ws.is_blocked(kind, value):
        return None
    found = ws.find(kind, value)
    if kind == "cio_id":
        return found
    others = _body_matches(ws, kind, attrs)
    if found is not None:
        return None if others - {found} else found
    if len(others) > 1:
        return None
    if others:
        target = others.pop()
        _set_identifier(ws, ws.people[target], kind, str(value))
        return target
    return None if attrs.get("_update") is True else _new_person(ws, kind, str(value))


def _set_identifier(ws: Workspace, person: Record, kind: str, value: str) -> None:
    if ws.find(kind, value) not in (None, person["cio_id"]) or ws.is_blocked(kind, value):
        return
    if person.get(kind):
        ws.set_index(kind, person[kind], None)
    person[kind] = value
    ws.set_index(kind, value, person["cio_id"])


def _may_change(person: Record, addressed_by: str, kind: str) -> bool:
    return (
        addressed_by == "cio_id"
        or not person.get(kind)
        or (kind == "email" and addressed_by == "id")
    )


def _update_identifiers(ws: Workspace, person: Record, addressed_by: str, attrs: Record) -> None:
    if attrs.keys().isdisjoint(_IDENTIFIER_SET):
        return
    for kind in _IDENTIFIER_ATTRS:
        value = attrs.get(kind)
        if value in (None, "") or value == person.get(kind):
            continue
        if _may_change(person, addressed_by, kind):
            _set_identifier(ws, person, kind, str(value))


def _plain(attrs: Record) -> bool:
    """Whether every attribute is simply set: no null (a removal), no subscription preference
    (a name in [_PREFERENCES, _PREFERENCES_END) starts with _PREFERENCES)."""
    for name, value in attrs.items():
        if value is None or _PREFERENCES <= name < _PREFERENCES_END:
            return False
    return True


def _set_preference(attributes: Record, dotted: str, value: Any) -> None:
    node = attributes
    *parents, last = dotted.split(".")
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    if value is None:
        node.pop(last, None)
    else:
        node[last] = value


def _stamp(value: Any) -> int | None:
    """An update's ordering stamp: integer Unix seconds; anything else orders nothing."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _set_attributes(person: Record, attrs: Record, timestamp: Any) -> None:
    attributes, stamps = person["attributes"], person["timestamps"]
    if timestamp is None and _plain(attrs):
        attributes.update(attrs)
        if not _NOT_STORED.isdisjoint(attrs):
            for name in _NOT_STORED.intersection(attrs):
                del attributes[name]  # never stored, so it was not there before the update
        return
    for name, value in attrs.items():
        if name in _NOT_STORED:
            continue
        if timestamp is not None:
            if timestamp < stamps.get(name, timestamp):
                continue
            stamps[name] = timestamp
        if name.startswith(_PREFERENCES):
            _set_preference(attributes, name, value)
        elif value is None:
            attributes.pop(name, None)
        else:
            attributes[name] = value


def _link_anonymous(ws: Workspace, cio_id: str, anonymous_id: Any) -> None:
    if not isinstance(anonymous_id, str):
        return
    for key, attrs in ws.anon_relations.pop(anonymous_id, {}).items():
        ws.relate(cio_id, key, attrs)


def person_identify(ws: Workspace, op: Record, now: float) -> None:
    """Create or update a person (rules of customerio-api.md §2.2)."""
    if not _identify_by_id(ws, op):
        identify_by_the_rules(ws, op)


# Attribute names that send an identify down the general path (`email` alone is handled).
_NOT_SIMPLE = frozenset(
    {"_update", "_timestamp", "anonymous_id", "cio_relationships", "cio_id", "id", "phone"}
)


def _identify_by_id(ws: Workspace, op: Record) -> bool:
    """The common identify, by the same rules in fewer steps: addressed by a string `id`, no
    suppressions in the workspace, no timestamp or relationships, plain attributes with at
    most `email` among the identifiers, no email of another person to adopt. False, having
    changed nothing, for any other operation (`identify_by_the_rules` then applies it)."""
    value, attrs = op["identifiers"].get("id"), op.get("attributes")
    if (
        type(value) is not str
        or type(attrs) is not dict
        or ws.blocked
        or "timestamp" in op
        or op.get("cio_relationships")
        or not _NOT_SIMPLE.isdisjoint(attrs)
        or not _plain(attrs)
    ):
        return False
    email = attrs.get("email")
    if email is not None and type(email) is not str:
        return False
    cio_id = ws.by_id.get(value)
    key = email.lower() if email else ""  # the email's index key
    holder = ws.by_email.get(key) if key else None
    if holder is not None and holder != cio_id:
        return cio_id is not None  # an update is dropped; adopting an email is not simple
    person = ws.people[cio_id] if cio_id is not None else ws.people[_new_person(ws, "id", value)]
    if email and email != person.get("email"):
        if person.get("email"):
            ws.set_index("email", person["email"], None)
        person["email"] = email
        ws.by_email[key] = person["cio_id"]
    person["attributes"].update(attrs)
    if "email" in attrs:
        del person["attributes"]["email"]  # an identifier, never stored as an attribute
    return True


def identify_by_the_rules(ws: Workspace, op: Record) -> None:
    """Create or update a person, every rule applied step by step."""
    kind, value = person_ref(op["identifiers"])
    attrs = op.get("attributes") or {}
    target = _identify_target(ws, kind, value, attrs)
    if target is None:
        return
    person = ws.people[target]
    _update_identifiers(ws, person, kind, attrs)
    _set_attributes(person, attrs, _stamp(op.get("timestamp", attrs.get("_timestamp"))))
    if "anonymous_id" in attrs:
        _link_anonymous(ws, target, attrs["anonymous_id"])
    if op.get("cio_relationships"):
        _add_object_relations(ws, target, op["cio_relationships"])


def _drop_person(ws: Workspace, cio_id: str) -> Record:
    person = ws.people.pop(cio_id)
    for kind in _IDENTIFIER_ATTRS:
        if person.get(kind):
            ws.set_index(kind, person[kind], None)
    for token in person["devices"]:
        ws.device_owner.pop(token, None)
    for key in list(ws.relations.get(cio_id, {})):
        ws.unrelate(cio_id, key)
    ws.relations.pop(cio_id, None)
    for segment in ws.segments.values():
        segment["members"].pop(cio_id, None)
    return person


def person_delete(ws: Workspace, op: Record, now: float) -> None:
    """Delete a person with their devices, relationships and segment memberships."""
    kind, value = person_ref(op["identifiers"])
    cio_id = ws.find(kind, value)
    if cio_id is not None:
        _drop_person(ws, cio_id)


def person_suppress(ws: Workspace, op: Record, now: float) -> None:
    """Delete the person and block every identifier they had (and the one addressed)."""
    kind, value = person_ref(op["identifiers"])
    record = {k: None for k in PERSON_KINDS} | {kind: str(value), "at": now}
    cio_id = ws.find(kind, value)
    if cio_id is not None:
        person = _drop_person(ws, cio_id)
        record |= {k: person.get(k) or record[k] for k in PERSON_KINDS}
    ws.add_suppression(record)


def person_unsuppress(ws: Workspace, op: Record, now: float) -> None:
    """Free the identifiers of every suppression naming this one; no profile is restored."""
    kind, value = person_ref(op["identifiers"])
    if not ws.is_blocked(kind, value):
        return
    target = str(value).lower() if kind == "email" else str(value)
    kept = [
        r
        for r in ws.suppressions
        if (str(r.get(kind) or "").lower() if kind == "email" else r.get(kind)) != target
    ]
    ws.suppressions, ws.blocked = [], set()
    for record in kept:
        ws.add_suppression(record)


def _event_record(op: Record, person: Record, now: float) -> Record:
    return {
        "person": person,
        "type": op["action"],
        "name": str(op["name"]).strip(),
        "id": op.get("id"),
        "timestamp": op.get("timestamp", int(now)),
        "data": op.get("attributes") or {},
    }


def _seen_event(ws: Workspace, op: Record) -> bool:
    event_id = op.get("id")
    if event_id is None:
        return False
    if event_id in ws.event_ids:
        return True
    ws.event_ids.add(event_id)
    return False


def person_event(ws: Workspace, op: Record, now: float) -> None:
    """Record an event/page/screen for a person; a repeated event `id` is ignored."""
    kind, value = person_ref(op["identifiers"])
    if ws.is_blocked(kind, value) or (kind == "cio_id" and ws.find(kind, value) is None):
        return
    if _seen_event(ws, op):
        return
    resolve_or_create(ws, op["identifiers"])
    ws.events.append(_event_record(op, {kind: value}, now))


def anonymous_event(ws: Workspace, op: Record, now: float) -> None:
    """Record a v1 anonymous event; a repeated event `id` is ignored."""
    if _seen_event(ws, op):
        return
    record = _event_record(
        op | {"action": op.get("event_type", "event")},
        {"anonymous_id": op.get("anonymous_id")},
        now,
    )
    ws.events.append(record)


def person_add_device(ws: Workspace, op: Record, now: float) -> None:
    """Add or update a device (token) on a person; a token moves from any other person."""
    cio_id = resolve_or_create(ws, op["identifiers"])
    if cio_id is None:
        return
    device = op["device"]
    token = str(device["token"])
    owner = ws.device_owner.get(token)
    if owner is not None and owner != cio_id:
        ws.people[owner]["devices"].pop(token, None)
    ws.people[cio_id]["devices"][token] = {
        "token": token,
        "platform": device.get("platform"),
        "last_used": device.get("last_used", int(now)),
        "attributes": device.get("attributes") or {},
    }
    ws.device_owner[token] = cio_id


def person_delete_device(ws: Workspace, op: Record, now: float) -> None:
    """Remove a device from the person addressed, if they hold it."""
    kind, value = person_ref(op["identifiers"])
    cio_id = ws.find(kind, value)
    token = str(op["device"]["token"])
    if cio_id is not None and ws.people[cio_id]["devices"].pop(token, None) is not None:
        ws.device_owner.pop(token, None)


def _merge_attrs(target: Record, source: Record) -> Record:
    """Attributes merged for a relationship: null or "" removes one."""
    merged = dict(target)
    for name, value in source.items():
        if value is None or value == "":
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged


def _object_for(ws: Workspace, identifiers: Record, now: float) -> str | None:
    key = ws.find_object(identifiers)
    if key is not None or "cio_object_id" in identifiers:
        return key
    return _create_object(ws, str(identifiers["object_type_id"]), str(identifiers["object_id"]))


def _create_object(ws: Workspace, type_id: str, object_id: str) -> str:
    obj = {
        "object_type_id": type_id,
        "object_id": object_id,
        "cio_object_id": f"ob{ws.next_id('object'):08x}",
        "attributes": {},
    }
    ws.add_object(obj)
    return object_key(type_id, object_id)


def _add_object_relations(ws: Workspace, cio_id: str, rels: list[Record]) -> None:
    for rel in rels:
        key = _object_for(ws, rel.get("identifiers") or {}, 0.0) if rel.get("identifiers") else None
        if key is not None:
            old = ws.relations.get(cio_id, {}).get(key, {})
            ws.relate(cio_id, key, _merge_attrs(old, rel.get("relationship_attributes") or {}))


def person_add_relationships(ws: Workspace, op: Record, now: float) -> None:
    """Relate a person to objects (objects given by type and id are created)."""
    cio_id = resolve_or_create(ws, op["identifiers"])
    if cio_id is not None:
        _add_object_relations(ws, cio_id, op["cio_relationships"])


def person_delete_relationships(ws: Workspace, op: Record, now: float) -> None:
    """Remove a person's relationships to the objects listed."""
    kind, value = person_ref(op["identifiers"])
    cio_id = ws.find(kind, value)
    for rel in op["cio_relationships"] if cio_id is not None else []:
        key = ws.find_object(rel.get("identifiers") or {}) if rel.get("identifiers") else None
        if key is not None:
            ws.unrelate(cio_id, key)  # type: ignore[arg-type]


def _merge_side(ws: Workspace, side: Record) -> str | None:
    kind, value = person_ref(side)
    return ws.find(kind, value)


MERGED_EVENTS_S = 30 * 86_400  # a merge moves the secondary's events of the last 30 days


def _addresses(person: Record, ref: Record) -> bool:
    """Whether an event's person reference (the identifier it was sent to) names `person`."""
    for kind, value in ref.items():
        if kind in PERSON_KINDS and value is not None and person.get(kind) is not None:
            if kind == "email":
                return str(value).lower() == str(person["email"]).lower()
            return str(value) == str(person[kind])
    return False


def _move_events(ws: Workspace, keep: Record, gone: Record, now: float) -> None:
    """The secondary's events of the last 30 days become the primary's, addressed as the
    primary by the same kind of identifier (or its cio_id); older ones stay as they were."""
    since = now - MERGED_EVENTS_S
    for event in ws.events:
        if event["timestamp"] >= since and _addresses(gone, event["person"]):
            kind = next(iter(event["person"]))
            ref = {kind: keep[kind]} if keep.get(kind) else {"cio_id": keep["cio_id"]}
            event["person"] = ref | {"merged_from": event["person"]}


def person_merge(ws: Workspace, op: Record, now: float) -> None:
    """Merge `secondary` into an existing `primary`, then delete `secondary` (customerio-api.md
    §2.5): the primary keeps its attributes and history and gains the attributes it lacks, the
    secondary's events of the last 30 days, devices, relationships and manual segments."""
    primary, secondary = _merge_side(ws, op["primary"]), _merge_side(ws, op["secondary"])
    if primary is None or secondary is None or primary == secondary:
        return
    keep, gone = ws.people[primary], ws.people[secondary]
    keep["attributes"] = gone["attributes"] | keep["attributes"]
    _move_events(ws, keep, gone, now)
    rels = ws.relations.get(secondary, {})
    devices = dict(gone["devices"])
    segments = [s for s in ws.segments.values() if secondary in s["members"]]
    _drop_person(ws, secondary)
    for key, attrs in rels.items():
        ws.relate(primary, key, ws.relations.get(primary, {}).get(key, attrs))
    for token, device in devices.items():
        keep["devices"].setdefault(token, device)
        ws.device_owner[token] = primary
    for segment in segments:
        segment["members"][primary] = None


def _person_for_relation(ws: Workspace, identifiers: Record) -> str | None:
    try:
        return resolve_or_create(ws, identifiers)
    except KeyError:
        return None


def object_identify(ws: Workspace, op: Record, now: float) -> None:
    """Create or update an object; null or "" removes an attribute; relate the people listed."""
    key = _object_for(ws, op["identifiers"], now)
    if key is None:
        return
    obj = ws.objects[key]
    obj["attributes"] = _merge_attrs(obj["attributes"], op.get("attributes") or {})
    for rel in op.get("cio_relationships") or []:
        cio_id = _person_for_relation(ws, rel.get("identifiers") or {})
        if cio_id is not None:
            old = ws.relations.get(cio_id, {}).get(key, {})
            ws.relate(cio_id, key, _merge_attrs(old, rel.get("relationship_attributes") or {}))


def object_identify_anonymous(ws: Workspace, op: Record, now: float) -> None:
    """Create or update an object and relate it to anonymous ids (carried over on identify)."""
    key = _object_for(ws, op["identifiers"], now)
    if key is None:
        return
    obj = ws.objects[key]
    obj["attributes"] = _merge_attrs(obj["attributes"], op.get("attributes") or {})
    rels = [
        (r.get("identifiers") or {}).get("anonymous_id") for r in op.get("cio_relationships") or []
    ]
    attrs = [r.get("relationship_attributes") or {} for r in op.get("cio_relationships") or []]
    if op.get("anonymous_id"):
        rels, attrs = [*rels, op["anonymous_id"]], [*attrs, {}]
    for anonymous_id, rel_attrs in zip(rels, attrs, strict=True):
        if isinstance(anonymous_id, str):
            old = ws.anon_relations.setdefault(anonymous_id, {})
            old[key] = _merge_attrs(old.get(key, {}), rel_attrs)


def object_delete(ws: Workspace, op: Record, now: float) -> None:
    """Delete an object and every relationship to it."""
    key = ws.find_object(op["identifiers"])
    if key is None:
        return
    obj = ws.objects.pop(key)
    ws.by_cio_object_id.pop(obj["cio_object_id"], None)
    for cio_id in list(ws.object_members.pop(key, set())):
        ws.relations.get(cio_id, {}).pop(key, None)
    for rels in ws.anon_relations.values():
        rels.pop(key, None)


def object_add_relationships(ws: Workspace, op: Record, now: float) -> None:
    """Relate an object (created when given by type and id) to the people listed."""
    key = _object_for(ws, op["identifiers"], now)
    if key is not None:
        object_identify(ws, {**op, "attributes": {}}, now)


def object_delete_relationships(ws: Workspace, op: Record, now: float) -> None:
    """Remove an object's relationships to the people listed."""
    key = ws.find_object(op["identifiers"])
    for rel in op["cio_relationships"] if key is not None else []:
        try:
            kind, value = person_ref(rel.get("identifiers") or {})
        except KeyError:
            continue
        cio_id = ws.find(kind, value)
        if cio_id is not None:
            ws.unrelate(cio_id, key)  # type: ignore[arg-type]


def delivery_event(ws: Workspace, op: Record, now: float) -> None:
    """Log a delivery metric (opened/converted/delivered)."""
    ws.deliveries.append(
        {
            "delivery_id": (op.get("identifiers") or {}).get("id"),
            "name": op.get("name"),
            "attributes": op.get("attributes") or {},
            "at": now,
        }
    )


def segment_members(ws: Workspace, op: Record, now: float) -> None:
    """Add or remove people (by `id_type`) in an existing manual segment; unknowns ignored."""
    segment = ws.segments.get(op["segment_id"])
    if segment is None:
        return
    members = segment["members"]
    for value in op["ids"]:
        cio_id = ws.find(op["id_type"], value)
        if cio_id is None:
            continue
        if op["action"] == "add_customers":
            members[cio_id] = None
        else:
            members.pop(cio_id, None)
    segment["updated_at"] = int(now)


def segment_create(ws: Workspace, op: Record, now: float) -> None:
    """Create an empty manual segment with the next id."""
    seg_id = ws.next_id("segment")
    ws.segments[seg_id] = {
        "id": seg_id,
        "deduplicate_id": f"{seg_id}:{int(now)}",
        "name": op["name"],
        "description": op.get("description") or "",
        "state": "finished",
        "progress": None,
        "type": "manual",
        "tags": None,
        "created_at": int(now),
        "updated_at": int(now),
        "members": {},
    }


def segment_delete(ws: Workspace, op: Record, now: float) -> None:
    """Delete a segment."""
    ws.segments.pop(op["segment_id"], None)


def collection_create(ws: Workspace, op: Record, now: float) -> None:
    """Create a collection with the next id."""
    coll_id = ws.next_id("collection")
    ws.collections[coll_id] = {
        "id": coll_id,
        "name": op["name"],
        "data": op["data"],
        "created_at": int(now),
        "updated_at": int(now),
    }


def collection_update(ws: Workspace, op: Record, now: float) -> None:
    """Rename a collection and/or replace its contents."""
    coll = ws.collections.get(op["collection_id"])
    if coll is None:
        return
    for name in ("name", "data"):
        if name in op:
            coll[name] = op[name]
    coll["updated_at"] = int(now)


def collection_delete(ws: Workspace, op: Record, now: float) -> None:
    """Delete a collection."""
    ws.collections.pop(op["collection_id"], None)


APPLIERS: dict[tuple[str, str], Applier] = {
    ("person", "identify"): person_identify,
    ("person", "delete"): person_delete,
    ("person", "suppress"): person_suppress,
    ("person", "unsuppress"): person_unsuppress,
    ("person", "event"): person_event,
    ("person", "page"): person_event,
    ("person", "screen"): person_event,
    ("person", "add_relationships"): person_add_relationships,
    ("person", "delete_relationships"): person_delete_relationships,
    ("person", "add_device"): person_add_device,
    ("person", "delete_device"): person_delete_device,
    ("person", "merge"): person_merge,
    ("object", "identify"): object_identify,
    ("object", "identify_anonymous"): object_identify_anonymous,
    ("object", "delete"): object_delete,
    ("object", "add_relationships"): object_add_relationships,
    ("object", "delete_relationships"): object_delete_relationships,
    ("delivery", "event"): delivery_event,
    ("anonymous", "event"): anonymous_event,
    ("segment", "add_customers"): segment_members,
    ("segment", "remove_customers"): segment_members,
    ("segment", "create"): segment_create,
    ("segment", "delete"): segment_delete,
    ("collection", "create"): collection_create,
    ("collection", "update"): collection_update,
    ("collection", "delete"): collection_delete,
}


def apply_ops(ws: Workspace, ops: list[Record], now: float) -> None:
    """Apply operations in order."""
    for op in ops:
        APPLIERS[op["type"], op["action"]](ws, op, now)
