"""The Customer.io HTTP client: the only module that imports aiohttp's client and its exceptions.

Planned operations come in, acknowledgements go out:

    ops ──encode once──▶ pack (≤ MAX_BATCH_BYTES, ≤ max_batch_ops) ──▶ in-flight slot ──▶ start slot
        ──▶ POST /api/v2/batch ──▶ STATUS_ACTIONS ──▶ Outcome(acked, rejected) ──▶ on_outcome

Every response is classified by one table, `STATUS_ACTIONS`; transport exceptions are translated
into `RetriableError` in one place, `CustomerIOClient._transport`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Iterable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import aiohttp
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from connectors.customerio.errors import acknowledge, answer_reason, parse_body
from connectors.customerio.limits import (
    MAX_BATCH_BYTES,
    MAX_ENTITY_BYTES,
    MAX_SEGMENT_IDS_PER_CALL,
)
from connectors.customerio.pacing import SlidingWindowPacer
from connectors.customerio.packing import Packed, packed
from connectors.customerio.policy import (
    Action,
    ClientSettings,
    action_for,
    backoff_delay,
    parse_retry_after,
)
from engine.destination import BudgetFor, DeliveryStats, Outcome, RateBudget, log_event
from engine.errors import (
    ConfigError,
    DestinationAuthError,
    DestinationError,
    RetriableError,
    SyncError,
)

T = TypeVar("T")
log = logging.getLogger("cio_sync.customerio")


@dataclass(frozen=True)
class Op:
    """One record's v2 operation. `ref` is opaque to the client (the engine's sequence number)."""

    ref: int
    body: dict[str, Any]


@dataclass
class Response:
    """An answer: status, parsed JSON body (text when not JSON, None when empty), headers."""

    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)  # names lower-cased


OutcomeHandler = Callable[[Outcome], Awaitable[None]]
Item = tuple[int, bytes | str]  # (ref, encoded item) or (ref, why it could not be encoded)
Encoded = Item | Packed  # or a whole body's items, joined already (`packing`)


class _Stopped(Exception):
    """The run is stopping: this request is not (re)launched; its records stay unacknowledged."""


@dataclass(frozen=True)
class _Api:
    name: str
    base_url: str
    headers: dict[str, str]
    slots: asyncio.Semaphore
    credentials_hint: str
    # starts are paced by the workspace's budget shared with other processes, if there is one,
    # else by this client's own pacer
    budget: RateBudget | None
    pacer: SlidingWindowPacer | None


@dataclass(frozen=True)
class _Call:
    api: _Api
    method: str
    path: str
    params: dict[str, Any] | None = None
    body: bytes | None = None

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class _Envelope:
    """How items are packed into one request body: prefix + comma-joined items + suffix."""

    path: str
    params: dict[str, Any] | None
    prefix: bytes
    suffix: bytes
    max_items: int
    max_item_bytes: int | None
    noun: str

    @property
    def empty_size(self) -> int:
        return len(self.prefix) + len(self.suffix)

    def body(self, chunk: Sequence[tuple[int, bytes]]) -> bytes:
        if isinstance(chunk, Packed):  # joined by Arrow already
            return self.prefix + chunk.joined + self.suffix
        return self.prefix + b",".join(data for _, data in chunk) + self.suffix


@dataclass
class _Run:
    """One send_batches / send_segment call: its callbacks, counters and stop signal."""

    envelope: _Envelope
    on_outcome: OutcomeHandler
    stats: DeliveryStats
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    failure: SyncError | None = None

    def fail(self, error: SyncError) -> None:
        """Stop launching requests; an auth failure outranks others (exit 4 before exit 1)."""
        auth_wins = isinstance(error, DestinationAuthError) and not isinstance(
            self.failure, DestinationAuthError
        )
        if self.failure is None or auth_wins:
            self.failure = error
        self.stop.set()


class CustomerIOClient:
    """Paced, retrying async client for one Customer.io workspace (Track and App APIs).

    Open it with `async with`: it holds one `aiohttp.ClientSession` for its lifetime. Request
    starts of each API (Track: `rate_limit`, App: `app_rate_limit` starts in any sliding
    second) take slots of the workspace's budget shared by every process (`engine.budget`),
    or, for a client made without one, go through a sliding-window pacer per API; either way
    every sync sharing the client shares the rate. At most `concurrency` requests per API are
    in flight.

    Retry policy:
        Retried statuses: 408, 429, 500, 502, 503, 504, 522, 524.
        Also retried: timeouts, refused connections and dropped connections.
        The same request is resent at most `max_retries` times (1 + max_retries attempts).
        Before retry n (n = 0, 1, 2, ...) the client waits a full-jitter backoff of
        uniform(0, min(backoff_cap_s, backoff_base_s * 2**n)) seconds; when the answer
        carries Retry-After (seconds or an HTTP-date) it waits
        max(min(Retry-After, retry_after_cap_s), that backoff) instead.
        A waiting request holds no in-flight slot; each attempt takes a slot and a start slot.
        After the last retry fails, a batch call stops launching requests, lets those in flight
        finish (their outcomes are reported), and raises DestinationError naming the failures
        by kind and count; the failed request's records stay unacknowledged. A raw call
        (`track`, `app`) raises the same error at once.
        Never retried: 401 and 403 raise DestinationAuthError (a batch call first lets the
        requests in flight finish); 400 and 413 split a batch instead.
    """

    def __init__(
        self,
        settings: ClientSettings,
        *,
        rng: random.Random | None = None,
        budget_for: BudgetFor | None = None,
    ) -> None:
        self.settings = settings
        self._rng = rng or random.Random()
        self._budget_for = budget_for
        self._session: aiohttp.ClientSession | None = None
        self._track = self._api(
            "Track",
            settings.track_url,
            _basic_auth(settings.site_id, settings.track_api_key),
            settings.rate_limit,
            "check the workspace's site_id and track_api_key",
        )
        self._app = (
            self._api(
                "App",
                settings.app_url,
                f"Bearer {settings.app_api_key}",
                settings.app_rate_limit,
                "check the workspace's app_api_key",
            )
            if settings.app_api_key
            else None
        )

    def _api(self, name: str, url: str, auth: str, rate: int, hint: str) -> _Api:
        headers = {
            "Authorization": auth,
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": "cio-sync",
        }
        slots = asyncio.Semaphore(self.settings.concurrency)
        budget = self._budget_for(name, rate) if self._budget_for is not None else None
        pacer = SlidingWindowPacer(rate) if budget is None else None
        return _Api(name, url.rstrip("/"), headers, slots, hint, budget, pacer)

    async def __aenter__(self) -> CustomerIOClient:
        s = self.settings
        timeout = aiohttp.ClientTimeout(total=s.timeout_s, sock_read=s.timeout_s)
        connector = aiohttp.TCPConnector(limit_per_host=s.concurrency)
        self._session = aiohttp.ClientSession(timeout=timeout, connector=connector)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ----------------------------------------------------------------- batched delivery

    async def send_batches(
        self,
        ops: AsyncIterable[Op] | Iterable[Op],
        on_outcome: OutcomeHandler,
        stats: DeliveryStats,
    ) -> None:
        """Deliver `ops` through POST /api/v2/batch, reporting every decision to `on_outcome`.

        Each op is encoded once (compact JSON); one over MAX_ENTITY_BYTES is rejected locally
        and never sent. A body holds at most `max_batch_ops` ops and MAX_BATCH_BYTES bytes.
        `on_outcome` is awaited once per finished request and once per local rejection.
        A 207 (or a 200 with an `errors` array) rejects the ops its `batch_index`es name and
        acknowledges the others; an error naming no op rejects every op of that request.
        400/413 halve a request until the bad ops are isolated. Raises DestinationAuthError
        on 401/403 and DestinationError when retries run out or an answer is unexpected,
        after the requests in flight have finished.
        """
        await self.send_encoded(_map(ops, _encode_op), on_outcome, stats)

    async def send_encoded(
        self,
        chunks: AsyncIterable[Sequence[Encoded]] | Iterable[Sequence[Encoded]],
        on_outcome: OutcomeHandler,
        stats: DeliveryStats,
    ) -> None:
        """`send_batches` for operations already encoded: lists of (ref, compact JSON bytes),
        or (ref, reason) for an operation that could not be encoded. The engine's path: it
        builds each plan chunk's operations in one pass."""
        run = _Run(self._batch_envelope(), on_outcome, stats)
        await self._deliver(run, _map(chunks, _same))

    def pack_built(self, built: pa.Table, after: int = 0) -> Sequence[Encoded]:
        """Operations the state database built (columns seq, operation) as `send_encoded`'s
        items, whole request bodies joined by Arrow where they fit one (`packing.packed`).
        `after`: how many operations the run has given the client before these, so that the
        runs line up with the bodies the client is filling."""
        envelope = self._batch_envelope()
        widest = pc.max(pc.binary_length(built.column("operation"))).as_py() or 0
        if widest > _item_limit(envelope):  # the client refuses those one by one
            seqs, texts = built.column("seq").to_pylist(), built.column("operation").to_pylist()
            return list(zip(seqs, texts, strict=True))
        room = MAX_BATCH_BYTES - envelope.empty_size
        return packed(built, envelope.max_items, room, lead=-after % envelope.max_items)

    def _batch_envelope(self) -> _Envelope:
        return _Envelope(
            "/api/v2/batch",
            None,
            b'{"batch":[',
            b"]}",
            self.settings.max_batch_ops,
            MAX_ENTITY_BYTES,
            "operation",
        )

    async def send_segment(
        self,
        segment_id: int,
        action: Literal["add", "remove"],
        id_type: str,
        items: AsyncIterable[tuple[int, str]] | Iterable[tuple[int, str]],
        on_outcome: OutcomeHandler,
        stats: DeliveryStats,
    ) -> None:
        """Add or remove people of a manual segment, ≤ 1000 ids a call; (ref, id) pairs in.

        Same pacing, retry, split and auth rules as `send_batches`; a 200 acknowledges all.
        """
        if action not in ("add", "remove"):
            raise ValueError(f"segment action must be 'add' or 'remove', not {action!r}")
        envelope = _Envelope(
            f"/api/v1/segments/{int(segment_id)}/{action}_customers",
            {"id_type": id_type},
            b'{"ids":[',
            b"]}",
            min(MAX_SEGMENT_IDS_PER_CALL, self.settings.max_batch_ops),
            None,
            "id",
        )
        encoded = _map(items, lambda item: [(item[0], orjson.dumps(str(item[1])))])
        await self._deliver(_Run(envelope, on_outcome, stats), encoded)

    async def _deliver(self, run: _Run, items: AsyncGenerator[Sequence[Encoded], None]) -> None:
        """Pack, launch at most `concurrency` chunks at a time, and raise the run's failure."""
        window = asyncio.Semaphore(self.settings.concurrency)
        try:
            async with (
                aclosing(items),
                aclosing(self._pack(run, items)) as chunks,
                asyncio.TaskGroup() as group,
            ):
                async for chunk in chunks:
                    await window.acquire()
                    if run.stop.is_set():
                        window.release()
                        break
                    group.create_task(self._send_released(run, chunk, window))
        except BaseExceptionGroup as errors:
            raise _first_leaf(errors) from None
        if run.failure is not None:
            raise run.failure

    async def _pack(
        self, run: _Run, items: AsyncGenerator[Sequence[Encoded], None]
    ) -> AsyncGenerator[Sequence[tuple[int, bytes]], None]:
        """Chunks that respect the envelope's limits; too-large or unencodable items rejected.
        A `Packed` body (built and joined by the state database and Arrow) is its own chunk."""
        envelope, size = run.envelope, run.envelope.empty_size
        limit, max_items = _item_limit(envelope), envelope.max_items
        chunk: list[tuple[int, bytes]] = []
        async for part in items:
            refused: list[tuple[int, str]] = []
            for item in part:
                if isinstance(item, Packed):  # a whole body already: sent as it is
                    if chunk:
                        yield chunk
                        chunk, size = [], envelope.empty_size
                    if run.stop.is_set():
                        return
                    yield item
                    continue
                ref, data = item
                if isinstance(data, str) or len(data) > limit:
                    refused.append((ref, _local_reason(envelope, data)))
                    continue
                grown = size + len(data) + bool(chunk)
                if chunk and (len(chunk) >= max_items or grown > MAX_BATCH_BYTES):
                    yield chunk
                    if run.stop.is_set():
                        return
                    chunk, grown = [], envelope.empty_size + len(data)
                chunk.append((ref, data))
                size = grown
            if refused:
                await run.on_outcome(Outcome([], refused))
        if chunk and not run.stop.is_set():
            yield chunk

    async def _send_released(
        self, run: _Run, chunk: Sequence[tuple[int, bytes]], window: asyncio.Semaphore
    ) -> None:
        try:
            await self._send_chunk(run, chunk)
        finally:
            window.release()

    async def _send_chunk(self, run: _Run, chunk: Sequence[tuple[int, bytes]]) -> None:
        """Send one chunk (with retries) and settle what its answer means for its items."""
        envelope = run.envelope
        call = _Call(self._track, "POST", envelope.path, envelope.params, envelope.body(chunk))
        try:
            response = await self._call_with_retries(call, run.stats, run.stop)
        except _Stopped:
            return
        except (DestinationAuthError, DestinationError) as error:
            run.fail(error)
            return
        await self._settle(run, call, chunk, response)

    async def _settle(
        self, run: _Run, call: _Call, chunk: Sequence[tuple[int, bytes]], response: Response
    ) -> None:
        match action_for(response.status), len(chunk) > 1:
            case Action.ACCEPT, _:
                await run.on_outcome(acknowledge(chunk, response.body))
            case Action.SPLIT, True:
                await self._split(run, chunk)
            case ((Action.SPLIT | Action.REJECT), False):
                reason = answer_reason(response.status, response.body)
                await run.on_outcome(Outcome([], [(chunk[0][0], reason)]))
            case _:
                run.fail(DestinationError(_unexpected(call, response, len(chunk), run.envelope)))

    async def _split(self, run: _Run, chunk: Sequence[tuple[int, bytes]]) -> None:
        middle = len(chunk) // 2
        async with asyncio.TaskGroup() as group:
            group.create_task(self._send_chunk(run, chunk[:middle]))
            group.create_task(self._send_chunk(run, chunk[middle:]))

    # ----------------------------------------------------------------------- raw calls

    async def track(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        stats: DeliveryStats | None = None,
    ) -> Response:
        """An authorized, paced, retried Track API call; `path` is host-relative (/api/...).

        Raises DestinationAuthError on 401/403 and DestinationError when retries run out;
        any other answer is returned.
        """
        call = _Call(self._track, method.upper(), path, params, _encode_json(json))
        return await self._call_with_retries(call, stats or DeliveryStats())

    async def app(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        stats: DeliveryStats | None = None,
    ) -> Response:
        """An authorized, paced, retried App API call; `path` is host-relative (/v1/...).

        Same rules as `track`; raises ConfigError when the workspace has no app_api_key.
        """
        if self._app is None:
            raise ConfigError(
                "this needs the App API: set app_api_key in the workspace "
                "(collections, segments by name and lookups use it)"
            )
        call = _Call(self._app, method.upper(), path, params, _encode_json(json))
        return await self._call_with_retries(call, stats or DeliveryStats())

    # ------------------------------------------------------------------ retry and wire

    async def _call_with_retries(
        self, call: _Call, stats: DeliveryStats, stop: asyncio.Event | None = None
    ) -> Response:
        """Send `call` until it gets a non-retriable answer or `max_retries` retries failed."""
        failures: Counter[str] = Counter()
        last: RetriableError | None = None
        for attempt in range(self.settings.max_retries + 1):
            if last is not None:
                delay = backoff_delay(self.settings, attempt - 1, last.retry_after, self._rng)
                _log_retry(call, last, attempt, delay)
                await _pause(delay, stop)
            try:
                return await self._attempt(call, stats, stop, retry=attempt > 0)
            except RetriableError as error:
                failures[str(error)] += 1
                last = error
        raise DestinationError(self._exhausted(call, failures)) from last

    async def _attempt(
        self, call: _Call, stats: DeliveryStats, stop: asyncio.Event | None, *, retry: bool
    ) -> Response:
        """One paced attempt; raises RetriableError or DestinationAuthError per the table."""
        stopping = stop.is_set if stop is not None else lambda: False
        if stopping():
            raise _Stopped
        async with call.api.slots:
            await _paced(call.api, stats)
            if stopping():
                raise _Stopped
            stats.requests += 1
            stats.retries += retry
            response = await self._transport(call)
        action = action_for(response.status)
        if action is Action.RETRY:
            if response.status == 429:
                stats.throttled += 1
                if call.api.budget is not None:
                    await call.api.budget.throttled()
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            raise RetriableError(f"HTTP {response.status}", retry_after=retry_after)
        if action is Action.AUTH:
            raise DestinationAuthError(
                f"Customer.io refused the {call.api.name} API credentials "
                f"(HTTP {response.status} to {call.label}): {call.api.credentials_hint}"
            )
        return response

    async def _transport(self, call: _Call) -> Response:
        """The one seam where aiohttp's exceptions become the project's errors."""
        session = self._require_session()
        try:
            async with session.request(
                call.method,
                call.api.base_url + call.path,
                params=call.params,
                data=call.body,
                headers=call.api.headers,
                allow_redirects=False,
            ) as answer:
                raw = await answer.read()
                headers = {name.lower(): value for name, value in answer.headers.items()}
                return Response(answer.status, parse_body(raw), headers)
        except (aiohttp.InvalidURL, aiohttp.ClientConnectorCertificateError) as exc:
            raise DestinationError(
                f"cannot reach the {call.api.name} API at {call.api.base_url} "
                f"({type(exc).__name__}): check the workspace's URLs and region"
            ) from exc
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
            raise RetriableError(_describe_transport(exc)) from exc

    def _require_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("CustomerIOClient is used outside `async with`")
        return self._session

    def _exhausted(self, call: _Call, failures: Counter[str]) -> str:
        kinds = ", ".join(f"{kind} x{count}" for kind, count in failures.most_common())
        return (
            f"Customer.io kept failing {call.label} on the {call.api.name} API: "
            f"{kinds} over {sum(failures.values())} attempts ({self.settings.max_retries} "
            "retries). Its records stay unacknowledged and are sent again on the next run; "
            "if this persists, check Customer.io's status or lower rate_limit / concurrency."
        )


