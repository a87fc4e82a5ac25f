"""A sync's lifecycle (SPEC §7.5): active, disabled, retiring, retired — and orphaned state.

    active ⇄ disabled      as the file's `enabled:` says, noted when a run starts
    active → retiring      `sync teardown NAME --yes` starts removing what the sync delivered
    retiring → retired     every removal was acknowledged; the snapshot is forgotten
    retiring/retired → active (or disabled)    `sync reset NAME --yes`

A sync without a row in `cio_sync_states` has never changed state: it is active or disabled as
its file says. Each row carries a `version`, incremented by every change of state. Teardown and
reset read the version when they start and change the state with
`UPDATE ... WHERE version = :seen` (`transition`): of two processes that read one version, one
changes it and the other finds the row changed and stops (`StateChanged`, exit 5), so two
processes cannot both tear down or both reset a sync.

A run refuses a retiring or retired sync (`check_runnable`): its records were removed, and a
run would deliver them again. Orphaned state is what the store holds of a sync whose file was
removed: a snapshot or run history (`orphans`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine import ledger
from engine.config import Sync
from engine.errors import StateChanged, SyncRetired
from engine.state import StateStore, insert_new, now, runs, snapshot, sync_states
from engine.sync_status import RETIRED, RETIRING, configured, orphaned


def definition(sync: Sync) -> str:
    """The version of a sync's definition: the md5 of its model as canonical JSON, without where
    its file is (a moved or reformatted file is the same definition)."""
    dumped = sync.model_dump(mode="json", exclude={"file", "line"})
    text = orjson.dumps(dumped, option=orjson.OPT_SORT_KEYS)
    return hashlib.md5(text, usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class State:
    """A sync's state row as read: its status and the version a change must find."""

    sync: str
    status: str
    version: int


def read(store: StateStore, sync: Sync) -> State:
    """The sync's state, its row created (version 0, status from the file) when it had none."""
    return read_name(store, sync.name, configured(sync))


def read_name(store: StateStore, name: str, status: str) -> State:
    """The state of the sync named so, its row created with `status` when it had none."""
    with store.tx() as conn:
        row = conn.execute(sa.select(sync_states).where(sync_states.c.sync == name)).first()
        if row is None:
            values = {
                "sync": name,
                "status": status,
                "version": 0,
                "definition": None,
                "changed_at": now(),
            }
            insert_new(conn, sync_states, values)  # a concurrent reader may insert it first
            row = conn.execute(sa.select(sync_states).where(sync_states.c.sync == name)).one()
        return State(row.sync, row.status, row.version)


def statuses(store: StateStore) -> dict[str, str]:
    """Every stored status, by sync."""
    with store.tx() as conn:
        return dict(conn.execute(sa.select(sync_states.c.sync, sync_states.c.status)).all())


def transition(conn: Connection, seen: State, status: str, what: str) -> State:
    """Change the state found as `seen` to `status`, in the caller's transaction; StateChanged
    when another process changed it since it was read (`what` names the command)."""
    changed = conn.execute(
        sa.update(sync_states)
        .where(sync_states.c.sync == seen.sync, sync_states.c.version == seen.version)
        .values(status=status, version=seen.version + 1, changed_at=now())
    )
    if changed.rowcount != 1:
        raise StateChanged(
            f"sync '{seen.sync}' was changed by another process (a teardown or a reset) while "
            f"this {what} ran; it did nothing more",
            f"see `sync list` for its state now, then run the {what} again if it is still needed",
        )
    return State(seen.sync, status, seen.version + 1)


def check_runnable(store: StateStore, sync: Sync) -> None:
    """Refuse a run of a retiring or retired sync (SyncRetired, exit 2); note the status its
    file gives (active or disabled) and the definition it runs, a change of status being a
    change of state (its version moves)."""
    seen = read(store, sync)
    if seen.status == RETIRED:
        raise SyncRetired(
            f"sync '{sync.name}' is retired: `sync teardown` removed what it delivered, and a "
            "run would deliver it all again",
            f"to deliver it again: sync reset {sync.name} --yes; else remove its file",
        )
    if seen.status == RETIRING:
        raise SyncRetired(
            f"sync '{sync.name}' is being torn down, or its teardown did not finish",
            f"finish it: sync teardown {sync.name} --yes; or make it active: "
            f"sync reset {sync.name} --yes",
        )
    with store.tx() as conn:
        if seen.status != configured(sync):
            transition(conn, seen, configured(sync), "run")
        conn.execute(
            sa.update(sync_states)
            .where(sync_states.c.sync == sync.name)
            .values(definition=definition(sync))
        )


def orphans(store: StateStore, known: Iterable[str]) -> list[str]:
    """Syncs the store holds a snapshot or run history of whose file is gone (the rule:
    `engine.sync_status.orphaned`)."""
    with store.tx() as conn:
        delivered = conn.execute(sa.select(snapshot.c.sync).distinct()).scalars().all()
        ran = conn.execute(sa.select(runs.c.sync).distinct()).scalars().all()
        retired = (
            conn.execute(sa.select(sync_states.c.sync).where(sync_states.c.status == RETIRED))
            .scalars()
            .all()
        )
    return orphaned(known, delivered, ran, retired)


def reset(store: StateStore, seen: State, sync: Sync | None) -> int:
    """`sync reset`: forget the snapshot and make the sync active again (or disabled, as its file
    says); an orphan (no file, `sync` None) is marked retired. How many records were forgotten;
    StateChanged when another process changed the state since `seen` was read."""
    with store.tx() as conn:
        transition(conn, seen, configured(sync) if sync is not None else RETIRED, "reset")
        return ledger.forget(conn, seen.sync)
