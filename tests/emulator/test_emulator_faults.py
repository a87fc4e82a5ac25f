"""Fault injection: 429 with and without Retry-After, 5xx, scripted queue, drops, latency."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

import aiohttp
import pytest
from emulator_client import CONFIG, TRACK_AUTH, Api, api_fixture, identify, server_fixture  # noqa: F401 (fixtures)

from cio_emulator import start_in_thread


def burst(url: str, count: int) -> list[int]:
    """`count` concurrent requests; their statuses (0 for a dropped connection)."""

    async def one(session: aiohttp.ClientSession) -> int:
        try:
            async with session.get(
                f"{url}/api/v1/accounts/region", headers={"Authorization": TRACK_AUTH}
            ) as response:
                return response.status
        except aiohttp.ClientError:
            return 0

    async def run() -> list[int]:
        async with aiohttp.ClientSession() as session:
            return list(await asyncio.gather(*(one(session) for _ in range(count))))

    return asyncio.run(run())


def test_rate_limit_with_retry_after(api: Api) -> None:
    api.post("/_emulator/faults", {"rate_limit": 5, "retry_after": 2})
    statuses = burst(api.url, 8)
    assert statuses.count(200) == 5 and statuses.count(429) == 3
    limited = api.get("/api/v1/accounts/region")
    assert limited.status == 429 and limited.headers["Retry-After"] == "2"


def test_rate_limit_without_retry_after_and_window_slides(api: Api) -> None:
    api.post("/_emulator/faults", {"rate_limit": 3})
    assert sorted(burst(api.url, 4)) == [200, 200, 200, 429]
    limited = api.get("/api/v1/accounts/region")
    assert limited.status == 429 and "Retry-After" not in limited.headers
    time.sleep(1.05)
    assert api.get("/api/v1/accounts/region").status == 200


def test_rate_limit_from_config() -> None:
    handle = start_in_thread(replace(CONFIG, rate_limit=2, retry_after=0.5))
    try:
        statuses = burst(handle.url, 3)
        limited = Api(handle.url).get("/api/v1/accounts/region")
    finally:
        handle.stop()
    assert sorted(statuses) == [200, 200, 429]
    assert limited.status == 429 and limited.headers["Retry-After"] == "0.5"


def test_fail_rate_injects_5xx(api: Api) -> None:
    api.post("/_emulator/faults", {"fail_rate": 1.0})
    statuses = {api.batch(identify("1")).status for _ in range(12)}
    assert statuses <= {500, 502, 503} and statuses
    assert api.people() == []
    api.post("/_emulator/faults", {"fail_rate": 0})
    assert api.batch(identify("1")).status == 200


def test_scripted_queue_and_path_filter(api: Api) -> None:
    script = {
        "script": [{"count": 2, "status": 503}, {"count": 1, "status": 429}],
        "script_paths": "/api/v2/",
    }
    assert api.post("/_emulator/faults", script).body["script"] == script["script"]
    assert api.get("/api/v1/accounts/region").status == 200  # not under /api/v2/
    assert [api.batch(identify("1")).status for _ in range(4)] == [503, 503, 429, 200]
    assert api.get("/_emulator/faults").body["script"] == []
    assert [p["id"] for p in api.people()] == ["1"]


def test_dropped_connection(api: Api) -> None:
    api.post("/_emulator/faults", {"script": [{"count": 1, "action": "drop"}]})
    with pytest.raises(aiohttp.ClientError):
        api.batch(identify("1"))
    assert api.people() == []
    assert api.view("requests")[-1]["status"] is None
    api.post("/_emulator/faults", {"drop_rate": 1.0})
    with pytest.raises(aiohttp.ClientError):
        api.batch(identify("1"))
    assert api.get("/_emulator/people").status == 200  # never applied to /_emulator


def test_latency(api: Api) -> None:
    api.post("/_emulator/faults", {"latency_ms": 150})
    started = time.monotonic()
    api.get("/api/v1/accounts/region")
    assert time.monotonic() - started >= 0.15


def test_faults_endpoint_validation_and_reset(api: Api) -> None:
    assert api.post("/_emulator/faults", {"fail_rate": 2}).status == 400
    assert api.post("/_emulator/faults", {"bogus": 1}).status == 400
    assert api.post("/_emulator/faults", {"script": [{"count": 0, "status": 500}]}).status == 400
    api.post("/_emulator/faults", {"rate_limit": 1, "latency_ms": 5})
    api.post("/_emulator/reset")
    assert api.get("/_emulator/faults").body == {
        "rate_limit": None,
        "retry_after": None,
        "fail_rate": 0.0,
        "latency_ms": 0,
        "drop_rate": 0.0,
        "script": [],
        "script_paths": None,
    }


def test_request_log(api: Api) -> None:
    before = time.time()
    api.batch(identify("1"), identify("2"))
    api.get("/_emulator/people")
    log = api.view("requests")
    assert len(log) == 1
    entry = log[0]
    assert entry["method"] == "POST" and entry["path"] == "/api/v2/batch"
    assert entry["status"] == 200 and entry["ops"] == 2 and entry["errors"] == []
    assert before - 0.01 <= entry["at"] <= time.time()
