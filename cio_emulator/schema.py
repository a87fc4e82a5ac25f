"""The vendor's Track OpenAPI document, patched in memory, compiled into fast validators.

The document ships in the package (`cio_emulator/specs/`); it is read, deep-copied,
patched with `PATCHES` and never written back. Each v2 operation is validated by the
validator of its `(type, action)` pair (the schema the document's `discriminator` names),
which is faster than trying every branch of the `oneOf` and gives a precise error.

A batch is checked with one call per `(type, action)` it holds, by an array validator whose
`items` is the same schema (an array is valid exactly when each item is); the per-operation
validator names the first error of each operation only when the array fails. For the common
shapes, `FAST_ACCEPT` adds a stricter array validator: items valid under the operation's schema
*and* under constraints that imply every documented limit holds (checks.py) and the operation
size limit, so a batch that passes it needs nothing more. Failing it only sends the batch down
the exact path; a test shows that whatever it accepts, the per-operation checks accept.

`PATCHES` is the one list of the document's defects: each entry is a JSON pointer, the value
set there, and why. A test shows, for each, that the unpatched document rejects a valid
request (or one of its own examples).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema_rs

SPEC_PATH = Path(__file__).resolve().parent / "specs" / "customerio-track-openapi.json"
SCHEMAS = "/components/schemas"


@dataclass(frozen=True)
class Patch:
    """Set `value` at the JSON `pointer` of the loaded document."""

    pointer: str
    value: Any
    change: str
    why: str


_RELATIONSHIP_BRANCHES = f"{SCHEMAS}/v2_cio_relationships/items/properties/identifiers/oneOf"
_WHY_RELATIONSHIP = (
    'the id/email/cio_id branches have no `required`, so {"id": "42"} matches all three '
    "and fails `oneOf`; object add/delete_relationships and the batch example are rejected"
)

PATCHES: tuple[Patch, ...] = (
    Patch(
        f"{_RELATIONSHIP_BRANCHES}/0/required",
        ["id"],
        "require `id` in the id branch",
        _WHY_RELATIONSHIP,
    ),
    Patch(
        f"{_RELATIONSHIP_BRANCHES}/1/required",
        ["email"],
        "require `email` in the email branch",
        _WHY_RELATIONSHIP,
    ),
    Patch(
        f"{_RELATIONSHIP_BRANCHES}/2/required",
        ["cio_id"],
        "require `cio_id` in the cio_id branch",
        _WHY_RELATIONSHIP,
    ),
    Patch(
        f"{SCHEMAS}/person_merge/example/type",
        "person",
        "add `type: person` to the example",
        "the merge example omits `type`, which the schema requires",
    ),
    Patch(
        f"{SCHEMAS}/person_merge/example/action",
        "merge",
        "add `action: merge` to the example",
        "the merge example omits `action`, which the schema requires",
    ),
    Patch(
        f"{SCHEMAS}/cio_subscription_preferences/properties/topics/additionalProperties/type",
        ["boolean", "null"],
        "allow null as a topic preference",
        "the description says empty values fall back to the topic default, but `type: "
        'boolean` rejects {"topic_1": null}',
    ),
)

# (type, action) -> the component schema that validates it.
OPERATION_SCHEMAS: dict[tuple[str, str], str] = {
    ("person", "identify"): "identify_person",
    ("person", "delete"): "person_delete",
    ("person", "suppress"): "person_suppress",
    ("person", "unsuppress"): "person_unsuppress",
    ("person", "event"): "person_event",
    ("person", "page"): "person_page",
    ("person", "screen"): "person_screen",
    ("person", "add_relationships"): "person_add_relationships",
    ("person", "delete_relationships"): "person_delete_relationships",
    ("person", "add_device"): "person_add_device",
    ("person", "delete_device"): "person_delete_device",
    ("person", "merge"): "person_merge",
    ("object", "identify"): "object_identify",
    ("object", "identify_anonymous"): "object_identify_anonymous",
    ("object", "delete"): "object_delete",
    ("object", "add_relationships"): "object_add_relationships",
    ("object", "delete_relationships"): "object_delete_relationships",
    ("delivery", "event"): "delivery_operations",
}


# Sufficient conditions, by (type, action), for `check_v2` to find nothing once the schema
# holds: the limits of `checks.check_operation` and the 32,000-byte operation limit. Lengths
# count code points: at most 4 UTF-8 bytes each, so 37 bounds a 150-byte limit and 250 a
# 1000-byte one, and at most 6 bytes each in JSON (`\u0000`). A name of 38 code points or
# more matches the pattern and is refused (about twice as fast here as `propertyNames`).
# Size: the named keys only, one identifier (a string, per the schema, of at most 250 code
# points), an integer timestamp, no relationships, and at most 16 attributes whose values are
# scalars (a number prints in at most 24 bytes) or strings of at most 250 code points: at most
# about 29,300 bytes (a test builds the largest such operation). Anything else takes the exact
# checks.
_SHORT_NAME, _SHORT_VALUE = {"maxLength": 37}, {"maxLength": 250}
_BOUNDED_ATTRIBUTES = {
    "maxProperties": 16,
    "patternProperties": {"^[\\s\\S]{38}": False},
    "additionalProperties": {"type": ["null", "boolean", "number", "string"], **_SHORT_VALUE},
}
FAST_ACCEPT: dict[tuple[str, str], dict[str, Any]] = {
    ("person", "identify"): {
        "properties": {
            "type": {},
            "action": {},
            "identifiers": {
                "maxProperties": 1,
                "properties": {
                    "id": _SHORT_NAME,
                    "email": _SHORT_VALUE,
                    "phone": _SHORT_VALUE,
                    "cio_id": _SHORT_VALUE,
                },
                "additionalProperties": False,
            },
            "attributes": _BOUNDED_ATTRIBUTES,
            "timestamp": {},
            "cio_relationships": {"maxItems": 0},
        },
        "additionalProperties": False,  # faster here than `propertyNames: {enum: [...]}`
    },
}


def _split(pointer: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in pointer.lstrip("/").split("/")]


def _step(node: Any, key: str) -> Any:
    return node[int(key)] if isinstance(node, list) else node[key]


def apply_patch(document: dict[str, Any], patch: Patch) -> None:
    """Set the patch's value at its pointer; every parent must exist (a moved defect fails)."""
    *parents, last = _split(patch.pointer)
    node: Any = document
    for key in parents:
        node = _step(node, key)
    if isinstance(node, list):
        node[int(last)] = copy.deepcopy(patch.value)
    else:
        node[last] = copy.deepcopy(patch.value)


