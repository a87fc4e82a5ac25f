"""The batch check (`check_ops`) finds exactly what the per-operation check (`check_v2`) finds.

`check_ops` validates the operations of one (type, action) with one call, first with a
fast-accept schema that also implies the documented limits; these tests pin that it never
accepts what the per-operation path rejects, and reports the same problem for each operation.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cio_emulator.limits import MAX_ENTITY_BYTES
from cio_emulator.schema import FAST_ACCEPT, OPERATION_SCHEMAS, batch_validators
from cio_emulator.track_v2 import check_ops, check_v2

FOUR_BYTES = "\U0001f600"  # one code point, four UTF-8 bytes

# Lengths around the limits: 37/38 code points (150-byte names and ids), 250/251 (1000-byte
# values), in ASCII and in four-byte characters.
TEXT = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["id", "email", "plan", "a\nb", "", "cio_subscription_preferences.topics.t"]),
    st.builds(
        lambda n, c: c * n,
        st.sampled_from([36, 37, 38, 39, 149, 150, 151, 249, 250, 251, 1001]),
        st.sampled_from(["a", "é", FOUR_BYTES, "\n"]),
    ),
)
INTEGERS = st.integers(-(2**63), 2**64 - 1)  # what orjson parses as an int
SCALAR = st.one_of(st.none(), st.booleans(), INTEGERS, st.floats(allow_nan=False), TEXT)
VALUE = st.recursive(
    SCALAR, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3)
)
ATTRIBUTES = st.dictionaries(TEXT, VALUE, max_size=6) | st.builds(
    lambda n: {f"a{i}": i for i in range(n)}, st.sampled_from([299, 300, 301])
)
IDENTIFIERS = st.one_of(
    st.dictionaries(st.sampled_from(["id", "email", "phone", "cio_id", "x"]), SCALAR, max_size=2),
    st.builds(lambda v: {"id": v}, TEXT),
    st.just([]),
)
RELATIONSHIPS = st.lists(
    st.fixed_dictionaries(
        {"identifiers": st.dictionaries(st.sampled_from(["object_type_id", "object_id"]), TEXT)},
        optional={"relationship_attributes": ATTRIBUTES},
    ),
    max_size=2,
)
PAIRS = st.sampled_from(
    [*FAST_ACCEPT, ("person", "event"), ("object", "identify"), ("person", "nope"), (1, "x")]
)


@st.composite
def operations(draw: st.DrawFn) -> Any:
    kind, action = draw(PAIRS)
    op: dict[str, Any] = {"type": kind, "action": action, "identifiers": draw(IDENTIFIERS)}
    for key, strategy in (
        ("attributes", ATTRIBUTES | SCALAR),
        ("cio_relationships", RELATIONSHIPS),
        ("name", TEXT),
        ("timestamp", INTEGERS),
    ):
        if draw(st.booleans()):
            op[key] = draw(strategy)
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from([None, "op", [op], 3]))
    return op


SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.lists(operations(), min_size=1, max_size=8))
def test_batch_check_agrees_with_each_operation(ops: list[Any]) -> None:
    expected = {i: p for i, op in enumerate(ops) if (p := check_v2(op)) is not None}
    assert check_ops(ops) == expected
    assert list(check_ops(ops)) == sorted(expected)


@SETTINGS
@given(operations())
def test_fast_accept_implies_every_check_passes(op: Any) -> None:
    for key in OPERATION_SCHEMAS:
        checker = batch_validators(key)
        if checker.fast is not None and checker.fast.is_valid([op]):
            assert key == (op["type"], op["action"])
            assert check_v2(op) is None, op


def _identify(attributes: dict[str, Any], id_: str = "42") -> dict[str, Any]:
    return {
        "type": "person",
        "action": "identify",
        "identifiers": {"id": id_},
        "attributes": attributes,
    }


def test_limits_at_the_edge_in_four_byte_characters() -> None:
    name_ok, name_long = FOUR_BYTES * 37, FOUR_BYTES * 38  # 148 and 152 bytes
    value_ok, value_long = FOUR_BYTES * 250, FOUR_BYTES * 251  # 1000 and 1004 bytes
    ops = [
        _identify({name_ok: 1, "v": value_ok}, id_=FOUR_BYTES * 37),
        _identify({name_long: 1}),
        _identify({"v": value_long}),
        _identify({}, id_=FOUR_BYTES * 38),
        _identify({"plan": "pro"}),
    ]
    problems = check_ops(ops)
    assert {i: p[0] for i, p in problems.items()} == {
        1: "attribute_name_too_long",
        2: "attribute_value_too_long",
        3: "identifier_too_long",
    }
    assert problems == {i: check_v2(op) for i, op in enumerate(ops) if check_v2(op)}


def test_a_valid_batch_passes_the_fast_validator() -> None:
    ops = [_identify({"email": f"u{i}@example.com", "score": i, "ok": True}) for i in range(50)]
    fast = batch_validators(("person", "identify")).fast
    assert fast is not None and fast.is_valid(ops)
    assert check_ops(ops) == {}


def test_the_largest_fast_accepted_operation_fits_the_size_limit() -> None:
    escaped = "\x00"  # one code point, six bytes in JSON (\u0000)
    op = {
        "type": "person",
        "action": "identify",
        "identifiers": {"cio_id": escaped * 250},
        "attributes": {escaped * 36 + chr(i): escaped * 250 for i in range(1, 17)},
        "timestamp": -(2**63),
        "cio_relationships": [],
    }
    fast = batch_validators(("person", "identify")).fast
    assert fast is not None and fast.is_valid([op])
    assert 29_000 < len(orjson.dumps(op)) <= MAX_ENTITY_BYTES
    wider = {**op, "attributes": {**op["attributes"], "seventeenth": 1}}
    assert not fast.is_valid([wider])
    extra = {**op, "attributes": {}, "note": "n" * 40_000}  # a key the schema does not name
    assert not fast.is_valid([extra])
    assert check_ops([op, wider, extra]) == {2: check_v2(extra)}
    assert check_ops([extra])[0][0] == "too_large"
