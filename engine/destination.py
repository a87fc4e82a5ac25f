"""The delivery contract: what the engine hands a destination and what it hears back.

    engine ──PlanChunks──▶ Destination.deliver ──requests──▶ the destination's API
    engine ◀──Outcome(acked, rejected)── report callback ◀──answers──┘

A destination (Customer.io's is `connectors.customerio`) turns planned records into requests
and reports each record's fate as `Outcome`s: an acknowledged record enters the snapshot, a
rejected one is stored with its reason (SPEC §4.2, §4.4). The engine never imports a
destination: `engine.compose` finds it in the registry and the runner receives an opener.

A destination may write its operations in SQL (`operation_sql`, SPEC §7.1): the state database
then builds each row's operation text as it reads the plan, and a chunk carries those as
finished bytes in Arrow columns (`PlanChunk.built`); the rows the SQL leaves (NULL) come as
`PlannedRecord`s.

Also here, because both sides read them: a record's key (one column's text, or a JSON array of
several) and the attributes a record sends (SPEC §2.2 Values).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import orjson

from engine import logs
from engine.config import Sync

if TYPE_CHECKING:  # the contract's readers (`sync validate`, `list`) load no SQLAlchemy or Arrow
    import pyarrow as pa
    from sqlalchemy import FromClause, Select


def key_string(parts: Sequence[str]) -> str:
    """One key's text: the part itself when single, else a JSON array of the parts."""
    return parts[0] if len(parts) == 1 else orjson.dumps(list(parts)).decode()


def key_parts(key: str, width: int) -> list[str]:
    """The parts of a key written by `key_string`."""
    return [key] if width == 1 else list(orjson.loads(key))


class PlannedRecord(NamedTuple):
    """A plan row as stored: a tuple (a large run makes millions) holding JSON text, parsed only
    when a builder asks for it (`payload`, `before`)."""

    seq: int
    op: str  # add | update | remove | rekey
    key: str
    payload_json: str | None  # canonical {"a": attributes, "r": roles}; None for a removal
    before_json: str | None  # the snapshot's payload when it held the key (a rekey: the old key)
    prior: str | None = None  # a rekey's old key: the same record (stable key) under a new key

    @property
    def payload(self) -> dict[str, Any]:
        return orjson.loads(self.payload_json) if self.payload_json else {}

    @property
    def before(self) -> dict[str, Any] | None:
        return orjson.loads(self.before_json) if self.before_json else None

    def attributes(self, nulls: str) -> dict[str, Any]:
        """The attributes this record sends (SPEC §2.2): a record delivered whole omits NULLs; a
        changed one sends the attributes whose value changed, one that became NULL as null under
        `nulls: clear` and not at all under `nulls: skip`."""
        after: dict[str, Any] = self.payload.get("a", {})
        if self.op not in ("update", "rekey") or self.before_json is None:
            return {k: v for k, v in after.items() if v is not None}
        before = (self.before or {}).get("a", {})
        changed = {k: v for k, v in after.items() if k not in before or not _same(before[k], v)}
        if nulls == "skip":
            return {k: v for k, v in changed.items() if v is not None}
        return {k: v for k, v in changed.items() if v is not None or before.get(k) is not None}


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


PLAN_ROW_COLUMNS = ("seq", "op", "key", "payload", "before", "prior")
"""The columns of the plan rows a destination's `operation_sql` reads: a `PlannedRecord`'s."""


@dataclass
class PlanChunk:
    """A run of consecutive plan rows: operations the state database built, as an Arrow table
    (columns seq, and operation: compact JSON bytes), and the rows it left to the destination's
    own code."""

    built: pa.Table | None = None
    records: list[PlannedRecord] = field(default_factory=list)

    def __len__(self) -> int:
        return (0 if self.built is None else self.built.num_rows) + len(self.records)


