"""A Customer.io workspace as the engine sees it: identity, App API look-ups, and delivery.

The engine hands over planned records; this module turns them into requests through the one
`CustomerIOClient` of the workspace (so every sync of the workspace shares its rate budget) and
reports each record's fate back as `Outcome`s. With `emulator: true` the workspace is the
project's own emulator, started in this process on a free loopback port with fresh credentials.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from itertools import groupby
from pathlib import Path
from typing import Any, Literal

import orjson
from sqlalchemy import FromClause, Select

from connectors.customerio import describe, limits, operations, sqlops, verify
from connectors.customerio.client import CustomerIOClient, Encoded
from connectors.customerio.config import EMULATOR_DB, CustomerIOWorkspace
from connectors.customerio.errors import message
from connectors.customerio.operations import Rejection
from connectors.customerio.policy import ClientSettings
from engine.config import CollectionSync, ManualSegmentSync, PersonSync, Sync
from engine.destination import (
    BudgetFor,
    DeliveryStats,
    Drift,
    Outcome,
    PlanChunk,
    PlannedCall,
    PlannedRecord,
    Report,
)
from engine.errors import DestinationError, UsageError

Chunks = AsyncIterator[PlanChunk]


def _secret(value: Any) -> str:
    return value.get_secret_value() if value is not None else ""


def settings_for(
    workspace: CustomerIOWorkspace, track_url: str, app_url: str, **keys: str
) -> ClientSettings:
    return ClientSettings(
        track_url=track_url,
        app_url=app_url,
        site_id=keys.get("site_id", workspace.site_id or ""),
        track_api_key=keys.get("track_api_key", _secret(workspace.track_api_key)),
        app_api_key=keys.get("app_api_key", _secret(workspace.app_api_key)) or None,
        rate_limit=workspace.rate_limit,
        app_rate_limit=workspace.app_rate_limit,
        concurrency=workspace.concurrency,
        timeout_s=workspace.timeout_s,
        max_retries=workspace.max_retries,
        max_batch_ops=workspace.max_batch_ops,
    )


def collection_problem(rows: list[dict[str, Any]]) -> str | None:
    """The documented collection limits: 10,000,000 bytes in all, 10,000 bytes a row."""
    for index, row in enumerate(rows):
        size = len(orjson.dumps(row))
        if size > limits.MAX_COLLECTION_ROW_BYTES:
            return (
                f"row {index + 1} is {size:,} bytes; a collection row may have at most "
                f"{limits.MAX_COLLECTION_ROW_BYTES:,}: trim its columns"
            )
    total = len(orjson.dumps(rows))
    if total > limits.MAX_COLLECTION_BYTES:
        return (
            f"the collection is {total:,} bytes; Customer.io takes at most "
            f"{limits.MAX_COLLECTION_BYTES:,}: select fewer rows or columns"
        )
    return None


def _segment_items(
    id_type: str, records: Iterable[PlannedRecord]
) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(seq, id) pairs to send, and (seq, reason) for ids over the 150-byte limit (not sent)."""
    items, rejected = [], []
    for record in records:
        bad = operations.check_person(id_type, record.key)
        if bad is None:
            items.append((record.seq, record.key))
        else:
            rejected.append((record.seq, bad.reason))
    return items, rejected


