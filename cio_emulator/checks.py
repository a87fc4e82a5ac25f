"""Customer.io's documented limits applied to one operation (limits.py holds the numbers).

Sizes are UTF-8 bytes; a non-string value is measured as compact JSON. Exactly at a limit
passes, one byte over fails. Each check returns `(reason, field, message)` or None.
"""

from __future__ import annotations

from typing import Any

import orjson

from cio_emulator.limits import (
    MAX_ATTRIBUTE_NAME_BYTES,
    MAX_ATTRIBUTE_VALUE_BYTES,
    MAX_ATTRIBUTES_PER_CALL,
    MAX_EVENT_DATA_BYTES,
    MAX_EVENT_NAME_BYTES,
    MAX_ID_BYTES,
)

Problem = tuple[str, str, str]

_ONE_IDENTIFIER = frozenset({"id", "email", "phone", "cio_id"})


def byte_size(value: Any) -> int:
    """UTF-8 bytes of a string, or of the compact JSON of any other value."""
    if isinstance(value, str):
        return len(value) if value.isascii() else len(value.encode())
    return len(orjson.dumps(value))


def _fits(value: str, limit: int) -> bool:
    """Whether a string is at most `limit` UTF-8 bytes (4 bytes a character at most)."""
    return len(value) * 4 <= limit or len(value.encode()) <= limit


def _value_too_long(value: Any) -> bool:
    if isinstance(value, str):
        return not _fits(value, MAX_ATTRIBUTE_VALUE_BYTES)
    if value is None or isinstance(value, bool | int | float):
        return False
    return byte_size(value) > MAX_ATTRIBUTE_VALUE_BYTES


def _name_problem(field: str) -> Problem:
    return (
        "attribute_name_too_long",
        field,
        f"attribute names cannot be longer than {MAX_ATTRIBUTE_NAME_BYTES} bytes",
    )


def check_attributes(attrs: Any, field: str, op_size: int | None = None) -> Problem | None:
    """At most 300 attributes, names of 150 bytes, values of 1000 bytes.

    `op_size` (bytes of the whole operation) skips checks that cannot fail: no name or value
    is longer than the operation that holds it.
    """
    if not isinstance(attrs, dict) or not attrs:
        return None
    if len(attrs) > MAX_ATTRIBUTES_PER_CALL:
        return (
            "too_many_attributes",
            field,
            f"{len(attrs)} attributes in one call; at most {MAX_ATTRIBUTES_PER_CALL}",
        )
    if op_size is not None and op_size <= MAX_ATTRIBUTE_NAME_BYTES:
        return None
    values = op_size is None or op_size > MAX_ATTRIBUTE_VALUE_BYTES
    short = MAX_ATTRIBUTE_NAME_BYTES // 4  # names this long cannot exceed the limit
    for name, value in attrs.items():
        if len(name) > short and not _fits(name, MAX_ATTRIBUTE_NAME_BYTES):
            return _name_problem(field)
        if values and _value_too_long(value):
            return (
                "attribute_value_too_long",
                f"{field}.{name}",
                f"value for attribute '{name}' cannot be longer than "
                f"{MAX_ATTRIBUTE_VALUE_BYTES} bytes",
            )
    return None


def check_id(value: Any, field: str) -> Problem | None:
    """An id or object_id of at most 150 bytes."""
    if isinstance(value, str) and not _fits(value, MAX_ID_BYTES):
        return (
            "identifier_too_long",
            field,
            f"identifiers cannot be longer than {MAX_ID_BYTES} bytes",
        )
    return None


def check_person_identifiers(identifiers: Any, field: str = "identifiers") -> Problem | None:
    """Exactly one of id/email/phone/cio_id, with an id of at most 150 bytes."""
    if not isinstance(identifiers, dict):
        return ("invalid_identifiers", field, "identifiers must be an object")
    if len(identifiers) != 1 or next(iter(identifiers)) not in _ONE_IDENTIFIER:
        return (
            "invalid_identifiers",
            field,
            "exactly one of id, email, phone or cio_id is required",
        )
    return check_id(identifiers.get("id"), f"{field}.id")


def check_event(name: Any, data: Any, field: str = "attributes") -> Problem | None:
    """An event name of at most 100 bytes and data of at most 100,000 bytes."""
    if isinstance(name, str) and not _fits(name, MAX_EVENT_NAME_BYTES):
        return (
            "event_name_too_long",
            "name",
            f"event names cannot be longer than {MAX_EVENT_NAME_BYTES} bytes",
        )
    if data and byte_size(data) > MAX_EVENT_DATA_BYTES:
        return (
            "event_data_too_large",
            field,
            f"event data cannot be larger than {MAX_EVENT_DATA_BYTES} bytes",
        )
    return None


def _relationship_problems(rels: Any, person_side: bool) -> Problem | None:
    for index, rel in enumerate(rels if isinstance(rels, list) else []):
        identifiers = rel.get("identifiers") if isinstance(rel, dict) else None
        field = f"cio_relationships.{index}"
        if not isinstance(identifiers, dict):
            return ("invalid_identifiers", f"{field}.identifiers", "identifiers are required")
        problem = (
            check_person_identifiers(identifiers, f"{field}.identifiers")
            if person_side
            else check_id(identifiers.get("object_id"), f"{field}.identifiers.object_id")
        )
        problem = problem or check_attributes(
            rel.get("relationship_attributes"), f"{field}.relationship_attributes"
        )
        if problem:
            return problem
    return None


def _person_op(op: dict[str, Any], size: int | None) -> Problem | None:
    action = op["action"]
    if action == "merge":
        return check_person_identifiers(op.get("primary"), "primary") or check_person_identifiers(
            op.get("secondary"), "secondary"
        )
    problem = check_person_identifiers(op.get("identifiers"))
    if problem or action in ("delete", "suppress", "unsuppress", "delete_device", "add_device"):
        return problem
    if action in ("event", "page", "screen"):
        return check_event(op.get("name"), op.get("attributes"))
    if action == "identify":
        problem = check_attributes(op.get("attributes"), "attributes", size)
    return problem or _relationship_problems(op.get("cio_relationships"), person_side=False)


def _object_op(op: dict[str, Any], size: int | None) -> Problem | None:
    identifiers = op.get("identifiers") or {}
    problem = check_id(identifiers.get("object_id"), "identifiers.object_id")
    problem = problem or check_attributes(op.get("attributes"), "attributes", size)
    if problem or op["action"] == "identify_anonymous":
        return problem
    return _relationship_problems(op.get("cio_relationships"), person_side=True)


def check_operation(op: dict[str, Any], size: int | None = None) -> Problem | None:
    """The first documented limit or identifier rule a schema-valid v2 operation breaks.

    `size` is the operation's compact JSON size when known (it lets checks be skipped).
    """
    kind = op["type"]
    if kind == "person":
        return _person_op(op, size)
    if kind == "object":
        return _object_op(op, size)
    return None
