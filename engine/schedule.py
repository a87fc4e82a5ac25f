"""`sync run --due` (SPEC §7.4): which enabled syncs' cron schedules (UTC) have come due since
their last run, each decision logged on `cio_sync.schedule` (event `schedule.due` or
`schedule.not_due`, with its time in `fields`).

Deciding is cheap, so `run --due` may run every minute: the caller reads the last runs once,
then croniter takes one step back and at most one forward per scheduled sync. Several hosts may
decide at once: a run takes its sync's lock, and a second run of the same sync exits 5.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from croniter import croniter

from engine.config import Sync
from engine.config.cron import canonical_cron

log = logging.getLogger("cio_sync.schedule")

FIRST_RUN_HORIZON = dt.timedelta(days=31)
"""A sync that never ran is due if its schedule fired within this long before now; otherwise
it waits for its next time (a new yearly sync does not run in June)."""

_MINUTE = dt.timedelta(minutes=1)


class Decision(NamedTuple):
    """Whether a sync is due; `at` is the scheduled time that made it due, else its next time."""

    due: bool
    at: dt.datetime


def last_due(expression: str, now: dt.datetime) -> dt.datetime:
    """The latest minute at or before `now` that the expression names (UTC)."""
    # croniter steps back from strictly before its start, so start one minute past now's minute
    start = _minute(now) + _MINUTE
    return croniter(canonical_cron(expression), start).get_prev(dt.datetime)


def next_due(expression: str, now: dt.datetime) -> dt.datetime:
    """The first minute after `now`'s minute that the expression names (UTC)."""
    return croniter(canonical_cron(expression), _minute(now)).get_next(dt.datetime)


def decide(expression: str, started: dt.datetime | None, now: dt.datetime) -> Decision:
    """Due when the latest scheduled time at or before `now` is later than the last run's start
    (`started`; naive times are UTC), or, for a sync never run, within FIRST_RUN_HORIZON of now."""
    now = _utc(now)
    at = last_due(expression, now)
    due = now - at <= FIRST_RUN_HORIZON if started is None else at > _utc(started)
    return Decision(True, at) if due else Decision(False, next_due(expression, now))


def due_syncs(
    syncs: Sequence[Sync],
    last_runs: Mapping[str, Mapping[str, Any]],
    now: dt.datetime | None = None,
) -> list[Sync]:
    """The scheduled syncs among `syncs` that are due at `now` (default: the current time),
    given each one's last run (`started_at`); logs the decision for each, or that none is due."""
    now = _utc(now or dt.datetime.now(dt.UTC))
    chosen = [sync for sync in syncs if _is_due(sync, last_runs.get(sync.name), now)]
    if not chosen:
        why = "" if any(sync.schedule for sync in syncs) else ": no enabled sync has a schedule"
        log.info("nothing is due%s", why, extra={"event": "schedule.nothing_due", "fields": {}})
    return chosen


def _is_due(sync: Sync, last_run: Mapping[str, Any] | None, now: dt.datetime) -> bool:
    """Decide for one sync, and log the decision."""
    if not sync.schedule:
        log.debug(
            "sync '%s' has no schedule",
            sync.name,
            extra={"event": "schedule.none", "sync": sync.name, "fields": {}},
        )
        return False
    decision = decide(sync.schedule, last_run["started_at"] if last_run else None, now)
    at = decision.at.isoformat()
    if decision.due:
        log.info(
            "sync '%s' is due (scheduled %s)",
            sync.name,
            _shown(decision.at),
            extra={"event": "schedule.due", "sync": sync.name, "fields": {"scheduled": at}},
        )
    else:
        log.info(
            "sync '%s' is not due until %s",
            sync.name,
            _shown(decision.at),
            extra={"event": "schedule.not_due", "sync": sync.name, "fields": {"next": at}},
        )
    return decision.due


def _utc(moment: dt.datetime) -> dt.datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def _minute(moment: dt.datetime) -> dt.datetime:
    return _utc(moment).replace(second=0, microsecond=0)


def _shown(moment: dt.datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M} UTC"