# ----------------------------------------------------------------------------- helpers


async def _paced(api: _Api, stats: DeliveryStats) -> None:
    """Wait for this start's turn: its slot in the workspace's shared budget, which spaces the
    starts of every process at the shared rate (lowered after 429s, raised again by quiet
    seconds); without a budget, this client's sliding-window pacer.

    Not both: the pacer spaces each start from the one before as it happened, so its waits
    added up behind the budget's slots, and one process delivering 1M people started 126
    requests a second where its slots allowed 136."""
    if api.budget is None:
        assert api.pacer is not None
        await api.pacer.acquire()
        return
    await api.budget.take()
    stats.saw_rate(api.budget.rate)


def _log_retry(call: _Call, error: RetriableError, attempt: int, delay: float) -> None:
    """A retry at info level: an event operators count (429s are `request.throttled`)."""
    name = "request.throttled" if str(error) == "HTTP 429" else "request.retry"
    fields = {"reason": str(error), "attempt": attempt, "delay_s": round(delay, 3)}
    log.info(
        "%s: %s, retry %d in %.2f s",
        call.label,
        error,
        attempt,
        delay,
        extra=log_event(name, call=call.label, **fields),
    )


def _basic_auth(user: str, password: str) -> str:
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


async def _pause(delay: float, stop: asyncio.Event | None) -> None:
    """Sleep `delay` seconds, or less when `stop` is set meanwhile."""
    if stop is None:
        await asyncio.sleep(delay)
        return
    try:
        async with asyncio.timeout(delay):
            await stop.wait()
    except TimeoutError:
        pass


