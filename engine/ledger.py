"""Run history, issues (invalid and rejected records), destination bindings and reset."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine.report import RunRecord
from engine.state import (
    StateStore,
    bindings,
    issues,
    now,
    plan,
    runs,
    snapshot,
    staging,
    upsert,
    work,
)

STALE_WORK = dt.timedelta(hours=24)


def begin_work(store: StateStore, run: str, sync: str, kind: str) -> None:
    """Register staging/plan ownership, sweeping what killed processes left behind."""
    with store.tx() as conn:
        swept = [work.c.created_at < now() - STALE_WORK]
        if kind == "run":  # a run holds the sync's lock: earlier runs of the sync are dead
            swept.append(sa.and_(work.c.sync == sync, work.c.kind == "run"))
        stale = sa.select(work.c.run).where(sa.or_(*swept))
        old = [row.run for row in conn.execute(stale)]
        for table in (staging, plan, work):
            if old:
                conn.execute(sa.delete(table).where(table.c.run.in_(old)))
        conn.execute(sa.insert(work).values(run=run, sync=sync, kind=kind, created_at=now()))


def end_work(store: StateStore, run: str) -> None:
    with store.tx() as conn:
        for table in (staging, plan, work):
            conn.execute(sa.delete(table).where(table.c.run == run))


def start_run(
    store: StateStore,
    run: str,
    sync: str,
    destination: str,
    full: bool,
    *,
    definition: str | None = None,
    kind: str = "run",
) -> None:
    """Record the run's start (`kind` run or teardown, the `definition` it runs); runs of the
    sync still marked running died (we hold the lock)."""
    with store.tx() as conn:
        conn.execute(
            sa.update(runs)
            .where(runs.c.sync == sync, runs.c.status == "running")
            .values(status="interrupted", exit_code=1, message="the process ended mid-run")
        )
        conn.execute(
            sa.insert(runs).values(
                id=run,
                sync=sync,
                destination=destination,
                started_at=now(),
                status="running",
                full=full,
                kind=kind,
                definition=definition,
            )
        )


def finish_run(store: StateStore, run: str, record: RunRecord) -> None:
    with store.tx() as conn:
        values = record.columns()
        conn.execute(sa.update(runs).where(runs.c.id == run).values(ended_at=now(), **values))


def record_progress(conn: Connection, run: str, record: RunRecord) -> None:
    """The counters of a run still going, as far as it has come."""
    conn.execute(sa.update(runs).where(runs.c.id == run).values(**record.counts()))


def add_issues(
    conn: Connection, run: str, sync: str, kind: str, found: Iterable[tuple[str | None, str]]
) -> None:
    rows = [
        {"run": run, "sync": sync, "key": key, "kind": kind, "reason": reason}
        for key, reason in found
    ]
    if rows:
        conn.execute(sa.insert(issues), rows)


def add_rejections(
    conn: Connection, run: str, sync: str, rejected: Sequence[tuple[int, str]]
) -> None:
    """Store rejections by plan sequence number, with each record's key."""
    if not rejected:
        return
    reasons = dict(rejected)
    keys = conn.execute(
        sa.select(plan.c.seq, plan.c.key).where(plan.c.run == run, plan.c.seq.in_(list(reasons)))
    )
    add_issues(conn, run, sync, "rejected", ((row.key, reasons[row.seq]) for row in keys))


def bind(store: StateStore, sync: str, destination: str) -> str | None:
    """Bind the sync to `destination`; return the previous destination when it changed.

    A run binds under its sync's lock; the binding is still written by an upsert, so that two
    binders of one sync (a lock taken over from a holder that was not gone) cannot collide."""
    with store.tx() as conn:
        previous = conn.execute(
            sa.select(bindings.c.destination).where(bindings.c.sync == sync)
        ).scalar()
        if previous == destination:
            return None
        upsert(conn, bindings, {"sync": sync, "destination": destination, "bound_at": now()})
        return previous


def history(store: StateStore, sync: str | None, limit: int) -> list[dict[str, Any]]:
    query = sa.select(runs).order_by(runs.c.started_at.desc(), runs.c.id.desc()).limit(limit)
    if sync:
        query = query.where(runs.c.sync == sync)
    with store.tx() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def last_runs(store: StateStore, *, finished: bool = False) -> dict[str, dict[str, Any]]:
    """Each sync's latest run row (kind run: not a teardown or a verification); with
    `finished`, its latest run that is no longer running."""
    latest = (
        sa.select(runs.c.sync, sa.func.max(runs.c.started_at).label("at"))
        .where(sa.or_(runs.c.kind == "run", runs.c.kind.is_(None)))
        .group_by(runs.c.sync)
    )
    if finished:
        latest = latest.where(runs.c.status != "running")
    sub = latest.subquery()
    query = sa.select(runs).join(
        sub, sa.and_(runs.c.sync == sub.c.sync, runs.c.started_at == sub.c.at)
    )
    with store.tx() as conn:
        return {row.sync: dict(row._mapping) for row in conn.execute(query)}


def latest_issues(
    store: StateStore, sync: str
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The latest finished run of the sync and its invalid and rejected records."""
    query = (
        sa.select(runs)
        .where(runs.c.sync == sync, runs.c.status != "running")
        .order_by(runs.c.started_at.desc())
        .limit(1)
    )
    with store.tx() as conn:
        run = conn.execute(query).first()
        if run is None:
            return None, []
        found = conn.execute(_issues_of(run.id))
        return dict(run._mapping), [dict(row._mapping) for row in found]


def run_issues(
    store: StateStore, run: str, limit: int
) -> tuple[dict[str, Any] | None, dict[str, int], list[dict[str, Any]]]:
    """A run by its id, how many records of each kind (invalid, rejected, ...) it set aside,
    and the first `limit` of those records with their reasons."""
    with store.tx() as conn:
        found = conn.execute(sa.select(runs).where(runs.c.id == run)).first()
        if found is None:
            return None, {}, []
        kinds = conn.execute(
            sa.select(issues.c.kind, sa.func.count().label("n"))
            .where(issues.c.run == run)
            .group_by(issues.c.kind)
            .order_by(issues.c.kind)
        )
        counts = {row.kind: row.n for row in kinds}
        rows = conn.execute(_issues_of(run).limit(limit))
        return dict(found._mapping), counts, [dict(row._mapping) for row in rows]


def _issues_of(run: str) -> sa.Select[Any]:
    return (
        sa.select(issues.c.key, issues.c.kind, issues.c.reason)
        .where(issues.c.run == run)
        .order_by(issues.c.kind, issues.c.key)
    )


def forget(conn: Connection, sync: str) -> int:
    """Forget the sync's snapshot (every destination) and binding; how many records it held."""
    gone = conn.execute(sa.delete(snapshot).where(snapshot.c.sync == sync)).rowcount or 0
    conn.execute(sa.delete(bindings).where(bindings.c.sync == sync))
    return gone


def reset(store: StateStore, sync: str) -> int:
    """Forget the sync's snapshot (every destination); return how many records were forgotten."""
    with store.tx() as conn:
        return forget(conn, sync)
