"""The Customer.io client over real loopback HTTP.

`ScriptedServer` (tests/support/scripted_server.py) is a small aiohttp.web server whose answers
each test scripts: it is the fake for the client's own status table (207 bodies, 400 splitting,
401, 429 with Retry-After, 503, dropped connections, slow answers). Tests against the project's
emulator live further down.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from random import Random
from typing import Any

import orjson
import pytest
from support.scripted_server import (
    APP_KEY,
    PAYLOAD_MARK,
    TRACK_KEY,
    Collector,
    Reply,
    Script,
    ScriptedServer,
    Seen,
    max_in_window,
    op,
    op_of_size,
    run_with_server,
    send,
    send_failing,
    settings,
)

from connectors.customerio.client import CustomerIOClient, Op, Response
from connectors.customerio.limits import MAX_BATCH_BYTES, MAX_ENTITY_BYTES
from connectors.customerio.policy import (
    DEFAULT_ACTIONS,
    RETRIED_STATUSES,
    STATUS_ACTIONS,
    Action,
    ClientSettings,
    action_for,
    backoff_delay,
    parse_retry_after,
)
from engine.destination import DeliveryStats
from engine.errors import (
    ConfigError,
    DestinationAuthError,
    DestinationError,
    RetriableError,
)

# ------------------------------------------------------------------- the status table


def test_status_table_classifies_the_documented_statuses() -> None:
    for status in (200, 201, 202, 204, 207):
        assert action_for(status) is Action.ACCEPT
    assert {s for s, a in STATUS_ACTIONS.items() if a is Action.SPLIT} == {400, 413}
    assert {s for s, a in STATUS_ACTIONS.items() if a is Action.AUTH} == {401, 403}
    retried = {s for s, a in STATUS_ACTIONS.items() if a is Action.RETRY}
    assert retried == RETRIED_STATUSES == {408, 429, 500, 502, 503, 504, 522, 524}
    assert action_for(404) is Action.FAIL


@pytest.mark.parametrize(
    ("status", "action"),
    [
        (226, Action.ACCEPT),
        (409, Action.REJECT),
        (418, Action.REJECT),
        (422, Action.REJECT),
        (100, Action.FAIL),
        (301, Action.FAIL),
        (302, Action.FAIL),
        (501, Action.FAIL),
        (505, Action.FAIL),
    ],
)
def test_statuses_outside_the_table_take_their_class_default(status: int, action: Action) -> None:
    assert status not in STATUS_ACTIONS
    assert action_for(status) is action
    assert DEFAULT_ACTIONS.get(status // 100, Action.FAIL) is action


def test_the_documented_retry_policy_matches_the_code() -> None:
    doc = CustomerIOClient.__doc__ or ""
    match = re.search(r"Retried statuses: ([\d, ]+)\.", doc)
    assert match, "the docstring states the retried statuses"
    assert {int(s) for s in match.group(1).split(",")} == RETRIED_STATUSES
    text = " ".join(doc.split())
    assert "uniform(0, min(backoff_cap_s, backoff_base_s * 2**n))" in text
    assert "max(min(Retry-After, retry_after_cap_s), that backoff)" in text
    assert "at most `max_retries` times (1 + max_retries attempts)" in text
    assert "timeouts, refused connections and dropped connections" in text
    assert "401 and 403 raise DestinationAuthError" in text


def test_backoff_is_capped_full_jitter_and_honours_retry_after() -> None:
    s = ClientSettings("u", "u", "s", "k", backoff_base_s=0.5, backoff_cap_s=4, retry_after_cap_s=9)
    rng = Random(7)
    for attempt in range(12):
        ceiling = min(4.0, 0.5 * 2**attempt)
        delays = [backoff_delay(s, attempt, None, rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # full jitter reaches near the ceiling
    assert all(backoff_delay(s, 0, 3.0, rng) >= 3.0 for _ in range(50))
    assert all(backoff_delay(s, 0, 100.0, rng) == 9.0 for _ in range(50))  # capped
    assert all(backoff_delay(s, 5, 0.0, rng) <= 4.0 for _ in range(50))  # jitter may be larger


def test_retry_after_parses_seconds_and_http_dates() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after(format_datetime(now + timedelta(seconds=10), usegmt=True), now) == 10
    assert parse_retry_after(format_datetime(now - timedelta(seconds=10), usegmt=True), now) == 0
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_settings_are_checked() -> None:
    with pytest.raises(ConfigError):
        ClientSettings("u", "u", "s", "k", concurrency=0)
    with pytest.raises(ConfigError):
        ClientSettings("u", "u", "s", "k", max_retries=-1)


# ------------------------------------------------------------------------- packing


def test_ops_travel_as_compact_json_batches_with_basic_auth() -> None:
    ops = [op(i, name=f"n{i}") for i in range(5)]
    server, collector, stats = send(ops)
    (request,) = server.batch_requests
    assert request.method == "POST"
    assert request.raw == b'{"batch":[' + b",".join(orjson.dumps(o.body) for o in ops) + b"]}"
    assert request.headers["Authorization"].startswith("Basic ")
    assert request.headers["Content-Type"] == "application/json"
    assert collector.acked == [0, 1, 2, 3, 4]
    assert collector.rejected == {}
    assert (stats.requests, stats.retries, stats.throttled) == (1, 0, 0)


def test_async_iterables_of_ops_are_accepted() -> None:
    async def ops() -> AsyncIterator[Op]:
        for i in range(3):
            yield op(i)

    async def body(server: ScriptedServer) -> Collector:
        collector = Collector()
        async with CustomerIOClient(settings(server.url)) as client:
            await client.send_batches(ops(), collector, DeliveryStats())
        return collector

    _, collector = run_with_server(None, body)
    assert collector.acked == [0, 1, 2]


def test_a_batch_holds_at_most_max_batch_ops() -> None:
    server, collector, _ = send([op(i) for i in range(25)], max_batch_ops=10)
    assert sorted(len(s.refs) for s in server.batch_requests) == [5, 10, 10]
    assert collector.acked == list(range(25))


def test_a_body_of_exactly_max_batch_bytes_is_one_request() -> None:
    # 16 ops of 31,000 bytes + one filler: 12 bytes of envelope, 16 commas.
    filler = MAX_BATCH_BYTES - 12 - 16 - 16 * 31_000
    ops = [op_of_size(i, 31_000) for i in range(16)] + [op_of_size(16, filler)]
    server, collector, _ = send(ops)
    assert [len(s.raw) for s in server.batch_requests] == [MAX_BATCH_BYTES]
    assert collector.acked == list(range(17))


def test_one_byte_over_max_batch_bytes_starts_a_second_request() -> None:
    filler = MAX_BATCH_BYTES - 12 - 16 - 16 * 31_000 + 1
    ops = [op_of_size(i, 31_000) for i in range(16)] + [op_of_size(16, filler)]
    server, collector, _ = send(ops, concurrency=1)
    sizes = [len(s.raw) for s in server.batch_requests]
    assert sizes == [12 + 15 + 16 * 31_000, 12 + filler]
    assert max(sizes) <= MAX_BATCH_BYTES
    assert collector.acked == list(range(17))


def test_an_op_of_exactly_max_entity_bytes_is_sent_and_one_more_is_rejected_locally() -> None:
    ops = [op_of_size(1, MAX_ENTITY_BYTES), op_of_size(2, MAX_ENTITY_BYTES + 1), op(3)]
    server, collector, _ = send(ops)
    assert [ref for s in server.batch_requests for ref in s.refs] == [1, 3]
    assert collector.acked == [1, 3]
    assert set(collector.rejected) == {2}
    assert "32,001 bytes" in collector.rejected[2] and "32,000" in collector.rejected[2]
    assert "not sent" in collector.rejected[2]


def test_an_op_that_cannot_be_encoded_is_rejected_locally() -> None:
    server, collector, _ = send([op(1, bad={1, 2}), op(2)])
    assert [ref for s in server.batch_requests for ref in s.refs] == [2]
    assert set(collector.rejected) == {1}
    assert "cannot be encoded" in collector.rejected[1]


# ------------------------------------------------------------------------ answers


def test_a_207_maps_batch_index_back_to_refs() -> None:
    errors = [
        {"batch_index": 1, "reason": "invalid", "field": "identifiers", "message": "bad id"},
        {"batch_index": 3, "reason": "too_long"},
        {"batch_index": 3, "field": "attributes.x", "message": "too long"},
    ]
    ops = [op(100 + i) for i in range(5)]
    _, collector, _ = send(ops, lambda seen, n: Reply(207, {"errors": errors}))
    assert collector.acked == [100, 102, 104]
    assert collector.rejected == {
        101: "identifiers: bad id",
        103: "too_long; attributes.x: too long",
    }
    assert len(collector.outcomes) == 1


def test_a_200_with_an_errors_array_is_read_like_a_207() -> None:
    body = {"errors": [{"batch_index": 0, "message": "nope"}]}
    _, collector, _ = send([op(7), op(8)], lambda seen, n: Reply(200, body))
    assert collector.acked == [8]
    assert collector.rejected == {7: "nope"}


@pytest.mark.parametrize(
    "error",
    [{"reason": "invalid", "message": "no index"}, {"batch_index": 9, "message": "out of range"}],
)
def test_an_error_naming_no_op_acknowledges_nothing_of_its_request(error: dict[str, Any]) -> None:
    _, collector, _ = send([op(1), op(2), op(3)], lambda seen, n: Reply(207, {"errors": [error]}))
    assert collector.acked == []
    assert set(collector.rejected) == {1, 2, 3}
    assert all("naming no operation" in r for r in collector.rejected.values())


def bad_ops_refused(status: int) -> Script:
    def script(seen: Seen, n: int) -> Reply:
        if any(entry["attributes"].get("bad") for entry in seen.json["batch"]):
            if status == 413:
                return Reply(413, text="Request Entity Too Large")
            body = {"errors": [{"reason": "invalid", "field": "attributes.bad", "message": "no"}]}
            return Reply(status, body)
        return Reply()

    return script


@pytest.mark.parametrize("status", [400, 413])
def test_a_refused_batch_is_split_until_exactly_the_bad_ops_are_isolated(status: int) -> None:
    bad = {3, 27, 28}
    ops = [op(i, bad=True, secret=PAYLOAD_MARK) if i in bad else op(i) for i in range(40)]
    server, collector, stats = send(ops, bad_ops_refused(status))
    assert set(collector.rejected) == bad
    assert collector.acked == sorted(set(range(40)) - bad)  # each good op acked once
    expected = "HTTP 400: attributes.bad: no" if status == 400 else "HTTP 413: Request Entity"
    for reason in collector.rejected.values():
        assert reason.startswith(expected)
        assert PAYLOAD_MARK not in reason
    assert stats.requests == len(server.batch_requests) < 40


def test_another_4xx_rejects_a_single_op_with_its_reason() -> None:
    script: Script = lambda seen, n: Reply(422, {"meta": {"error": "unprocessable"}})  # noqa: E731
    _, collector, _ = send([op(1), op(2)], script, max_batch_ops=1)
    assert collector.rejected == {1: "HTTP 422: unprocessable", 2: "HTTP 422: unprocessable"}


def test_another_4xx_on_several_ops_is_a_destination_error() -> None:
    script: Script = lambda seen, n: Reply(422, {"meta": {"errors": ["x"]}})  # noqa: E731
    _, collector, _, error = send_failing([op(1), op(2)], script, DestinationError)
    assert "HTTP 422" in str(error)
    assert collector.acked == [] and collector.rejected == {}


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (Reply(501), "does not expect"),
        (Reply(302, headers={"Location": "https://track-eu.customer.io/api/v2/batch"}), "region"),
    ],
)
def test_an_unexpected_answer_is_a_destination_error(reply: Reply, words: str) -> None:
    _, collector, _, error = send_failing([op(1)], lambda seen, n: reply, DestinationError)
    assert words in str(error)
    assert collector.acked == []


# ----------------------------------------------------------------------------- auth


def test_401_stops_launching_lets_in_flight_finish_and_raises_auth_error() -> None:
    def script(seen: Seen, n: int) -> Reply:
        return Reply(401, None) if seen.refs == [3] else Reply(delay=0.3)

    ops = [op(i) for i in range(40)]
    server, collector, _, error = send_failing(
        ops, script, DestinationAuthError, max_batch_ops=1, concurrency=4, rate_limit=100
    )
    answered_ok = sorted(r for s in server.batch_requests for r in s.refs if r != 3)
    assert answered_ok == collector.acked  # every in-flight answer was reported
    assert {0, 1, 2} <= set(collector.acked)
    assert len(server.batch_requests) <= 8  # nothing new after the 401
    assert 3 not in collector.acked and collector.rejected == {}
    message = str(error)
    assert "site_id" in message and "track_api_key" in message
    assert TRACK_KEY not in message and "site-1" not in message
    assert error.exit_code == 4


# ------------------------------------------------------------------------ retries


def test_429_waits_for_retry_after_then_succeeds() -> None:
    def script(seen: Seen, n: int) -> Reply:
        return Reply(429, None, headers={"Retry-After": "1"}) if n == 0 else Reply()

    server, collector, stats = send([op(1)], script)
    first, second = server.batch_requests
    assert 1.0 <= second.at - first.at < 2.0
    assert second.raw == first.raw  # the same request again
    assert collector.acked == [1]
    assert (stats.requests, stats.retries, stats.throttled) == (2, 1, 1)


def test_retry_after_is_capped() -> None:
    def script(seen: Seen, n: int) -> Reply:
        return Reply(503, None, headers={"Retry-After": "120"}) if n == 0 else Reply()

    server, collector, _ = send([op(1)], script, retry_after_cap_s=0.2)
    first, second = server.batch_requests
    assert 0.2 <= second.at - first.at < 1.0
    assert collector.acked == [1]


@pytest.mark.parametrize("status", sorted(RETRIED_STATUSES))
def test_retriable_statuses_are_retried(status: int) -> None:
    server, collector, stats = send([op(1)], lambda seen, n: Reply(status) if n < 2 else Reply())
    assert collector.acked == [1]
    assert stats.retries == 2 and len(server.batch_requests) == 3


def test_a_timeout_is_retried() -> None:
    server, collector, stats = send(
        [op(1)], lambda seen, n: Reply(delay=0.5) if n == 0 else Reply(), timeout_s=0.2
    )
    assert collector.acked == [1]
    assert stats.retries == 1 and len(server.batch_requests) == 2


def test_a_dropped_connection_is_retried() -> None:
    server, collector, stats = send([op(1)], lambda seen, n: Reply(drop=n == 0))
    assert collector.acked == [1]
    assert stats.retries == 1 and len(server.batch_requests) == 2


def test_exhausted_retries_raise_and_leave_the_records_unacknowledged() -> None:
    def script(seen: Seen, n: int) -> Reply:
        return Reply(503) if 0 in seen.refs else Reply()

    _, collector, stats, error = send_failing(
        [op(0), op(1)], script, DestinationError, max_batch_ops=1, max_retries=2
    )
    assert type(error) is DestinationError and error.exit_code == 1
    assert "HTTP 503 x3" in str(error) and "unacknowledged" in str(error)
    assert isinstance(error.__cause__, RetriableError)
    assert collector.acked == [1]
    assert 0 not in collector.rejected
    assert stats.retries == 2 and stats.requests == 4
    assert PAYLOAD_MARK not in str(error)


def test_a_refused_connection_is_retried_then_reported() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    collector, stats = Collector(), DeliveryStats()

    async def main() -> None:
        url = f"http://127.0.0.1:{port}"
        async with CustomerIOClient(settings(url, max_retries=1)) as client:
            await client.send_batches([op(1)], collector, stats)

    with pytest.raises(DestinationError, match="connection refused x2") as caught:
        asyncio.run(main())
    retriable = caught.value.__cause__
    assert isinstance(retriable, RetriableError)
    assert isinstance(retriable.__cause__, OSError)  # translated at the seam, cause kept
    assert collector.outcomes == [] and stats.requests == 2


# ------------------------------------------------------------------------ raw calls


def test_raw_track_and_app_calls() -> None:
    def script(seen: Seen, n: int) -> Reply:
        if seen.path == "/v1/missing":
            return Reply(404, {"meta": {"error": "not found"}})
        if seen.path == "/v1/segments" and n == 1:
            return Reply(429)
        return Reply(200, {"path": seen.path, "query": seen.query, "body": seen.json})

    async def body(server: ScriptedServer) -> list[Response]:
        stats = DeliveryStats()
        async with CustomerIOClient(settings(server.url)) as client:
            region = await client.track("get", "/api/v1/accounts/region", params={"a": "1"})
            segment = await client.app("POST", "/v1/segments", json={"x": 1}, stats=stats)
            missing = await client.app("GET", "/v1/missing")
        assert stats.retries == 1 and stats.throttled == 1
        return [region, segment, missing]

    server, (region, segment, missing) = run_with_server(script, body)
    assert region.status == 200
    assert region.body == {"path": "/api/v1/accounts/region", "query": {"a": "1"}, "body": None}
    assert segment.body["body"] == {"x": 1}
    assert missing.status == 404 and missing.body == {"meta": {"error": "not found"}}
    assert server.seen[0].headers["Authorization"].startswith("Basic ")
    assert server.seen[1].headers["Authorization"] == f"Bearer {APP_KEY}"


@pytest.mark.parametrize("status", [401, 403])
def test_raw_calls_raise_auth_errors_without_secrets(status: int) -> None:
    async def body(server: ScriptedServer) -> None:
        async with CustomerIOClient(settings(server.url)) as client:
            with pytest.raises(DestinationAuthError) as track_error:
                await client.track("GET", "/api/v1/accounts/region")
            with pytest.raises(DestinationAuthError) as app_error:
                await client.app("GET", "/v1/segments")
        assert "track_api_key" in str(track_error.value)
        assert "app_api_key" in str(app_error.value)
        for error in (track_error.value, app_error.value):
            assert TRACK_KEY not in str(error) and APP_KEY not in str(error)

    run_with_server(lambda seen, n: Reply(status), body)


def test_app_calls_without_an_app_key_say_what_is_missing() -> None:
    async def main() -> None:
        async with CustomerIOClient(settings("http://127.0.0.1:9", app_api_key=None)) as client:
            await client.app("GET", "/v1/segments")

    with pytest.raises(ConfigError, match="app_api_key"):
        asyncio.run(main())


# ------------------------------------------------------------------------- segments


def test_segment_membership_goes_in_calls_of_at_most_1000_ids_and_splits_on_400() -> None:
    def script(seen: Seen, n: int) -> Reply:
        return (
            Reply(400, {"meta": {"errors": ["bad id"]}}) if "bad" in seen.json["ids"] else Reply()
        )

    items = [(i, "bad" if i == 1500 else f"id-{i}") for i in range(2500)]

    async def body(server: ScriptedServer) -> Collector:
        collector = Collector()
        async with CustomerIOClient(settings(server.url)) as client:
            await client.send_segment(42, "add", "email", items, collector, DeliveryStats())
        return collector

    server, collector = run_with_server(script, body)
    assert {s.path for s in server.seen} == {"/api/v1/segments/42/add_customers"}
    assert {s.query["id_type"] for s in server.seen} == {"email"}
    assert max(len(s.json["ids"]) for s in server.seen) == 1000
    assert collector.rejected == {1500: "HTTP 400: bad id"}
    assert collector.acked == [i for i in range(2500) if i != 1500]


# --------------------------------------------------------------------------- pacing


def test_request_starts_never_exceed_the_rate_in_any_sliding_second() -> None:
    """Two concurrent runs share one client, so they share its budget."""

    async def body(server: ScriptedServer) -> None:
        async with CustomerIOClient(settings(server.url, rate_limit=15, max_batch_ops=1)) as c:
            await asyncio.gather(
                c.send_batches([op(i) for i in range(20)], Collector(), DeliveryStats()),
                c.send_batches([op(i) for i in range(20, 40)], Collector(), DeliveryStats()),
            )

    server, _ = run_with_server(None, body)
    stamps = [s.at for s in server.batch_requests]
    assert len(stamps) == 40
    assert max_in_window(stamps) <= 15


# ------------------------------------------------------------------ against the emulator


@pytest.fixture(scope="module")
def emulator() -> Iterator[Any]:
    """The project's emulator on a loopback port, shared by the tests below."""
    module = pytest.importorskip("cio_emulator")
    if not hasattr(module, "start_in_thread"):
        pytest.skip("the emulator does not offer start_in_thread yet")
    handle = module.start_in_thread(module.EmulatorConfig(rate_limit=None, retry_after=None))
    try:
        yield handle
    finally:
        handle.stop()