async def _map(
    source: AsyncIterable[T] | Iterable[T], fn: Callable[[T], Sequence[Encoded]]
) -> AsyncGenerator[Sequence[Encoded], None]:
    if isinstance(source, AsyncIterable):
        async for item in source:
            yield fn(item)
    else:
        for item in source:
            yield fn(item)


def _same(chunk: Sequence[Encoded]) -> Sequence[Encoded]:
    return chunk


def _encode_op(op: Op) -> list[Item]:
    """[(ref, compact JSON)] — or [(ref, reason)] when the body cannot be encoded."""
    try:
        return [(op.ref, orjson.dumps(op.body))]
    except orjson.JSONEncodeError as exc:
        return [(op.ref, f"operation cannot be encoded as JSON ({exc}); not sent")]


def _encode_json(value: Any) -> bytes | None:
    return None if value is None else orjson.dumps(value)


def _item_limit(envelope: _Envelope) -> int:
    """The largest item the envelope takes: its own limit, or what fits an empty body."""
    return envelope.max_item_bytes or MAX_BATCH_BYTES - envelope.empty_size


def _local_reason(envelope: _Envelope, data: bytes | str) -> str:
    if isinstance(data, str):
        return data
    limit = _item_limit(envelope)
    return (
        f"{envelope.noun} is {len(data):,} bytes of compact JSON, over Customer.io's limit "
        f"of {limit:,} bytes; not sent"
    )


def _describe_transport(exc: BaseException) -> str:
    """A short kind for a transport failure (counted in the exhausted-retries message)."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "connection refused"
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError):
        return "connection dropped"
    if isinstance(exc, ConnectionError | aiohttp.ClientOSError):
        return "connection dropped"
    return f"transport error ({type(exc).__name__})"


def _unexpected(call: _Call, response: Response, count: int, envelope: _Envelope) -> str:
    where = f"HTTP {response.status} to {call.label} ({count} {envelope.noun}s)"
    if 300 <= response.status < 400:
        target = response.headers.get("location", "elsewhere")
        return (
            f"Customer.io redirected {where} to {target}: "
            "set the workspace's region, or track_url, to the host it names"
        )
    return (
        f"Customer.io answered {where}, which the client does not expect: "
        f"check the workspace's track_url ({call.api.base_url})"
    )


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first exception inside (possibly nested) exception groups."""
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first
