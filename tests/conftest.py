"""Shared fixtures: a real emulator over loopback, real DuckDB files, the real PostgreSQL.
The helpers they use live in `tests/support`."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import PG_URL, Project, assert_clean_log, drop_schema, pg_available, private_schema

from cio_emulator import EmulatorConfig, EmulatorHandle, start_in_thread
from engine import records


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The state store: a DuckDB file, then the real PostgreSQL (a fresh schema for each test)."""
    if request.param == "duckdb":
        yield "duckdb:///.sync/state.duckdb"
        return
    if not pg_available():
        pytest.skip("PostgreSQL is not reachable at SYNC_TEST_PG_URL")
    schema = f"cio_sync_test_{os.getpid()}"
    yield private_schema(PG_URL, schema)
    drop_schema(PG_URL, schema)


@pytest.fixture
def emulator(request: pytest.FixtureRequest) -> Iterator[EmulatorHandle]:
    """The emulator; a test module that sets `LOG_BODIES = True` gets a request log that also
    keeps each request's `query` and JSON `body`, to check the operations sent."""
    handle = start_in_thread(
        EmulatorConfig(log_bodies=getattr(request.module, "LOG_BODIES", False))
    )
    yield handle
    handle.stop()



@pytest.fixture
def clean_request_log(emulator: EmulatorHandle) -> Iterator[None]:
    """After the test, assert that the emulator answered every request 2xx without errors."""
    yield
    assert_clean_log(emulator)



@pytest.fixture
def duck_project(tmp_path: Path, emulator: EmulatorHandle) -> Project:
    """A project on a DuckDB state file only: for tests about files, processes and messages,
    where the state store is not the subject."""
    made = Project(tmp_path, emulator, "duckdb:///.sync/state.duckdb")
    made.write_project()
    return made


@pytest.fixture
def project(tmp_path: Path, emulator: EmulatorHandle, state_url: str) -> Project:
    made = Project(tmp_path, emulator, state_url)
    made.write_project()
    return made


@pytest.fixture
def pg_state() -> Iterator[str]:
    """A PostgreSQL state store in a fresh schema of its own."""
    if not pg_available():
        pytest.skip("PostgreSQL is not reachable at SYNC_TEST_PG_URL")
    schema = f"cio_sync_concurrent_{os.getpid()}"
    yield private_schema(PG_URL, schema)
    drop_schema(PG_URL, schema)


@pytest.fixture
def pg_project(tmp_path: Path, emulator: EmulatorHandle, pg_state: str) -> Project:
    made = Project(tmp_path, emulator, pg_state)
    made.write_project()
    return made


@pytest.fixture
def encoded_rows(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """How many rows Python encoded (`engine.records.fingerprint` calls, in this process) since
    the last call."""
    calls = [0]
    original = records.fingerprint

    def counting(encoded: bytes) -> str:
        calls[0] += 1
        return original(encoded)

    monkeypatch.setattr(records, "fingerprint", counting)

    def taken() -> int:
        count, calls[0] = calls[0], 0
        return count

    return taken
