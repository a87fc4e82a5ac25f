"""The guard (SPEC §4.5): what stops a run before it sends anything. A mirror may remove at most
`guard.max_removals` of the snapshot, and never everything because the source came back empty;
a collection is never replaced by an empty result."""

from __future__ import annotations

from typing import Any

from engine.config import Sync
from engine.diff import PlanCounts


def verdict(sync: Sync, counts: PlanCounts, rows: int, mode: str, *, full: bool) -> dict[str, Any]:
    """The guard's verdict on a plan (SPEC §4.5): its removal limit, the removals planned,
    whether it would stop the run and why. `rows`: rows the source returned; `mode`: how it was
    read (an incremental read removes nothing)."""
    if sync.whole:
        empty = rows == 0
        reason = (
            "the query returned no rows: replacing the collection would empty it" if empty else ""
        )
        return {"limit": None, "removals": 0, "would_trip": empty, "reason": reason}
    if not sync.is_mirror or full or mode != "full":
        return {"limit": None, "removals": counts.remove, "would_trip": False, "reason": ""}
    limit = sync.guard.limit(counts.snapshot_size)
    reason = ""
    if rows == 0 and counts.snapshot_size > 0:
        reason = (
            f"the source returned no rows while the snapshot holds {counts.snapshot_size}: "
            "a mirror would remove everything"
        )
    elif counts.remove > limit:
        reason = (
            f"{counts.remove} removals exceed guard.max_removals "
            f"({sync.guard.max_removals} → {limit} of {counts.snapshot_size})"
        )
    return {"limit": limit, "removals": counts.remove, "would_trip": bool(reason), "reason": reason}
