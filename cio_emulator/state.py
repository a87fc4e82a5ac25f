"""The emulated workspace: plain dicts with their indexes, and a JSON snapshot of them.

People are keyed by `cio_id` (generated `e` + 7 hex digits), with indexes by `id`, lower-cased
`email` and `phone`. A person's identifiers are kept apart from `attributes`. Objects are keyed
by `"<object_type_id>:<object_id>"` (the type id holds no colon). Relationships are kept per
person and per anonymous id; suppressions are records of the blocked identifiers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

PERSON_KINDS = ("id", "email", "phone", "cio_id")

Record = dict[str, Any]


def object_key(object_type_id: str, object_id: str) -> str:
    """The workspace key of an object."""
    return f"{object_type_id}:{object_id}"


def block_key(kind: str, value: str) -> str:
    """The key under which an identifier is blocked by a suppression."""
    return f"{kind}:{value.lower() if kind == 'email' else value}"


@dataclass
class Workspace:
    """Everything the emulated workspace holds; mutated only by `apply.py`."""

    environment_id: int = 1
    counters: dict[str, int] = field(default_factory=dict)
    people: dict[str, Record] = field(default_factory=dict)
    by_id: dict[str, str] = field(default_factory=dict)
    by_email: dict[str, str] = field(default_factory=dict)
    by_phone: dict[str, str] = field(default_factory=dict)
    device_owner: dict[str, str] = field(default_factory=dict)
    suppressions: list[Record] = field(default_factory=list)
    blocked: set[str] = field(default_factory=set)
    objects: dict[str, Record] = field(default_factory=dict)
    by_cio_object_id: dict[str, str] = field(default_factory=dict)
    relations: dict[str, dict[str, Record]] = field(default_factory=dict)
    object_members: dict[str, set[str]] = field(default_factory=dict)
    anon_relations: dict[str, dict[str, Record]] = field(default_factory=dict)
    events: list[Record] = field(default_factory=list)
    event_ids: set[str] = field(default_factory=set)
    deliveries: list[Record] = field(default_factory=list)
    segments: dict[int, Record] = field(default_factory=dict)
    collections: dict[int, Record] = field(default_factory=dict)

    def next_id(self, counter: str) -> int:
        """The next value of a named counter, starting at 1."""
        value = self.counters.get(counter, 0) + 1
        self.counters[counter] = value
        return value

    def __post_init__(self) -> None:
        self._indexes = {"id": self.by_id, "email": self.by_email, "phone": self.by_phone}

    def index(self, kind: str) -> dict[str, str]:
        """The identifier index for `id`, `email` or `phone`."""
        return self._indexes[kind]

    def find(self, kind: str, value: Any) -> str | None:
        """The cio_id of the person with this identifier, or None."""
        if not isinstance(value, str):
            value = str(value) if isinstance(value, int) and kind == "id" else None
            if value is None:
                return None
        if kind == "id":
            return self.by_id.get(value)
        if kind == "email":
            return self.by_email.get(value.lower())
        if kind == "cio_id":
            return value if value in self.people else None
        return self._indexes[kind].get(value)

    def is_blocked(self, kind: str, value: Any) -> bool:
        """Whether a suppression blocks this identifier."""
        return (
            bool(self.blocked) and isinstance(value, str) and block_key(kind, value) in self.blocked
        )

    def find_object(self, identifiers: Record) -> str | None:
        """The key of the object named by `{object_type_id, object_id}` or `{cio_object_id}`."""
        if "cio_object_id" in identifiers:
            return self.by_cio_object_id.get(str(identifiers["cio_object_id"]))
        key = object_key(str(identifiers["object_type_id"]), str(identifiers["object_id"]))
        return key if key in self.objects else None

    def to_snapshot(self) -> Record:
        """The whole workspace as JSON-ready data (indexes are rebuilt on load)."""
        return {
            "environment_id": self.environment_id,
            "counters": self.counters,
            "people": list(self.people.values()),
            "suppressions": self.suppressions,
            "objects": list(self.objects.values()),
            "relations": self.relations,
            "anon_relations": self.anon_relations,
            "events": self.events,
            "event_ids": sorted(self.event_ids),
            "deliveries": self.deliveries,
            "segments": list(self.segments.values()),
            "collections": list(self.collections.values()),
        }

    @classmethod
    def from_snapshot(cls, data: Record) -> Workspace:
        """Rebuild a workspace and its indexes from `to_snapshot` output."""
        ws = cls(environment_id=data["environment_id"], counters=data["counters"])
        for person in data["people"]:
            ws.add_person(person)
        for record in data["suppressions"]:
            ws.add_suppression(record)
        for obj in data["objects"]:
            ws.add_object(obj)
        for cio_id, rels in data["relations"].items():
            for key, attrs in rels.items():
                ws.relate(cio_id, key, attrs)
        ws.anon_relations = data["anon_relations"]
        ws.events, ws.event_ids = data["events"], set(data["event_ids"])
        ws.deliveries = data["deliveries"]
        ws.segments = {segment["id"]: segment for segment in data["segments"]}
        ws.collections = {coll["id"]: coll for coll in data["collections"]}
        return ws

    def add_person(self, person: Record) -> None:
        """Store a person record and index its identifiers and devices."""
        cio_id = person["cio_id"]
        self.people[cio_id] = person
        for kind in ("id", "email", "phone"):
            if person.get(kind):
                self.set_index(kind, person[kind], cio_id)
        for token in person["devices"]:
            self.device_owner[token] = cio_id

    def set_index(self, kind: str, value: str, cio_id: str | None) -> None:
        """Point an identifier at a person, or drop it when `cio_id` is None."""
        key = value.lower() if kind == "email" else value
        if cio_id is None:
            self._indexes[kind].pop(key, None)
        else:
            self._indexes[kind][key] = cio_id

    def add_suppression(self, record: Record) -> None:
        """Block every identifier of a suppression record."""
        self.suppressions.append(record)
        for kind in PERSON_KINDS:
            if record.get(kind):
                self.blocked.add(block_key(kind, record[kind]))

    def add_object(self, obj: Record) -> None:
        """Store an object record and index its cio_object_id."""
        key = object_key(obj["object_type_id"], obj["object_id"])
        self.objects[key] = obj
        self.by_cio_object_id[obj["cio_object_id"]] = key

    def relate(self, cio_id: str, key: str, attrs: Record) -> None:
        """Store a person-object relationship with its attributes."""
        self.relations.setdefault(cio_id, {})[key] = attrs
        self.object_members.setdefault(key, set()).add(cio_id)

    def unrelate(self, cio_id: str, key: str) -> None:
        """Remove a person-object relationship if it exists."""
        self.relations.get(cio_id, {}).pop(key, None)
        self.object_members.get(key, set()).discard(cio_id)