@cache
def _raw_document() -> dict[str, Any]:
    with SPEC_PATH.open("rb") as handle:
        document: dict[str, Any] = json.load(handle)
    return document


def load_document(patched: bool = True) -> dict[str, Any]:
    """A fresh copy of the vendor document, with `PATCHES` applied unless `patched` is False."""
    document = copy.deepcopy(_raw_document())
    if patched:
        for patch in PATCHES:
            apply_patch(document, patch)
    return document


def resolve(document: dict[str, Any], pointer: str) -> Any:
    """The node at a JSON pointer of `document`."""
    node: Any = document
    for key in _split(pointer):
        node = _step(node, key)
    return node


def compile_schema(document: dict[str, Any], schema: dict[str, Any]) -> Any:
    """A jsonschema-rs validator for `schema`, resolving `#/components/...` in `document`."""
    rooted = {**schema, "components": document["components"]}
    return jsonschema_rs.Draft202012Validator(rooted)


def build_validators(document: dict[str, Any]) -> dict[tuple[str, str], Any]:
    """One compiled validator per (type, action) of the v2 operations."""
    return {
        key: compile_schema(document, {"$ref": f"#{SCHEMAS}/{name}"})
        for key, name in OPERATION_SCHEMAS.items()
    }


@cache
def validators() -> dict[tuple[str, str], Any]:
    """The validators of the patched document, compiled once per process."""
    return build_validators(load_document())


@dataclass(frozen=True)
class BatchValidators:
    """Validators of an array of one (type, action): `exact` is the operation's schema;
    `fast` (None without a `FAST_ACCEPT` entry) also implies the documented limits."""

    exact: Any
    fast: Any


def build_batch_validators(document: dict[str, Any], key: tuple[str, str]) -> BatchValidators:
    """The array validators of one (type, action) of the v2 operations."""
    item = {"$ref": f"#{SCHEMAS}/{OPERATION_SCHEMAS[key]}"}
    fast = FAST_ACCEPT.get(key)
    return BatchValidators(
        exact=compile_schema(document, {"type": "array", "items": item}),
        fast=None
        if fast is None
        else compile_schema(document, {"type": "array", "items": {"allOf": [item, fast]}}),
    )


@cache
def batch_validators(key: tuple[str, str]) -> BatchValidators:
    """The array validators of the patched document for one (type, action), compiled on first
    use and kept for the process."""
    return build_batch_validators(_patched_document(), key)


@cache
def _patched_document() -> dict[str, Any]:
    return load_document()


def first_error(validator: Any, op: Any) -> tuple[str, str] | None:
    """(field, message) of the first schema violation of `op`, or None when it is valid."""
    if validator.is_valid(op):
        return None
    for error in validator.iter_errors(op):
        field = ".".join(str(part) for part in error.instance_path)
        return field, error.message
    return None
