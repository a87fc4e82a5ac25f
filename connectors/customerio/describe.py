"""The calls a plan would make, in words a reviewer reads (`sync plan --format markdown`).

Counts come from the plan; the operations shown are built for the plan's sample records by the
same builders a run uses (`operations.build`), so what the plan shows is what a run sends.
Nothing here contacts Customer.io: a segment named by `segment:` or a collection is shown by
name, its id being found only when a run looks it up.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from connectors.customerio import limits, operations
from connectors.customerio.operations import Rejection
from engine.config import (
    CollectionSync,
    DeviceSync,
    EventSync,
    ManualSegmentSync,
    ObjectSync,
    PersonSync,
    RelationshipSync,
    Sync,
)
from engine.destination import PlannedCall, PlannedRecord

Counts = Mapping[str, int]
Samples = Mapping[str, Sequence[PlannedRecord]]
SHOWN_BYTES = 1000  # an operation shown longer than this is cut (with "…")


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def _requests(count: int, per_request: int) -> str:
    """How many requests `count` items take, `per_request` at most a request."""
    needed = -(-count // per_request)
    return f"{needed:,}" if needed <= 1 else f"at least {needed:,}"


def _cut(text: str) -> str:
    return text if len(text) <= SHOWN_BYTES else text[: SHOWN_BYTES - 1] + "…"


def _compact(value: Any) -> str:
    return orjson.dumps(value).decode()


# --- v2 batch operations --------------------------------------------------------------------


def _person_actions(sync: PersonSync) -> dict[str, str]:
    identify = (
        "person identify with _update: true (existing people only)"
        if sync.behavior == "update_only"
        else "person identify"
    )
    actions = {"add": identify, "update": identify, "remove": f"person {sync.on_remove}"}
    return actions | ({"rekey": "person identify"} if sync.stable_key else {})


def _event_actions(sync: EventSync) -> dict[str, str]:
    kind = "event/page/screen" if sync.event_type_column else sync.event_type
    return {"add": f"person {kind}"}


_ACTIONS: dict[type[Sync], Callable[[Any], dict[str, str]]] = {
    PersonSync: _person_actions,
    DeviceSync: lambda s: {
        "add": "person add_device",
        "update": "person add_device",
        "remove": "person delete_device",
    },
    EventSync: _event_actions,
    ObjectSync: lambda s: {
        "add": "object identify",
        "update": "object identify",
        "remove": "object delete",
    },
    RelationshipSync: lambda s: {
        "add": "person add_relationships",
        "update": "person add_relationships",
        "remove": "person delete_relationships",
    },
}
_WHY = {
    "add": "new",
    "update": "changed attributes only",
    "remove": "",
    "rekey": "rekey: the new identifier, whole",
}


def _sample_operation(sync: Sync, record: PlannedRecord) -> str:
    built = operations.build(sync, record)
    if built is None:
        return f"{record.key}: no request (nothing it sends changed)"
    if isinstance(built, Rejection):
        return f"{record.key}: not sent, refused before sending: {built.reason}"
    return _cut(_compact(built))


def _batch_calls(sync: Sync, counts: Counts, samples: Samples, max_ops: int) -> list[PlannedCall]:
    actions = _ACTIONS[type(sync)](sync)
    parts = []
    for op, action in actions.items():
        if counts.get(op, 0):
            why = f" ({_WHY[op]})" if _WHY[op] else ""
            parts.append(f"{counts[op]:,} {action}{why}")
    total = sum(counts.get(op, 0) for op in actions)
    if not total:
        return []
    summary = (
        f"{_requests(total, max_ops)} POST /api/v2/batch (Track API, at most {max_ops:,} "
        f"operations and {limits.MAX_BATCH_BYTES:,} bytes a request) with "
        f"{_plural(total, 'operation')}: {', '.join(parts)}"
    )
    shown = [_sample_operation(sync, r) for op in actions for r in samples.get(op, ())]
    return [PlannedCall(summary, shown), *_merge_calls(sync, counts, samples, max_ops)]


def _merge_calls(sync: Sync, counts: Counts, samples: Samples, max_ops: int) -> list[PlannedCall]:
    """A rekey's second step: the merges, sent once the new identifiers' identifies are
    acknowledged (a merge needs its primary to exist)."""
    count = counts.get("rekey", 0)
    if not count or not isinstance(sync, PersonSync):
        return []
    summary = (
        f"then {_requests(count, max_ops)} POST /api/v2/batch with {_plural(count, 'operation')}: "
        f"{count:,} person merge (primary: the new identifier, secondary: the old one, which "
        "Customer.io deletes after moving its data)"
    )
    shown = []
    for record in samples.get("rekey", ()):
        built = operations.merge(sync, record)
        shown.append(
            f"{record.prior}: not sent, refused before sending: {built.reason}"
            if isinstance(built, Rejection)
            else _cut(_compact(built))
        )
    return [PlannedCall(summary, shown)]


# --- manual segments and collections ------------------------------------------------------------


def _segment_calls(sync: ManualSegmentSync, counts: Counts, samples: Samples) -> list[PlannedCall]:
    calls = []
    segment = str(sync.segment_id) if sync.segment_id is not None else "{id}"
    if sync.segment_id is None and (counts.get("add") or counts.get("remove")):
        calls.append(
            PlannedCall(
                f"1 GET /v1/segments (App API) to find the manual segment '{sync.segment}' "
                "(and 1 POST /v1/segments to create it when it does not exist)"
            )
        )
    per_call = limits.MAX_SEGMENT_IDS_PER_CALL
    for op, action in (("add", "add_customers"), ("remove", "remove_customers")):
        count = counts.get(op, 0) + (counts.get("update", 0) if op == "add" else 0)
        if not count:
            continue
        path = f"/api/v1/segments/{segment}/{action}?id_type={sync.identifier}"
        ids = [r.key for r in samples.get(op, ())]
        shown = [_cut(f"POST {path} {_compact({'ids': ids})}")] if ids else []
        summary = (
            f"{_requests(count, per_call)} POST {path} (Track API, at most {per_call:,} ids "
            f"a call) with {_plural(count, 'id')}"
        ) + (" (the segment itself stays)" if op == "remove" else "")
        calls.append(PlannedCall(summary, shown))
    return calls


def _collection_calls(sync: CollectionSync, counts: Counts, samples: Samples) -> list[PlannedCall]:
    if counts.get("remove"):  # a teardown
        return [
            PlannedCall(
                f"1 GET /v1/collections (App API) to find the collection '{sync.collection}', "
                "then 1 DELETE /v1/collections/{id}: the collection and its contents are deleted"
            )
        ]
    if not (counts.get("add") or counts.get("update")):
        return []
    records = [*samples.get("add", ()), *samples.get("update", ())]
    rows = [row.get("a", row) for row in records[0].payload["r"]["rows"]] if records else []
    summary = (
        f"1 GET /v1/collections (App API) to find the collection '{sync.collection}', then "
        f"1 PUT /v1/collections/{{id}} replacing its contents with {_plural(len(rows), 'row')} "
        "(1 POST /v1/collections when it does not exist)"
    )
    shown = [_cut(f"PUT /v1/collections/{{id}} {_compact({'data': rows})}")] if rows else []
    return [PlannedCall(summary, shown)]


def describe_calls(
    sync: Sync, counts: Counts, samples: Samples, max_batch_ops: int
) -> list[PlannedCall]:
    """The calls a run of this plan would make; [] when it would make none."""
    if isinstance(sync, ManualSegmentSync):
        return _segment_calls(sync, counts, samples)
    if isinstance(sync, CollectionSync):
        return _collection_calls(sync, counts, samples)
    return _batch_calls(sync, counts, samples, max_batch_ops)
