"""A sync's lifecycle in the state store (SPEC §7.5): statuses, the definition each run ran,
orphaned state, the optimistic version that lets one of two processes retire or reset a sync,
and the forward migration that brings it to older stores."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from support import (
    PEOPLE_SYNC,
    PG_URL,
    Project,
    drop_schema,
    load_project,
    people_table,
    pg_available,
    private_schema,
    track_requests,
)
from test_concurrent_processes import at_once

from cio_emulator import EmulatorHandle
from engine import lifecycle, sync_status
from engine.config import resolve_duckdb_url
from engine.errors import StateChanged
from engine.state import RUN_EXTRAS, SCHEMA_VERSION, StateStore, meta, runs, sync_states

LOG_BODIES = True  # the emulator keeps request bodies: each removal is counted
ROWS = [(f"u{i}", f"{i}@x.io", "free", i) for i in range(20)]


def listed(project: Project) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in project.json("list")["syncs"]}


def opened(project: Project) -> StateStore:
    store = StateStore(resolve_duckdb_url(project.state_url, project.root))
    store.migrate()
    return store


def test_a_run_records_the_definition_it_ran(duck_project: Project) -> None:
    project = duck_project
    people_table(project, ROWS[:2])
    project.write_sync("people", PEOPLE_SYNC.format(behavior="upsert"))
    project.run_json("people")
    project.write_sync(
        "people", "# the same sync, its lines moved\n\n" + PEOPLE_SYNC.format(behavior="upsert")
    )
    project.run_json("people")
    project.write_sync("people", PEOPLE_SYNC.format(behavior="mirror"))
    project.run_json("people")
    changed, moved, first = project.json("history", "people")["runs"]
    assert first["definition"] == moved["definition"] != changed["definition"]
    sync = load_project(project.root).syncs["people"]
    assert changed["definition"] == lifecycle.definition(sync)
    assert len(changed["definition"]) == 32  # md5 hex


def test_a_disabled_sync_is_disabled_and_a_removed_one_orphaned(duck_project: Project) -> None:
    project = duck_project
    people_table(project, ROWS[:2])
    project.write_sync("people", PEOPLE_SYNC.format(behavior="upsert"))
    project.write_sync("later", PEOPLE_SYNC.format(behavior="upsert") + "enabled: false\n")
    project.run_json("people")
    project.run_json("later")  # named: it runs, with a warning
    rows = listed(project)
    assert (rows["people"]["lifecycle"], rows["later"]["lifecycle"]) == ("active", "disabled")
    store = opened(project)
    try:
        assert lifecycle.statuses(store) == {"people": "active", "later": "disabled"}
    finally:
        store.dispose()
    (project.root / "syncs" / "later.yml").unlink()
    orphan = listed(project)["later"]
    assert (orphan["lifecycle"], orphan["status"], orphan["object"]) == (
        "orphaned",
        "orphaned",
        None,
    )
    code, output = project.cli("list")
    assert code == 0 and "orphaned" in output.splitlines()[-1]
    code, output = project.cli("reset", "later", "--yes")
    assert code == 0 and "forgot 2 delivered record(s); it has no file: marked retired" in output
    assert "later" not in listed(project)  # a retired sync without a snapshot is no orphan


def test_a_reset_that_read_an_older_version_changes_nothing(duck_project: Project) -> None:
    project = duck_project
    people_table(project, ROWS[:2])
    project.write_sync("people", PEOPLE_SYNC.format(behavior="upsert"))
    project.run_json("people")
    sync = load_project(project.root).syncs["people"]
    store = opened(project)
    try:
        first, second = lifecycle.read(store, sync), lifecycle.read(store, sync)
        assert first == second  # two processes read one version
        assert lifecycle.reset(store, first, sync) == 2
        with pytest.raises(StateChanged) as lost:
            lifecycle.reset(store, second, sync)
        assert lost.value.exit_code == 5
        assert "was changed by another process" in lost.value.message
        assert lifecycle.read(store, sync).version == first.version + 1
    finally:
        store.dispose()


def test_a_version_2_store_is_migrated_keeping_its_history(state_url: str, tmp_path: Path) -> None:
    url = resolve_duckdb_url(state_url, tmp_path)
    store = StateStore(url)
    try:
        store.migrate()
        with store.tx() as conn:  # make it the version-2 shape, holding one run
            for table in ("cio_sync_states", "cio_sync_budget", "cio_sync_cursors"):
                conn.execute(sa.text(f"DROP TABLE {table}"))
            conn.execute(sa.text("DROP TABLE cio_sync_runs"))  # DuckDB drops no indexed column
            later = {"kind", "definition", *(c.name for c in RUN_EXTRAS)}
            old = [c._copy() for c in runs.columns if c.name not in later]
            sa.Table("cio_sync_runs", sa.MetaData(), *old).create(conn)
            conn.execute(
                sa.text(
                    "INSERT INTO cio_sync_runs (id, sync, destination, started_at, status) "
                    "VALUES ('r1', 'people', 'd', CURRENT_TIMESTAMP, 'ok')"
                )
            )
            conn.execute(sa.update(meta).where(meta.c.name == "schema_version").values(value="2"))
        store.migrate()
        with store.tx() as conn:
            run = conn.execute(sa.select(runs)).one()
            states = conn.execute(sa.select(sa.func.count()).select_from(sync_states)).scalar()
            version = conn.execute(
                sa.select(meta.c.value).where(meta.c.name == "schema_version")
            ).scalar()
        assert (run.id, run.kind, run.definition, run.rows_read) == ("r1", "run", None, None)
        assert states == 0 and version == str(SCHEMA_VERSION) == "8"
    finally:
        store.dispose()


# --- two teardowns at once ---------------------------------------------------------------------


@pytest.fixture
def pg_project(tmp_path: Path, emulator: EmulatorHandle) -> Iterator[Project]:
    if not pg_available():
        pytest.skip("PostgreSQL is not reachable at SYNC_TEST_PG_URL")
    schema = f"cio_sync_teardown_{os.getpid()}"
    made = Project(tmp_path, emulator, private_schema(PG_URL, schema))
    made.write_project()
    yield made
    drop_schema(PG_URL, schema)


@pytest.mark.postgres
@pytest.mark.parametrize("round_", range(3))
def test_two_teardowns_at_once_delete_each_record_once(pg_project: Project, round_: int) -> None:
    project = pg_project
    people_table(project, ROWS)
    project.write_sync("people", PEOPLE_SYNC.format(behavior="upsert"))
    assert project.run_json("people")["exit_code"] == 0
    before = len(track_requests(project.emulator))
    command = ["teardown", "people", "--yes", "--allow-removals"]
    finished = at_once(project, [command, command])
    codes = sorted(f.code for f in finished)
    assert codes[0] == 0 and codes[1] in (0, 5), [str(f) for f in finished]
    losers = [f for f in finished if f.code == 5]
    for loser in losers:  # lost at the lock or at the version, and said which
        said = ("is being run by process", "taken by another run", "changed by another process")
        assert any(words in loser.stderr for words in said), loser.stderr
    log = track_requests(project.emulator)[before:]
    deleted = Counter(
        op["identifiers"]["id"]
        for r in log
        for op in r["body"]["batch"]
        if op["action"] == "delete"
    )
    assert deleted == Counter({f"u{i}": 1 for i in range(20)})
    teardowns = [r for r in project.json("history", "people")["runs"] if r["kind"] == "teardown"]
    assert [(r["status"], r["sent"]) for r in teardowns] == [("ok", 20)]
    assert listed(project)["people"]["lifecycle"] == "retired"


def test_a_teardown_that_read_an_older_version_sends_nothing(
    duck_project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other process changed the state between this teardown's read and its removals."""
    project = duck_project
    people_table(project, ROWS[:2])
    project.write_sync("people", PEOPLE_SYNC.format(behavior="upsert"))
    project.run_json("people")
    sync = load_project(project.root).syncs["people"]
    store = opened(project)
    try:
        stale = lifecycle.read(store, sync)
        with store.tx() as conn:  # another process's change of state (a reset that kept all)
            lifecycle.transition(conn, stale, sync_status.ACTIVE, "reset")
    finally:
        store.dispose()
    monkeypatch.setattr(lifecycle, "read", lambda store, sync: stale)
    before = len(track_requests(project.emulator))
    code, _ = project.cli("teardown", "people", "--yes", "--allow-removals")
    assert code == 5 and "was changed by another process" in project.stderr
    assert len(track_requests(project.emulator)) == before
    monkeypatch.undo()
    assert listed(project)["people"]["lifecycle"] == "active"
    assert project.run_json("people")["syncs"][0]["counts"]["planned"] == 0  # snapshot kept
