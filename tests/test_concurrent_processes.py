"""`sync` processes side by side: opening one state store at once, and taking one sync's lock at
once.

The processes start at the same moment: a launcher imports the CLI once, then forks one child
per command; each child waits on a `multiprocessing.Barrier` and calls the CLI when all of them
are there, so they meet in the state store within microseconds, as processes started together by
a scheduler would. Races are won by chance, so the tests run in rounds. The emulator stays in the
test process (its own thread, over real HTTP).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from conftest import (
    PG_URL,
    Project,
    drop_schema,
    emu_get,
    pg_available,
    private_schema,
)

from connectors.customerio.emulator import EmulatorHandle
from engine.state import SCHEMA_LOCK_KEY, SCHEMA_VERSION, StateStore, meta, snapshot

ROUNDS = 5
OPENERS = 8

LAUNCHER = """
import json, multiprocessing, os, sys
from engine.cli import main

def child(barrier, argv, out):
    for fd, path in ((1, out), (2, out + ".err")):
        with open(path, "wb") as file:
            os.dup2(file.fileno(), fd)
    barrier.wait(60)
    main(argv, prog_name="sync")

jobs = json.loads(sys.argv[1])
fork = multiprocessing.get_context("fork")
barrier = fork.Barrier(len(jobs))
children = [fork.Process(target=child, args=(barrier, argv, out)) for argv, out in jobs]
for process in children:
    process.start()
for process in children:
    process.join(120)
print(json.dumps([process.exitcode for process in children]))
"""


@dataclass
class Finished:
    args: list[str]
    code: int | None
    stdout: str
    stderr: str

    def __str__(self) -> str:
        tail = "\n".join(self.stderr.splitlines()[-12:])
        return f"sync {' '.join(self.args)} → {self.code}\n{tail}"


def at_once(project: Project, commands: list[list[str]]) -> list[Finished]:
    """Run `sync --project DIR COMMAND` for each command, all released at the same moment."""
    outs = [project.root / f"process-{i}.out" for i in range(len(commands))]
    jobs = [
        [["--project", str(project.root), *command], str(out)]
        for command, out in zip(commands, outs, strict=True)
    ]
    launched = subprocess.run(
        [sys.executable, "-c", LAUNCHER, json.dumps(jobs)],
        capture_output=True,
        timeout=180,
        check=False,
        cwd=project.root,
    )
    assert launched.returncode == 0, launched.stderr.decode()
    codes = json.loads(launched.stdout)
    return [
        Finished(command, code, out.read_text(), Path(f"{out}.err").read_text())
        for command, code, out in zip(commands, codes, outs, strict=True)
    ]


def assert_all_ok(finished: list[Finished]) -> None:
    failed = [f for f in finished if f.code != 0]
    assert not failed, f"{len(failed)} of {len(finished)} failed:\n" + "\n".join(map(str, failed))


@pytest.fixture
def pg_state() -> Iterator[str]:
    """A PostgreSQL state store in a fresh schema of its own."""
    if not pg_available():
        pytest.skip("PostgreSQL is not reachable at SYNC_TEST_PG_URL")
    schema = f"cio_sync_concurrent_{os.getpid()}"
    yield private_schema(PG_URL, schema)
    drop_schema(PG_URL, schema)


@pytest.fixture
def pg_project(tmp_path: Path, emulator: EmulatorHandle, pg_state: str) -> Project:
    made = Project(tmp_path, emulator, pg_state)
    made.write_project()
    return made


def add_source(project: Project, name: str, url: str) -> None:
    path = project.root / "syncs" / "project.yml"
    document = json.loads(path.read_text())
    document["sources"][name] = {"url": url}
    path.write_text(json.dumps(document, indent=2))


def inline_syncs(project: Project, count: int) -> list[str]:
    """`count` person syncs reading an in-memory source (no file): s0 sends s0-p0..s0-p2..."""
    add_source(project, "inline", "duckdb:///:memory:")
    names = [f"s{i}" for i in range(count)]
    for name in names:
        query = f"SELECT '{name}-p' || i AS id, i AS score FROM range(3) t(i)"
        project.write_sync(name, f"object: person\nsource: inline\nkey: id\nquery: {query}\n")
    return names


def people_ids(emulator: EmulatorHandle) -> set[str]:
    return {p["id"] for p in emu_get(emulator, "people") if p.get("id")}


def stored_versions(url: str) -> list[tuple[str, str]]:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(sa.select(meta.c.name, meta.c.value))]
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
    assert stored_versions(pg_project.state_url) == [("schema_version", str(SCHEMA_VERSION))]


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
                    "VALUES ('old', 'd', 'u1', 'f1', '{}')"
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
    assert stored_versions(pg_project.state_url) == [("schema_version", str(SCHEMA_VERSION))]
    engine = sa.create_engine(pg_project.state_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            old = conn.execute(sa.select(snapshot).where(snapshot.c.sync == "old")).one()
    finally:
        engine.dispose()
    assert (old.key, old.fingerprint, old.source) == ("u1", "f1", None)


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
