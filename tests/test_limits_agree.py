"""The client and the emulator each keep their own copy of Customer.io's documented limits (the
emulator stands in for Customer.io and imports nothing from the client): they must agree, so
that a wrong number shows up here as a disagreement instead of being copied from one to the other."""

from __future__ import annotations

from types import ModuleType

from cio_emulator import limits as emulator_limits
from connectors.customerio import limits as client_limits


def _limits(module: ModuleType) -> dict[str, int]:
    return {name: value for name, value in vars(module).items() if name.startswith("MAX_")}


def test_the_client_and_the_emulator_agree_on_every_limit_both_know() -> None:
    client, emulator = _limits(client_limits), _limits(emulator_limits)
    shared = client.keys() & emulator.keys()
    assert {name: client[name] for name in shared} == {name: emulator[name] for name in shared}


def test_every_limit_the_emulator_enforces_is_known_to_the_client() -> None:
    """The client rejects locally what the emulator would refuse, so it knows every limit."""
    assert _limits(emulator_limits).keys() <= _limits(client_limits).keys()