def control(handle: Any, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else orjson.dumps(body)
    request = urllib.request.Request(
        handle.url + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        raw = answer.read()
    return orjson.loads(raw) if raw.strip() else None


def fresh(handle: Any, **faults: Any) -> None:
    control(handle, "POST", "/_emulator/reset", {})
    defaults = {"rate_limit": None, "retry_after": None, "fail_rate": 0, "drop_rate": 0}
    control(handle, "POST", "/_emulator/faults", {**defaults, "latency_ms": 0, **faults})


def emulator_settings(handle: Any, **overrides: Any) -> ClientSettings:
    values: dict[str, Any] = {
        "site_id": "emulator-site",
        "track_api_key": "emulator-track-key",
        "app_api_key": "emulator-app-key",
        **overrides,
    }
    return settings(handle.url, **values)


def deliver_to(handle: Any, ops: list[Op], **overrides: Any) -> tuple[Collector, DeliveryStats]:
    collector, stats = Collector(), DeliveryStats()

    async def main() -> None:
        async with CustomerIOClient(emulator_settings(handle, **overrides)) as client:
            await client.send_batches(ops, collector, stats)

    asyncio.run(main())
    return collector, stats


def logged_batches(handle: Any) -> list[dict[str, Any]]:
    log = control(handle, "GET", "/_emulator/requests")
    entries = log if isinstance(log, list) else log["requests"]
    return [entry for entry in entries if entry["path"] == "/api/v2/batch"]


def test_emulator_sees_at_most_rate_limit_starts_in_any_sliding_second(emulator: Any) -> None:
    fresh(emulator, rate_limit=150)
    ops = [op(i) for i in range(600)]
    collector, stats = deliver_to(
        emulator, ops, rate_limit=150, concurrency=8, max_batch_ops=1, timeout_s=10
    )
    logged = logged_batches(emulator)
    stamps = [entry["at"] for entry in logged]
    statuses = sorted({entry["status"] for entry in logged})
    assert len(stamps) == 600, f"{stats}, statuses {statuses}"
    assert max_in_window(stamps) <= 150
    assert stats.throttled == 0, statuses  # the emulator's own sliding-second limiter never fired
    assert collector.acked == list(range(600))


def test_emulator_429_storm_is_retried_until_accepted(emulator: Any) -> None:
    fresh(emulator, script=[{"count": 6, "status": 429}])
    collector, stats = deliver_to(emulator, [op(i) for i in range(4)], max_batch_ops=1)
    assert collector.acked == [0, 1, 2, 3]
    assert stats.throttled == 6 and stats.retries == 6 and stats.requests == 10


def test_emulator_rate_limit_with_retry_after_is_honoured(emulator: Any) -> None:
    fresh(emulator, rate_limit=4, retry_after=1)
    start = time.monotonic()
    collector, stats = deliver_to(
        emulator, [op(i) for i in range(6)], max_batch_ops=1, rate_limit=100, max_retries=4
    )
    assert collector.acked == list(range(6))
    assert stats.throttled >= 2
    assert time.monotonic() - start >= 1.0  # the throttled ones waited out Retry-After


def test_emulator_207_maps_back_to_refs(emulator: Any) -> None:
    fresh(emulator)
    nameless_event = Op(11, {"type": "person", "action": "event", "identifiers": {"id": "p"}})
    ops = [op(10), nameless_event, op(12)]
    collector, _ = deliver_to(emulator, ops)
    assert collector.acked == [10, 12]
    assert set(collector.rejected) == {11}
    (entry,) = logged_batches(emulator)
    assert entry["status"] == 207


def test_emulator_refuses_wrong_credentials(emulator: Any) -> None:
    fresh(emulator)
    collector = Collector()

    async def main() -> None:
        async with CustomerIOClient(emulator_settings(emulator, track_api_key="wrong")) as client:
            await client.send_batches([op(1)], collector, DeliveryStats())

    with pytest.raises(DestinationAuthError):
        asyncio.run(main())
    assert collector.outcomes == []
