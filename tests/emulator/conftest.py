"""Fixtures: one emulator per module on a real loopback port, reset before each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from emulator_client import CONFIG, Api

from connectors.customerio.emulator import EmulatorHandle, start_in_thread


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorHandle]:
    handle = start_in_thread(CONFIG)
    yield handle
    handle.stop()


@pytest.fixture
def api(server: EmulatorHandle) -> Api:
    client = Api(server.url)
    client.post("/_emulator/reset")
    return client
