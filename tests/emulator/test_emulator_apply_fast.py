"""The fast identify path (`apply._identify_by_id`) leaves the workspace exactly as the rules do.

Random sequences of person operations over a few ids and emails (mixed case, adopted, taken
by another person, suppressed, removed by null, subscription preferences, timestamps) are
applied twice: through `apply_ops`, and with every identify sent to `identify_by_the_rules`.
The two workspaces must be identical, indexes included.
"""

from __future__ import annotations

from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from cio_emulator import apply
from cio_emulator.state import Workspace

IDS = st.sampled_from(["1", "2", "3", "u-4"])
EMAILS = st.sampled_from(["a@x.io", "A@x.io", "b@x.io", "c@x.io", ""])
NAMES = st.sampled_from(
    [
        "plan",
        "score",
        "email",
        "id",
        "phone",
        "_update",
        "_timestamp",
        "anonymous_id",
        "cio_id",
        "cio_relationships",
        "cio_subscription_preferences.topics.t1",
        "cio_subscription_preferences",
        "cio_subscription_preferences/",
    ]
)
VALUES = st.one_of(st.none(), st.booleans(), st.integers(0, 3), st.sampled_from(["x", "", "2"]))


PLAIN_NAMES = st.sampled_from(["plan", "score"])
PLAIN_VALUES = st.sampled_from(["x", "", 0, 1, True])


@st.composite
def attributes(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly what the fast path takes (plain names and values, an email), sometimes not."""
    if draw(st.integers(0, 3)):
        attrs = draw(st.dictionaries(PLAIN_NAMES, PLAIN_VALUES, max_size=2))
    else:
        attrs = draw(st.dictionaries(NAMES, VALUES, max_size=4))
    if draw(st.integers(0, 3)):
        attrs["email"] = draw(EMAILS) if draw(st.integers(0, 5)) else draw(VALUES)
    if "_timestamp" in attrs:  # a string one breaks the rules too (compared with integers)
        attrs["_timestamp"] = draw(st.integers(1, 3))
    return attrs


@st.composite
def identifiers(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["id", "id", "id", "email", "cio_id"]))
    if kind == "id":
        return {"id": draw(IDS | st.integers(1, 2))}
    if kind == "email":
        return {"email": draw(EMAILS)}
    return {"cio_id": draw(st.sampled_from(["e0000001", "e0000002", "e0000009"]))}


@st.composite
def operations(draw: st.DrawFn) -> dict[str, Any]:
    action = draw(st.sampled_from(["identify"] * 6 + ["suppress", "unsuppress", "delete"]))
    op: dict[str, Any] = {"type": "person", "action": action, "identifiers": draw(identifiers())}
    if action == "identify":
        if draw(st.integers(0, 9)):
            op["attributes"] = draw(attributes())
        if draw(st.integers(0, 5)) == 0:
            op["timestamp"] = draw(st.integers(1, 3))
        if draw(st.integers(0, 9)) == 0:
            op["cio_relationships"] = [{"identifiers": {"object_type_id": "1", "object_id": "a"}}]
    return op


def _by_the_rules(ws: Workspace, op: dict[str, Any], now: float) -> None:
    if (op["type"], op["action"]) == ("person", "identify"):
        apply.identify_by_the_rules(ws, op)
    else:
        apply.APPLIERS[op["type"], op["action"]](ws, op, now)


def _state(ws: Workspace) -> dict[str, Any]:
    return {
        **ws.to_snapshot(),
        "indexes": (ws.by_id, ws.by_email, ws.by_phone, ws.blocked, ws.relations),
    }


ADOPT_BY_CASE = [
    {"type": "person", "action": "identify", "identifiers": {"id": "1"}, "attributes": a}
    for a in ({"email": "a@x.io"}, {"email": "A@x.io"})
]


@settings(max_examples=800, deadline=None)
@given(st.lists(operations(), max_size=14))
@example(ADOPT_BY_CASE)
@example([ADOPT_BY_CASE[0], {**ADOPT_BY_CASE[1], "identifiers": {"id": "2"}}])
def test_fast_identify_equals_the_rules(ops: list[dict[str, Any]]) -> None:
    fast, reference = Workspace(), Workspace()
    for op in ops:
        apply.apply_ops(fast, [op], 1.0)
        _by_the_rules(reference, op, 1.0)
        assert _state(fast) == _state(reference)


def test_the_engine_shape_takes_the_fast_path() -> None:
    ws = Workspace()
    op = {
        "type": "person",
        "action": "identify",
        "identifiers": {"id": "u1"},
        "attributes": {"email": "User1@example.com", "plan": "pro", "score": 1},
    }
    assert apply._identify_by_id(ws, op)
    assert apply._identify_by_id(ws, op)  # and the update
    person = ws.people[ws.by_id["u1"]]
    assert person["email"] == "User1@example.com" and ws.by_email["user1@example.com"]
    assert person["attributes"] == {"plan": "pro", "score": 1}
