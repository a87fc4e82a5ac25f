"""`sync` processes side by side: opening one state store at once, taking one sync's lock at
once, and reading one DuckDB source file at once.

The processes start at the same moment: a launcher imports the CLI once, then forks one child
per command; each child waits on a `multiprocessing.Barrier` and calls the CLI when all of them
are there, so they meet in the state store within microseconds, as processes started together by
a scheduler would. Races are won by chance, so the tests run in rounds. The emulator stays in the
test process (its own thread, over real HTTP).
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa
from support import (
    PEOPLE_SYNC,
    Project,
)
from support.processes import Finished, add_source, assert_all_ok, at_once, inline_syncs, people_ids

from cio_emulator import EmulatorHandle
from engine.config import resolve_duckdb_url
from engine.state import SCHEMA_LOCK_KEY, SCHEMA_VERSION, StateStore, meta, snapshot

ROUNDS = 5
OPENERS = 8

# md5 of a record without attributes, as schema 8 re-fingerprints it (`engine.pgjson`)
EMPTY_FP = "595d4d286f950ab836d9cc0200b9e25d"

STORED = [("fingerprint_scheme", "json-sql-pg-1"), ("schema_version", str(SCHEMA_VERSION))]


def stored_versions(url: str) -> list[tuple[str, str]]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(meta.c.name, meta.c.value).order_by(meta.c.name))
            return [tuple(row) for row in rows]
    finally:
        engine.dispose()


def openers(project: Project) -> list[Finished]:
    """Four `list` and four `run` of distinct syncs, at once; all must succeed."""
    names = inline_syncs(project, OPENERS // 2)
    finished = at_once(project, [["list"]] * (OPENERS // 2) + [["run", n] for n in names])
    assert_all_ok(finished)
    expected = {f"{name}-p{i}" for name in names for i in range(3)}
    assert people_ids(project.emulator) == expected
    return finished


# --- opening the state store -------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.parametrize("round_", range(ROUNDS))
def test_openers_at_once_create_a_fresh_postgresql_store_once(
    pg_project: Project, round_: int
) -> None:
    openers(pg_project)
    assert stored_versions(pg_project.state_url) == STORED


def create_store(url: str) -> None:
    """Open the store once, so that the processes of a test find it current."""
    store = StateStore(url)
    store.migrate()
    store.dispose()


def make_version_1(url: str) -> None:
    """A store of schema version 1: no source hashes in the snapshot, which holds one record."""
    store = StateStore(url)
    try:
        store.migrate()
        with store.tx() as conn:
            conn.execute(sa.text("ALTER TABLE cio_sync_snapshot DROP COLUMN source"))
            conn.execute(
                sa.text(
                    "INSERT INTO cio_sync_snapshot (sync, destination, key, fingerprint, payload) "
                    "VALUES ('old', 'd', 'u1', 'f1', '{\"a\":{},\"r\":{}}')"
                )
            )
            conn.execute(sa.update(meta).where(meta.c.name == "schema_version").values(value="1"))
    finally:
        store.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("round_", range(ROUNDS))
def test_openers_at_once_migrate_a_version_1_postgresql_store_once(
    pg_project: Project, round_: int
) -> None:
    make_version_1(pg_project.state_url)
    openers(pg_project)
    assert stored_versions(pg_project.state_url) == STORED
    engine = sa.create_engine(pg_project.state_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            old = conn.execute(sa.select(snapshot).where(snapshot.c.sync == "old")).one()
    finally:
        engine.dispose()
    assert (old.key, old.fingerprint, old.source) == ("u1", EMPTY_FP, None)


@pytest.mark.postgres
def test_an_opener_of_a_current_store_takes_no_lock_and_writes_nothing(pg_state: str) -> None:
    create_store(pg_state)
    url = sa.make_url(pg_state)
    impatient = str(url.update_query_dict({"options": f"{url.query['options']} -clock_timeout=2s"}))
    engine = sa.create_engine(pg_state, poolclass=sa.pool.NullPool)
    version_row = sa.select(sa.literal_column("xmin").cast(sa.String)).select_from(meta)
    try:
        with engine.begin() as conn:
            written = conn.execute(version_row).scalar()
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(SCHEMA_LOCK_KEY)))  # a migrator
            store = StateStore(impatient)
            try:
                store.migrate()  # waiting for the lock would fail after 2 s
            finally:
                store.dispose()
            assert conn.execute(version_row).scalar() == written
    finally:
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("round_", range(ROUNDS))
def test_runs_of_one_sync_at_once_take_its_lock_once(pg_project: Project, round_: int) -> None:
    """Eight runs of one sync: whoever finds the lock taken exits 5, nobody fails."""
    create_store(pg_project.state_url)
    (name,) = inline_syncs(pg_project, 1)
    finished = at_once(pg_project, [["run", name, "--json"]] * OPENERS)
    codes = sorted(f.code for f in finished)
    assert set(codes) <= {0, 5}, "\n".join(str(f) for f in finished if f.code not in (0, 5))
    assert codes[0] == 0
    skipped = [json.loads(f.stdout)["syncs"][0] for f in finished if f.code == 5]
    assert all(s["status"] == "locked" for s in skipped)
    assert people_ids(pg_project.emulator) == {f"{name}-p{i}" for i in range(3)}


# --- one DuckDB source file, read by two processes ---------------------------------------------

TWO_SYNCS = ("people", "members")
SOURCE_ROWS = 500
SOURCE_ROUNDS = 8  # the two reads overlap in about one round of two or three


def two_syncs_from_one_file(project: Project) -> set[str]:
    """Two person syncs reading the warehouse file; the ids they deliver."""
    project.sql(
        "CREATE TABLE people AS SELECT 'u' || i AS id, 'u' || i || '@x.io' AS email, "
        f"'free' AS plan, i::INTEGER AS score FROM range({SOURCE_ROWS}) t(i)"
    )
    project.write_sync("people", PEOPLE_SYNC.format(behavior="upsert"))
    project.write_sync(
        "members",
        "object: person\nkey: id\nquery: SELECT 'm' || id AS id, plan FROM people\n",
    )
    return {f"u{i}" for i in range(SOURCE_ROWS)} | {f"mu{i}" for i in range(SOURCE_ROWS)}


@pytest.mark.postgres
@pytest.mark.parametrize("round_", range(SOURCE_ROUNDS))
def test_two_processes_read_one_duckdb_source_at_once(pg_project: Project, round_: int) -> None:
    create_store(pg_project.state_url)
    expected = two_syncs_from_one_file(pg_project)
    assert_all_ok(at_once(pg_project, [["run", name] for name in TWO_SYNCS]))
    assert people_ids(pg_project.emulator) == expected


def test_two_processes_read_one_duckdb_source_with_a_duckdb_state_file(
    tmp_path: Path, emulator: EmulatorHandle
) -> None:
    """They take turns on the state file, so their reads of the source need not overlap: a third
    reader (this test) keeps the source file open meanwhile, as a second `sync` would."""
    project = Project(tmp_path, emulator, "duckdb:///.sync/state.duckdb")
    project.write_project()
    expected = two_syncs_from_one_file(project)
    with duckdb.connect(str(project.warehouse), read_only=True):
        assert_all_ok(at_once(project, [["run", name] for name in TWO_SYNCS]))
    assert people_ids(emulator) == expected


# --- a DuckDB source that is the state file itself ---------------------------------------------

STATE_AS_SOURCE = """\
object: person
source: state
key: id
query: SELECT id, plan FROM warehouse_people
"""


def state_as_source(project: Project, rows: int) -> set[str]:
    """A `state` source naming the state file, whose table `warehouse_people` a sync reads."""
    add_source(project, "state", project.state_url)
    path = Path(sa.make_url(resolve_duckdb_url(project.state_url, project.root)).database or "")
    path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(path)) as conn:
        conn.execute(
            "CREATE TABLE warehouse_people AS SELECT 'w' || i AS id, 'free' AS plan "
            f"FROM range({rows}) t(i)"
        )
    project.write_sync("from_state", STATE_AS_SOURCE)
    return {f"w{i}" for i in range(rows)}


def test_a_duckdb_source_that_is_the_state_file_is_read_alongside_the_store(
    tmp_path: Path, emulator: EmulatorHandle
) -> None:
    project = Project(tmp_path, emulator, "duckdb:///.sync/state.duckdb")
    project.write_project()
    expected = state_as_source(project, 50)
    first = project.run_json("from_state")
    assert first["exit_code"] == 0, project.stderr
    assert first["syncs"][0]["counts"]["sent"] == 50
    assert people_ids(emulator) == expected
    assert project.run_json("from_state")["syncs"][0]["counts"]["planned"] == 0
    code, _ = project.cli("validate", "--connect", "from_state")
    assert code == 0, project.stderr


def test_two_processes_read_the_state_file_as_their_source(
    tmp_path: Path, emulator: EmulatorHandle
) -> None:
    """Each reads the file through its store, so they take turns on it like any other work."""
    project = Project(tmp_path, emulator, "duckdb:///.sync/state.duckdb")
    project.write_project()
    expected = state_as_source(project, 200)
    project.write_sync(
        "from_state_too",
        STATE_AS_SOURCE.replace("SELECT id,", "SELECT 'x' || id AS id,"),
    )
    assert_all_ok(at_once(project, [["run", "from_state"], ["run", "from_state_too"]]))
    assert people_ids(emulator) == expected | {f"x{key}" for key in expected}