class CustomerIODestination:
    """One workspace: `async with` opens its client (and its emulator, when it is one)."""

    def __init__(
        self, workspace: CustomerIOWorkspace, root: Path, budget_for: BudgetFor | None = None
    ) -> None:
        self.workspace = workspace
        self.root = root
        self.budget_for = budget_for
        self.identity = workspace.identity(root)
        self._emulator: Any = None
        self.client: CustomerIOClient | None = None

    async def __aenter__(self) -> CustomerIODestination:
        self.client = CustomerIOClient(self._settings(), budget_for=self.budget_for)
        await self.client.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.client is not None:
            await self.client.__aexit__(*exc)
        if self._emulator is not None:
            self._emulator.stop()

    def _settings(self) -> ClientSettings:
        ws = self.workspace
        if not ws.emulator:
            return settings_for(ws, ws.resolved_track_url(), ws.resolved_app_url())
        from cio_emulator import DatabaseError, EmulatorConfig, start_in_thread

        config = EmulatorConfig(
            site_id="sandbox",
            track_api_key=secrets.token_hex(16),
            app_api_key=secrets.token_hex(16),
            db_path=self.root / EMULATOR_DB,
        )
        (self.root / EMULATOR_DB).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._emulator = start_in_thread(config)
        except DatabaseError as exc:
            raise DestinationError(
                str(exc),
                "move the file aside: the embedded emulator then starts empty (and `sync reset "
                "NAME --yes` makes a sync send its rows to it again)",
            ) from exc
        url = self._emulator.url
        return settings_for(
            ws,
            url,
            url,
            site_id=config.site_id,
            track_api_key=config.track_api_key,
            app_api_key=config.app_api_key,
        )

    @property
    def api(self) -> CustomerIOClient:
        assert self.client is not None, "use the destination inside `async with`"
        return self.client

    def operation_sql(self, sync: Sync, rows: FromClause, dialect: str) -> Select[Any] | None:
        """The v2 operation of each plan row, written by the state database
        (`connectors.customerio.sqlops`); None for the syncs and dialects it does not cover."""
        return sqlops.operation_sql(sync, rows, dialect)

    async def deliver(
        self, sync: Sync, chunks: Chunks, report: Report, stats: DeliveryStats
    ) -> None:
        """Send every planned record; report each one's acknowledgement or rejection."""
        deliver = _DELIVERIES.get(type(sync), CustomerIODestination._deliver_operations)
        await deliver(self, sync, chunks, report, stats)

    def describe_calls(
        self,
        sync: Sync,
        counts: Mapping[str, int],
        samples: Mapping[str, Sequence[PlannedRecord]],
    ) -> list[PlannedCall]:
        """The requests a run of this plan would make, the samples' operations built as a run
        builds them (`connectors.customerio.describe`); contacts nothing."""
        return describe.describe_calls(sync, counts, samples, self.workspace.max_batch_ops)

    async def read_back(
        self, sync: Sync, delivered: Sequence[PlannedRecord], stats: DeliveryStats
    ) -> list[Drift]:
        """Delivered records read back through the App API (`connectors.customerio.verify`),
        paced at `app_rate_limit`; UsageError for events and relationships, which it cannot
        read back."""
        reason = self.workspace.unverifiable(sync)
        if reason:
            raise UsageError(reason, "verify person, device, object, segment or collection syncs")
        if not delivered:
            return []
        return await verify.read_back(self.api, sync, delivered, stats)

    async def check_credentials(self) -> str:
        """What the Track API credentials reach (GET /api/v1/accounts/region); a refusal raises
        DestinationAuthError (exit 4)."""
        answer = await self.api.track("GET", "/api/v1/accounts/region")
        if answer.status >= 300:
            raise DestinationError(
                f"the region check answered {answer.status}: {message(answer.body)}",
                "check the workspace's region and track_url",
            )
        where = "the embedded emulator" if self.workspace.emulator else "Customer.io"
        region = (answer.body or {}).get("region") if isinstance(answer.body, dict) else None
        settings = self.api.settings
        return f"{where} at {settings.track_url}, site id {settings.site_id}" + (
            f", region {region}" if region else ""
        )

    async def request(
        self, method: str, path: str, body: Any, params: dict[str, str]
    ) -> tuple[int, Any]:
        """One authorized call: /api/... to the Track API, /v1/... to the App API."""
        if not path.startswith(("/api/", "/v1/")):
            raise UsageError("PATH must start with /api/ (Track API) or /v1/ (App API)")
        call = self.api.track if path.startswith("/api/") else self.api.app
        answer = await call(method, path, json=body, params=params or None)
        return answer.status, answer.body

    async def _deliver_operations(
        self, sync: Sync, chunks: Chunks, report: Report, stats: DeliveryStats
    ) -> None:
        if not isinstance(sync, PersonSync) or sync.stable_key is None:
            await self.api.send_encoded(self._encoded(sync, chunks, report), report, stats)
            return
        rekeys: list[PlannedRecord] = []
        others = _set_aside_rekeys(chunks, rekeys)
        await self.api.send_encoded(self._encoded(sync, others, report), report, stats)
        if rekeys:
            await self._rekey(sync, rekeys, report, stats)

    async def _rekey(
        self, sync: PersonSync, records: list[PlannedRecord], report: Report, stats: DeliveryStats
    ) -> None:
        """Identify each new identifier with its whole record; then merge the old person into
        each one acknowledged (a merge whose primary does not exist yet does nothing). A record
        counts as delivered when its merge is acknowledged; one refused at either step stays
        planned, and the next run plans the rekey again. Rekeys are few: they are held here."""
        identified: list[int] = []

        async def first_step(outcome: Outcome) -> None:
            identified.extend(outcome.acked)
            if outcome.rejected:
                await report(Outcome(acked=[], rejected=outcome.rejected))

        encoded = operations.encode(sync, records)
        await first_step(Outcome(acked=encoded.acked, rejected=encoded.rejected))
        await self.api.send_encoded([encoded.items], first_step, stats)
        done = set(identified)
        merges: list[tuple[int, bytes | str]] = []
        for record in (r for r in records if r.seq in done):
            built = operations.merge(sync, record)
            merges.append(
                (record.seq, built.reason if isinstance(built, Rejection) else orjson.dumps(built))
            )
        if merges:
            await self.api.send_encoded([merges], report, stats)

    async def _deliver_collection(
        self, sync: CollectionSync, chunks: Chunks, report: Report, stats: DeliveryStats
    ) -> None:
        async for chunk in chunks:
            for record in chunk.records:
                if record.op == "remove":
                    await report(await self._delete_collection(sync, record, stats))
                else:
                    await report(await self._replace_collection(sync, record, stats))

    async def _encoded(
        self, sync: Sync, chunks: Chunks, report: Report
    ) -> AsyncIterator[Sequence[Encoded]]:
        """Each chunk's operations: those the state database built, as they are, then those of
        the records it left, built here."""
        given = 0  # operations handed to the client so far: its bodies line up with them
        async for chunk in chunks:
            encoded = operations.encode(sync, chunk.records)
            if encoded.acked or encoded.rejected:
                await report(Outcome(acked=encoded.acked, rejected=encoded.rejected))
            built = self.api.pack_built(chunk.built, given) if chunk.built is not None else []
            given += (chunk.built.num_rows if chunk.built is not None else 0) + len(encoded.items)
            yield [*built, *encoded.items] if built else encoded.items

    async def _deliver_segment(
        self, sync: ManualSegmentSync, chunks: Chunks, report: Report, stats: DeliveryStats
    ) -> None:
        segment_id = await self.segment_id(sync, stats)
        id_type = sync.identifier
        async for chunk in chunks:
            for op, group in groupby(chunk.records, key=lambda r: r.op):
                action: Literal["add", "remove"] = "remove" if op == "remove" else "add"
                items, rejected = _segment_items(id_type, group)
                if rejected:
                    await report(Outcome(acked=[], rejected=rejected))
                if items:
                    await self.api.send_segment(segment_id, action, id_type, items, report, stats)

    async def _replace_collection(
        self, sync: CollectionSync, record: PlannedRecord, stats: DeliveryStats
    ) -> Outcome:
        """Create the collection, or replace its whole contents, through the App API."""
        rows = [row["a"] for row in record.payload["r"]["rows"]]
        problem = collection_problem(rows)
        if problem:
            return Outcome(acked=[], rejected=[(record.seq, problem)])
        name = sync.collection
        ids = await self._collection_ids(name, stats)
        if ids:
            answer = await self.api.app(
                "PUT", f"/v1/collections/{ids[0]}", json={"data": rows}, stats=stats
            )
        else:
            answer = await self.api.app(
                "POST", "/v1/collections", json={"name": name, "data": rows}, stats=stats
            )
        if 200 <= answer.status < 300:
            return Outcome(acked=[record.seq], rejected=[])
        return Outcome(
            acked=[],
            rejected=[
                (record.seq, f"the App API answered {answer.status}: {message(answer.body)}")
            ],
        )

    async def _collection_ids(self, name: str, stats: DeliveryStats) -> list[int]:
        found = await self.api.app("GET", "/v1/collections", stats=stats)
        collections = (found.body or {}).get("collections", [])
        return [c["id"] for c in collections if c.get("name") == name]

    async def _delete_collection(
        self, sync: CollectionSync, record: PlannedRecord, stats: DeliveryStats
    ) -> Outcome:
        """Delete the collection (`sync teardown`); one already gone counts as removed."""
        for collection_id in await self._collection_ids(sync.collection, stats):
            answer = await self.api.app("DELETE", f"/v1/collections/{collection_id}", stats=stats)
            if answer.status >= 300 and answer.status != 404:
                reason = f"the App API answered {answer.status}: {message(answer.body)}"
                return Outcome(acked=[], rejected=[(record.seq, reason)])
        return Outcome(acked=[record.seq], rejected=[])

    async def segment_id(self, sync: ManualSegmentSync, stats: DeliveryStats | None = None) -> int:
        """`segment_id`, or the manual segment named `segment:`, created when it does not exist."""
        if sync.segment_id is not None:
            return int(sync.segment_id)
        name = sync.segment
        found = await self.api.app("GET", "/v1/segments", stats=stats)
        for segment in (found.body or {}).get("segments", []):
            if segment.get("name") == name and segment.get("type") == "manual":
                return int(segment["id"])
        created = await self.api.app(
            "POST", "/v1/segments", json={"segment": {"name": name}}, stats=stats
        )
        if created.status >= 300:
            raise DestinationError(f"creating manual segment '{name}' answered {created.status}")
        return int(created.body["segment"]["id"])


async def _set_aside_rekeys(chunks: Chunks, rekeys: list[PlannedRecord]) -> Chunks:
    """The chunks without their rekeys, which are appended to `rekeys` for a second pass."""
    async for chunk in chunks:
        rekeys.extend(r for r in chunk.records if r.op == "rekey")
        yield PlanChunk(chunk.built, [r for r in chunk.records if r.op != "rekey"])


_DELIVERIES: dict[type[Sync], Any] = {
    ManualSegmentSync: CustomerIODestination._deliver_segment,
    CollectionSync: CustomerIODestination._deliver_collection,
}
"""How a sync type is delivered when not as v2 operations (`_deliver_operations`)."""
