"""The emulator's merge (customerio-api.md §2.5), applied through the one table of appliers: the
primary keeps its attributes and history and folds in the secondary's, which is deleted."""

from __future__ import annotations

from cio_emulator.apply import MERGED_EVENTS_S, apply_ops
from cio_emulator.state import Workspace

NOW = 1_800_000_000.0


def person(identifiers: dict[str, str], attributes: dict[str, object]) -> dict[str, object]:
    return {
        "type": "person",
        "action": "identify",
        "identifiers": identifiers,
        "attributes": attributes,
    }


def event(email: str, name: str, timestamp: float) -> dict[str, object]:
    return {
        "type": "person",
        "action": "event",
        "identifiers": {"email": email},
        "name": name,
        "timestamp": int(timestamp),
    }


def test_the_primary_keeps_its_history_and_gains_the_secondarys() -> None:
    ws = Workspace()
    apply_ops(
        ws,
        [
            person({"email": "old@x.io"}, {"plan": "free", "city": "Oslo"}),
            person({"email": "new@x.io"}, {"plan": "pro"}),
            event("new@x.io", "primary_event", NOW - 10),
            event("old@x.io", "recent", NOW - 86_400),
            event("OLD@x.io", "stale", NOW - MERGED_EVENTS_S - 60),
            {
                "type": "person",
                "action": "add_device",
                "identifiers": {"email": "old@x.io"},
                "device": {"token": "t1", "platform": "ios"},
            },
            {
                "type": "person",
                "action": "merge",
                "primary": {"email": "new@x.io"},
                "secondary": {"email": "old@x.io"},
            },
        ],
        NOW,
    )
    [kept] = ws.people.values()
    assert kept["email"] == "new@x.io"
    assert kept["attributes"] == {"plan": "pro", "city": "Oslo"}  # its own value wins
    assert list(kept["devices"]) == ["t1"]
    assert ws.find("email", "old@x.io") is None
    by_name = {e["name"]: e["person"] for e in ws.events}
    assert by_name == {
        "primary_event": {"email": "new@x.io"},
        "recent": {"email": "new@x.io", "merged_from": {"email": "old@x.io"}},
        "stale": {"email": "OLD@x.io"},  # older than 30 days: left as it was
    }


def test_a_merge_whose_primary_does_not_exist_does_nothing() -> None:
    ws = Workspace()
    apply_ops(
        ws, [person({"email": "old@x.io"}, {"plan": "free"}), event("old@x.io", "e", NOW)], NOW
    )
    merge = {
        "type": "person",
        "action": "merge",
        "primary": {"email": "new@x.io"},
        "secondary": {"email": "old@x.io"},
    }
    apply_ops(ws, [merge], NOW)
    assert [p["email"] for p in ws.people.values()] == ["old@x.io"]
    assert ws.events[0]["person"] == {"email": "old@x.io"}
