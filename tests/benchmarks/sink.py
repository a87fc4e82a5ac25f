"""A counting sink: a stand-in for the Track API v2 that costs the sender (almost) nothing.

It answers `POST /api/v2/batch` and `POST /api/v2/entity` as the emulator answers a valid request
(200, body `{}`, `application/json; charset=utf-8`: `cio_emulator/responses.py` `ok()`), without
parsing, validating or storing anything, so that a benchmark's figures are the sender's. Like the
emulator it answers 401 `{"meta": {"error": "Unauthorized request"}}` when the Basic credentials
are not `--site-id:--track-api-key`, and 413 when a batch body is over 500,000 bytes (an entity
body over 32,000); those requests are counted apart and count no operations.

Operations are counted by the occurrences of the bytes `"type":` in each body (one `bytes.count`,
no JSON parsing): every v2 operation has exactly one top-level `type`. An attribute *named*
`type` would be counted too; the benchmarks' rows have none (use the emulator, `--sink emulator`,
to check what arrives operation by operation).

Each request's start (its arrival, stamped before the body is read, as the emulator stamps it)
is kept, so the peak number of request starts in any sliding second can be computed:

    GET  /_sink/stats   {"requests", "ops", "bytes", "unauthorized", "too_large", "other",
                         "peak_per_s", "first_start", "last_start", "cpu_s"}
    POST /_sink/reset   zero the counters (between runs)

`cpu_s` is the sink's own CPU time (user + system) since the last reset, to show what it cost.
Any other path answers 404 and is counted in `other`.

    python tests/benchmarks/sink.py --port 8799 [--site-id ...] [--track-api-key ...]
"""

from __future__ import annotations

import argparse
import base64
import os
import time
from dataclasses import asdict, dataclass, field

from aiohttp import web
from aiohttp.typedefs import Handler
from receivers import peak_per_second

MAX_BATCH_BYTES = 500_000  # as cio_emulator/limits.py (imported there with the whole emulator)
MAX_ENTITY_BYTES = 32_000
OP_MARK = b'"type":'
JSON_TYPE = "application/json"


@dataclass
class Counters:
    requests: int = 0
    ops: int = 0
    bytes: int = 0
    unauthorized: int = 0
    too_large: int = 0
    other: int = 0
    starts: list[float] = field(default_factory=list)
    cpu_at_reset: float = field(default_factory=lambda: _cpu_s())

    def reset(self) -> None:
        for name, value in asdict(Counters()).items():
            setattr(self, name, value)

    def summary(self) -> dict[str, object]:
        shown = {k: v for k, v in asdict(self).items() if k not in ("starts", "cpu_at_reset")}
        return {
            **shown,
            "peak_per_s": peak_per_second(self.starts),
            "first_start": self.starts[0] if self.starts else None,
            "last_start": self.starts[-1] if self.starts else None,
            "cpu_s": _cpu_s() - self.cpu_at_reset,
        }


def _cpu_s() -> float:
    times = os.times()
    return times.user + times.system


def _answer(status: int, body: bytes) -> web.Response:
    return web.Response(status=status, body=body, content_type=JSON_TYPE, charset="utf-8")


def _v2_error(status: int, reason: str, message: str) -> web.Response:
    error = {"reason": reason, "field": "", "message": message}
    return web.json_response({"errors": [error]}, status=status)


def track_v2(counters: Counters, expected_auth: str, limit: int) -> Handler:
    """A handler for one v2 route that counts and answers without parsing the body."""

    async def handle(request: web.Request) -> web.Response:
        counters.starts.append(time.time())
        body = await request.read()
        if request.headers.get("Authorization") != expected_auth:
            counters.unauthorized += 1
            return _answer(401, b'{"meta":{"error":"Unauthorized request"}}')
        if len(body) > limit:
            counters.too_large += 1
            message = f"the request body is {len(body)} bytes; at most {limit}"
            return _v2_error(413, "too_large", message)
        counters.requests += 1
        counters.bytes += len(body)
        counters.ops += body.count(OP_MARK)
        return _answer(200, b"{}")

    return handle


def create_app(site_id: str, track_api_key: str) -> web.Application:
    counters = Counters()
    token = base64.b64encode(f"{site_id}:{track_api_key}".encode()).decode()
    expected_auth = f"Basic {token}"

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(counters.summary())

    async def reset(request: web.Request) -> web.Response:
        counters.reset()
        return _answer(200, b"{}")

    async def other(request: web.Request) -> web.Response:
        counters.other += 1
        return _v2_error(404, "not_found", f"{request.method} {request.path} is not served here")

    app = web.Application(client_max_size=2 * MAX_BATCH_BYTES)
    app.router.add_post("/api/v2/batch", track_v2(counters, expected_auth, MAX_BATCH_BYTES))
    app.router.add_post("/api/v2/entity", track_v2(counters, expected_auth, MAX_ENTITY_BYTES))
    app.router.add_get("/_sink/stats", stats)
    app.router.add_post("/_sink/reset", reset)
    app.router.add_route("*", "/{tail:.*}", other)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--site-id", default="emulator-site")
    parser.add_argument("--track-api-key", default="emulator-track-key")
    args = parser.parse_args()
    app = create_app(args.site_id, args.track_api_key)
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
