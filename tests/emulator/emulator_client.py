"""Helpers for the emulator tests: a blocking HTTP client, credentials, op builders, fixtures.

There is no conftest.py here: other test modules import the top-level `conftest` by name, so
test modules here import the fixtures they use from this module instead.
"""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest

from cio_emulator import EmulatorConfig, EmulatorHandle, start_in_thread

CONFIG = EmulatorConfig(site_id="site", track_api_key="track-key", app_api_key="app-key", seed=7)
TRACK_AUTH = "Basic " + base64.b64encode(b"site:track-key").decode()
APP_AUTH = "Bearer app-key"


@dataclass
class Reply:
    """One HTTP answer: status, parsed JSON body (None when empty or not JSON), headers."""

    status: int
    body: Any
    headers: dict[str, str]


class Api:
    """A blocking client over real HTTP (aiohttp, a fresh session per call)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        auth: str | None = "auto",
        headers: dict[str, str] | None = None,
    ) -> Reply:
        """Send one request; auth "auto" picks Track Basic for /api and Bearer for /v1."""
        return asyncio.run(self._call(method, path, body, raw, auth, headers or {}))

    async def _call(
        self,
        method: str,
        path: str,
        body: Any,
        raw: bytes | None,
        auth: str | None,
        headers: dict[str, str],
    ) -> Reply:
        if auth == "auto":
            auth = TRACK_AUTH if path.startswith("/api/") else APP_AUTH
        if auth is not None:
            headers = {"Authorization": auth, **headers}
        data: Any = raw if raw is not None else (None if body is None else orjson.dumps(body))
        if data is not None and len(data) > 1_000_000:
            data = io.BytesIO(data)  # aiohttp warns about large raw byte bodies
        if data is not None:
            headers.setdefault("Content-Type", "application/json")
        async with (
            aiohttp.ClientSession() as session,
            session.request(method, self.url + path, data=data, headers=headers) as response,
        ):
            text = await response.read()
            try:
                parsed = orjson.loads(text) if text else None
            except orjson.JSONDecodeError:
                parsed = None
            return Reply(response.status, parsed, dict(response.headers))

    def get(self, path: str, **kwargs: Any) -> Reply:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Reply:
        return self.call("POST", path, body, **kwargs)

    def put(self, path: str, body: Any = None, **kwargs: Any) -> Reply:
        return self.call("PUT", path, body, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Reply:
        return self.call("DELETE", path, **kwargs)

    def batch(self, *ops: Any) -> Reply:
        return self.post("/api/v2/batch", {"batch": list(ops)})

    def view(self, name: str) -> Any:
        """GET /_emulator/<name> and unwrap it."""
        reply = self.get(f"/_emulator/{name}")
        return reply.body.get(name, reply.body)

    def people(self) -> list[dict[str, Any]]:
        return [p for p in self.view("people") if not p["suppressed"]]

    def person(self, **identifier: str) -> dict[str, Any] | None:
        ((kind, value),) = identifier.items()
        matches = [p for p in self.people() if p[kind] == value]
        return matches[0] if matches else None


def identify(pid: str, **attrs: Any) -> dict[str, Any]:
    """A v2 person identify op by id."""
    return {"type": "person", "identifiers": {"id": pid}, "action": "identify", "attributes": attrs}


@pytest.fixture(scope="module", name="server")
def server_fixture() -> Iterator[EmulatorHandle]:
    """One emulator per test module."""
    handle = start_in_thread(CONFIG)
    yield handle
    handle.stop()


@pytest.fixture(name="api")
def api_fixture(server: EmulatorHandle) -> Api:
    """A client of the module's emulator, reset (data, log, faults) before each test."""
    client = Api(server.url)
    client.post("/_emulator/reset")
    return client
