"""Persistence in a DuckDB file: across a graceful restart and across a kill -9."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
from emulator_client import CONFIG, Api, api_fixture, identify, server_fixture  # noqa: F401 (fixtures)

from cio_emulator import start_in_thread

REPO = Path(__file__).resolve().parents[2]


def _everything(api: Api) -> None:
    """One change of every kind of data."""
    seg = api.post("/v1/segments", {"segment": {"name": "s"}}).body["segment"]["id"]
    api.batch(
        identify("1", plan="a"),
        identify("2", plan="b"),
        {
            "type": "person",
            "identifiers": {"id": "1"},
            "action": "event",
            "name": "e",
            "id": "01EVT",
        },
        {
            "type": "object",
            "identifiers": {"object_type_id": "1", "object_id": "acme"},
            "action": "identify",
            "attributes": {"n": 1},
            "cio_relationships": [{"identifiers": {"id": "1"}}],
        },
    )
    api.put("/api/v1/customers/1/devices", {"device": {"id": "tok", "platform": "ios"}})
    api.post(f"/api/v1/segments/{seg}/add_customers", {"ids": ["1"]})
    api.post("/api/v1/customers/2/suppress")
    api.post("/v1/collections", {"name": "c", "data": [{"a": 1}]})


VIEWS = (
    "people",
    "objects",
    "relationships",
    "events",
    "segments",
    "collections",
    "suppressions",
    "devices",
)


def _state(api: Api) -> dict[str, object]:
    return {name: api.view(name) for name in VIEWS} | {
        "region": api.get("/api/v1/accounts/region").body["environment_id"]
    }


def test_restart_keeps_everything(tmp_path: Path) -> None:
    config = replace(CONFIG, db_path=tmp_path / "emulator.duckdb")
    handle = start_in_thread(config)
    api = Api(handle.url)
    _everything(api)
    before = _state(api)
    handle.stop()
    handle = start_in_thread(config)
    try:
        after = _state(Api(handle.url))
        Api(handle.url).batch(
            {
                "type": "person",
                "identifiers": {"id": "1"},
                "action": "event",
                "name": "e",
                "id": "01EVT",
            }
        )
        assert len(Api(handle.url).view("events")) == 1  # de-duplication survives
    finally:
        handle.stop()
    assert after == before
    assert before["people"] and before["events"] and before["segments"][0]["members"]


def test_reset_persists(tmp_path: Path) -> None:
    config = replace(CONFIG, db_path=tmp_path / "emulator.duckdb")
    handle = start_in_thread(config)
    Api(handle.url).batch(identify("1"))
    Api(handle.url).post("/_emulator/reset")
    handle.stop()
    handle = start_in_thread(config)
    try:
        assert Api(handle.url).people() == []
    finally:
        handle.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spawn(db: Path, port: int) -> subprocess.Popen[bytes]:
    args = [
        sys.executable,
        "-m",
        "cio_emulator",
        "--port",
        str(port),
        "--db",
        str(db),
        "--site-id",
        CONFIG.site_id,
        "--track-api-key",
        CONFIG.track_api_key,
        "--app-api-key",
        CONFIG.app_api_key,
    ]
    log = db.with_suffix(".log")
    with log.open("ab") as stderr:
        process = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=stderr)
    api = Api(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            api.get("/_emulator/faults")
            return process
        except aiohttp.ClientError:
            time.sleep(0.05)
    process.kill()
    process.wait()
    raise AssertionError(log.read_text())


@pytest.mark.skipif(os.name != "posix", reason="kill -9 needs POSIX signals")
def test_kill_9_after_200_loses_nothing(tmp_path: Path) -> None:
    db, port = tmp_path / "emulator.duckdb", _free_port()
    process = _spawn(db, port)
    api = Api(f"http://127.0.0.1:{port}")
    try:
        _everything(api)
        assert api.batch(identify("3", last=True)).status == 200
        before = _state(api)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    process = _spawn(db, port)
    try:
        after = _state(api)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=20)
    assert after == before
    assert any(p["id"] == "3" for p in after["people"])  # type: ignore[union-attr]
    assert process.returncode == 0
