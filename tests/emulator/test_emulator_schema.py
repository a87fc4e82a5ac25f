"""The OpenAPI document: every v2 example passes after the patches; each patch is needed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cio_emulator.schema import (
    OPERATION_SCHEMAS,
    PATCHES,
    SPEC_PATH,
    build_validators,
    compile_schema,
    load_document,
    resolve,
)
from cio_emulator.track_v2 import check_v2

V2_PATHS = ("/api/v2/entity", "/api/v2/batch")


def _request_schema(document: dict[str, Any], path: str) -> dict[str, Any]:
    return document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]


def _walk_examples(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(pointer, schema node) for every node with an `example` reachable from the v2 bodies."""
    found, seen = [], set()

    def walk(node: Any, pointer: str) -> None:
        if isinstance(node, list):
            for index, item in enumerate(node):
                walk(item, f"{pointer}/{index}")
        if not isinstance(node, dict):
            return
        ref = node.get("$ref")
        if isinstance(ref, str) and ref not in seen:
            seen.add(ref)
            walk(resolve(document, ref[1:]), ref[1:])
        if "example" in node:
            found.append((pointer, node))
        for key, value in node.items():
            if key != "example":
                walk(value, f"{pointer}/{key}")

    for path in V2_PATHS:
        walk(_request_schema(document, path), path)
    return found


PATCHED = load_document()
EXAMPLES = _walk_examples(PATCHED)


def test_examples_were_found() -> None:
    names = {pointer.rsplit("/", 1)[-1] for pointer, _ in EXAMPLES}
    assert {name for name in OPERATION_SCHEMAS.values()} <= names


@pytest.mark.parametrize(("pointer", "node"), EXAMPLES, ids=[p for p, _ in EXAMPLES])
def test_every_example_is_valid_after_patches(pointer: str, node: dict[str, Any]) -> None:
    validator = compile_schema(PATCHED, node)
    assert validator.is_valid(node["example"]), list(validator.iter_errors(node["example"]))


def test_code_samples_pass_the_emulator() -> None:
    entity = json.loads(PATCHED["paths"]["/api/v2/entity"]["post"]["x-codeSamples"][0]["source"])
    assert check_v2(entity) is None
    batch = json.loads(PATCHED["paths"]["/api/v2/batch"]["post"]["x-codeSamples"][0]["source"])
    assert all(check_v2(op) is None for op in batch["batch"])


def test_operation_examples_pass_the_emulator() -> None:
    for name in OPERATION_SCHEMAS.values():
        example = PATCHED["components"]["schemas"][name]["example"]
        assert check_v2(example) is None, name


def test_file_on_disk_is_unchanged_by_loading() -> None:
    before = SPEC_PATH.read_bytes()
    load_document()
    assert SPEC_PATH.read_bytes() == before
    assert load_document(patched=False) != PATCHED


def test_every_patch_has_a_reason() -> None:
    assert all(p.pointer.startswith("/") and p.change and p.why for p in PATCHES)


# One valid request per defect, rejected by the unpatched document.
RELATION = {
    "type": "object",
    "identifiers": {"object_type_id": "1", "object_id": "acme"},
    "action": "add_relationships",
    "cio_relationships": [{"identifiers": {"id": "42"}}],
}
MERGE = {"type": "person", "action": "merge", "primary": {"id": "42"}, "secondary": {"id": "43"}}
TOPIC_NULL = {
    "type": "person",
    "identifiers": {"id": "42"},
    "action": "identify",
    "attributes": {"cio_subscription_preferences": {"topics": {"topic_1": None}}},
}


def _valid(document: dict[str, Any], key: tuple[str, str], op: dict[str, Any]) -> bool:
    return bool(build_validators(document)[key].is_valid(op))


@pytest.mark.parametrize("email", [False, True])
def test_patch_relationship_required(email: bool) -> None:
    op = RELATION
    if email:
        op = {**RELATION, "cio_relationships": [{"identifiers": {"email": "a@b.co"}}]}
    unpatched = load_document(patched=False)
    assert not _valid(unpatched, ("object", "add_relationships"), op)
    assert _valid(PATCHED, ("object", "add_relationships"), op)


def test_patch_merge_example() -> None:
    unpatched = load_document(patched=False)
    example = unpatched["components"]["schemas"]["person_merge"]["example"]
    assert not _valid(unpatched, ("person", "merge"), example)
    patched_example = PATCHED["components"]["schemas"]["person_merge"]["example"]
    assert patched_example == MERGE | {"secondary": {"id": "known-user-456"}}
    assert _valid(PATCHED, ("person", "merge"), patched_example)


def test_patch_topic_null() -> None:
    assert not _valid(load_document(patched=False), ("person", "identify"), TOPIC_NULL)
    assert _valid(PATCHED, ("person", "identify"), TOPIC_NULL)


def test_ambiguous_relationship_still_rejected() -> None:
    op = {**RELATION, "cio_relationships": [{"identifiers": {"id": "42", "email": "a@b.co"}}]}
    assert not _valid(PATCHED, ("object", "add_relationships"), op)
