"""Operation building: the spliced fast path for a person's first delivery gives the very bytes
the general builder gives, for any payload; records it cannot splice take the general path."""

from __future__ import annotations

import functools
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.customerio.operations import Rejection, build, encode
from engine import records
from engine.config import PersonSync
from engine.destination import PlannedRecord

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["null", "nullable", '"_update":', "ü€😀", ',"r":{}}']),
)
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=3))
ATTRIBUTES = st.dictionaries(st.text(min_size=1, max_size=12), VALUES, max_size=8)
KEYS = st.one_of(
    st.text(min_size=1, max_size=60), st.just("cio_abc"), st.text(min_size=38, max_size=45)
)


@functools.cache
def person_sync(behavior: str, identifier: str) -> PersonSync:
    return PersonSync(
        name="people",
        object="person",
        behavior=behavior,
        source="s",
        workspace="w",
        sql="select 1",
        key="id",
        identifier=identifier,
    )


def general(sync: PersonSync, record: PlannedRecord) -> bytes | str | None:
    built = build(sync, record)
    if isinstance(built, Rejection):
        return built.reason
    return None if built is None else orjson.dumps(built)


def encoded(sync: PersonSync, record: PlannedRecord) -> bytes | str | None:
    out = encode(sync, [record])
    if out.items:
        return out.items[0][1]
    if out.rejected:
        return out.rejected[0][1]
    return None


@settings(max_examples=200, deadline=None)
@given(
    attrs=ATTRIBUTES,
    key=KEYS,
    behavior=st.sampled_from(["upsert", "update_only", "mirror"]),
    identifier=st.sampled_from(["id", "email", "cio_id"]),
)
def test_spliced_first_delivery_equals_the_general_builder(
    attrs: dict[str, Any], key: str, behavior: str, identifier: str
) -> None:
    sync = person_sync(behavior, identifier)
    payload = records.canonical({"a": attrs, "r": {}}).decode()
    record = PlannedRecord(1, "add", key, payload, None)
    assert encoded(sync, record) == general(sync, record)


def test_a_long_value_takes_the_general_path_and_is_rejected() -> None:
    sync = person_sync("upsert", "id")
    payload = records.canonical({"a": {"bio": "x" * 1001}, "r": {}}).decode()
    out = encode(sync, [PlannedRecord(7, "add", "u1", payload, None)])
    assert out.items == []
    assert out.rejected == [
        (7, "attribute 'bio' is 1001 bytes; Customer.io takes at most 1000 bytes a value")
    ]
