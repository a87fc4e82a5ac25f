"""`sync run --due`: which enabled syncs' cron schedules (UTC) have come due since their last run."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from engine.config import Sync


def _matches(field: str, value: int, low: int, high: int) -> bool:
    for part in field.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            step = int(step_text)
        if part == "*":
            start, end = low, high
        elif "-" in part:
            start, end = (int(x) for x in part.split("-", 1))
        else:
            start = end = int(part)
        if start <= value <= end and (value - start) % step == 0:
            return True
    return False


def cron_matches(expression: str, at: dt.datetime) -> bool:
    """Whether a five-field cron expression names the minute `at` (UTC; Sunday is 0 or 7)."""
    minute, hour, day, month, weekday = expression.split()
    dow = at.isoweekday() % 7
    return (
        _matches(minute, at.minute, 0, 59)
        and _matches(hour, at.hour, 0, 23)
        and _matches(day, at.day, 1, 31)
        and _matches(month, at.month, 1, 12)
        and (_matches(weekday, dow, 0, 7) or (dow == 0 and _matches(weekday, 7, 0, 7)))
    )


def last_due(
    expression: str, now: dt.datetime, horizon: dt.timedelta = dt.timedelta(days=31)
) -> dt.datetime | None:
    """The latest minute at or before `now` that the expression names, within `horizon`."""
    at = now.replace(second=0, microsecond=0)
    earliest = at - horizon
    while at >= earliest:
        if cron_matches(expression, at):
            return at
        at -= dt.timedelta(minutes=1)
    return None


def due_syncs(
    syncs: Sequence[Sync], last_runs: dict[str, dict[str, Any]], now: dt.datetime | None = None
) -> list[Sync]:
    """Scheduled syncs whose latest due minute falls after their last run started."""
    now = now or dt.datetime.now(dt.UTC)
    chosen = []
    for sync in syncs:
        if not sync.schedule:
            continue
        due = last_due(sync.schedule, now)
        last = last_runs.get(sync.name)
        started = last["started_at"] if last else None
        if started is not None and started.tzinfo is None:
            started = started.replace(tzinfo=dt.UTC)
        if due is not None and (started is None or started < due):
            chosen.append(sync)
    return chosen