@dataclass
class Outcome:
    """What one finished request (or a local check) decided about its records, by `seq`."""

    acked: list[int] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class DeliveryStats:
    """Counters a destination increments; one per sync run."""

    requests: int = 0  # attempts sent, retries included
    retries: int = 0
    throttled: int = 0  # 429 answers
    lowest_rate: float | None = None  # the lowest request rate the shared budget allowed

    def saw_rate(self, rate: float) -> None:
        rate = round(rate, 3)
        self.lowest_rate = rate if self.lowest_rate is None else min(self.lowest_rate, rate)


class RateBudget(Protocol):
    """The request starts of one workspace API, shared beyond this process (SPEC §7.3): every
    start takes one; a 429 lowers the rate for every process sharing it (`engine.budget`)."""

    rate: float  # starts a second allowed now, adapted after 429s

    async def take(self) -> None:
        """Return when one more request may start."""

    async def throttled(self) -> None:
        """A 429 arrived."""


BudgetFor = Callable[[str, int], RateBudget]
"""(an API's name, its rate limit) → the workspace's shared budget for that API."""


Report = Callable[[Outcome], Awaitable[None]]


class Drift(NamedTuple):
    """A delivered record the destination does not hold as last delivered (`verify`)."""

    key: str
    missing: bool  # not there at all; else it differs
    detail: str  # what is missing or what differs, in words


@dataclass(frozen=True)
class PlannedCall:
    """One kind of request a run would make, for a plan a reviewer reads: what, how many, and
    the exact operations (or request lines) of the plan's sample records."""

    summary: str  # e.g. "1 POST /api/v2/batch with 3 operations: 2 identify, 1 delete"
    operations: list[str] = field(default_factory=list)  # compact JSON or request lines


class Destination(Protocol):
    """What a destination offers the engine; opened with `async with` around its use."""

    identity: str  # what a snapshot delivered here is bound to (SPEC §4.10)

    async def __aenter__(self) -> Destination: ...

    async def __aexit__(self, *exc: object) -> None: ...

    def operation_sql(self, sync: Sync, rows: FromClause, dialect: str) -> Select[Any] | None:
        """A SELECT over plan `rows` (`PLAN_ROW_COLUMNS`) in the state database's `dialect`,
        giving one (`seq`, `operation`) row for each: the row's request item as text sent as it
        is, or NULL for a row `deliver` takes as a `PlannedRecord`. None when the destination
        has no SQL for this sync and dialect: every row then comes as a record."""

    async def deliver(
        self,
        sync: Sync,
        chunks: AsyncIterator[PlanChunk],
        report: Report,
        stats: DeliveryStats,
    ) -> None:
        """Send every planned record (built items and records); report each one's
        acknowledgement or rejection."""

    def describe_calls(
        self,
        sync: Sync,
        counts: Mapping[str, int],
        samples: Mapping[str, Sequence[PlannedRecord]],
    ) -> list[PlannedCall]:
        """The requests a run of this plan would make (`counts` by op: add, update, remove...),
        with the operations built for the sample records. Contacts nothing, so it needs no
        `async with`."""

    async def read_back(
        self, sync: Sync, delivered: Sequence[PlannedRecord], stats: DeliveryStats
    ) -> list[Drift]:
        """Read delivered records (their last delivered payloads) back from the destination and
        return those missing or different, under the destination's own conversions; UsageError
        when it cannot read this sync's records back."""

    async def check_credentials(self) -> str:
        """What the credentials reach, in words; DestinationAuthError when they are refused."""

    async def request(
        self, method: str, path: str, body: Any, params: dict[str, str]
    ) -> tuple[int, Any]:
        """One authorized raw call: the answer's status and body."""


def log_event(name: str, **fields: Any) -> Any:
    """The `extra=` of a logging call by which a destination reports an event (a retry, a 429)
    to operators: see `engine.logs`."""
    return logs.event(name, **fields)


OpenDestination = Callable[[str], Destination]
"""A workspace's name → its destination, not yet opened."""
