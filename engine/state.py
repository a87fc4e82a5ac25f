"""The state store (SPEC §5): snapshots, staging, plans, run history, issues and locks.

Any SQLAlchemy database: the DuckDB file `.sync/state.duckdb` by default, PostgreSQL for teams.
Every statement is SQLAlchemy Core, so the diff (`engine.diff`) runs unchanged on both.

A DuckDB file admits one open process at a time. The store keeps its connection open while it
works (an open and the checkpoint of a close cost tens of milliseconds, seconds on a large file)
and hands the file over when another process asks for it: a process that finds the file locked
touches `<file>.wait` and retries, and the holder closes its connection at the end of its current
transaction, or within `HANDOFF_POLL_S` when it is idle. That is what lets `plan`, `list`,
`history` and `errors` work during a run without the run paying for reopening when nobody waits.

Schema changes are forward migrations (`engine.migrations`). Any number of
processes may open one store at once (`StateStore.migrate`): an opener that finds the schema
current writes nothing, and creation and migration happen once, under a lock.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import NoSuchModuleError
from sqlalchemy.ext.compiler import compiles

from engine.config import display_url
from engine.errors import ConfigError, Problem, StateStoreError, SyncError
from engine.report import NUMBERS
from engine.statefile import SCHEMA_VERSION

if TYPE_CHECKING:  # imported where a chunk is staged: readers of the store need no Arrow
    import pyarrow as pa

SCHEMA_LOCK_KEY = int.from_bytes(b"cio-sync", "big")  # PostgreSQL advisory lock of `migrate`
metadata = sa.MetaData()

meta = sa.Table(
    "cio_sync_meta",
    metadata,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("value", sa.String, nullable=False),
)
# The snapshot and the plan are found by the engine's joins and range reads, never by single
# keys: on DuckDB they have no primary key (`_primary_key`), whose index cost more than all
# the rest of writing them (1M rows acknowledged in 20k-row chunks: 3.7 s with it, 1.8 s
# without; cleaning up a 1%-changed rerun and checkpointing: 0.7 s with it, 0.05 s without).
UNKEYED_ON_DUCKDB = {"duckdb_primary_key": False}
# `source` (snapshot, staging, plan) held a hash of each source row, by which older versions
# recognised unchanged rows; unused since schema 8 (rows are compared by SQL), it is kept so
# that older stores need no migration, and nothing writes or reads it.
snapshot = sa.Table(
    "cio_sync_snapshot",
    metadata,
    sa.Column("sync", sa.String, primary_key=True),
    sa.Column("destination", sa.String, primary_key=True),
    sa.Column("key", sa.String, primary_key=True),
    sa.Column("fingerprint", sa.String, nullable=False),
    sa.Column("payload", sa.Text),
    sa.Column("source", sa.BigInteger),  # unused since schema 8 (above)
    info=UNKEYED_ON_DUCKDB,
)
bindings = sa.Table(  # the destination each sync last delivered to (SPEC §4.10)
    "cio_sync_bindings",
    metadata,
    sa.Column("sync", sa.String, primary_key=True),
    sa.Column("destination", sa.String, nullable=False),
    sa.Column("bound_at", sa.DateTime(timezone=True), nullable=False),
)


def _staging_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("run", sa.String, nullable=False),  # no index: a run's rows are contiguous
        sa.Column("key", sa.String),
        # fingerprint and payload are NULL for a row the snapshot holds unchanged, when the rows
        # are compared as they are staged (`engine.sqlstage.stage_statement`): staged by its
        # key alone
        sa.Column("fingerprint", sa.String),
        sa.Column("payload", sa.Text),
        sa.Column("ord", sa.BigInteger, nullable=False),
        sa.Column("dup", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("source", sa.BigInteger),  # unused since schema 8 (above)
    ]


staging = sa.Table("cio_sync_staging", metadata, *_staging_columns())
# On DuckDB, a run's staging is scratch of the store's connection: a TEMPORARY table of the
# same name, made when the run starts holding the connection (`StateStore.holding`, from its
# first staged row to its plan), shadows the file's (DuckDB finds a name in the temporary
# catalog first), so staged rows never reach the write-ahead log or the checkpoint of the
# close. An unchanged rerun of 1M people staged its keys in 0.05 s there against 0.3 s in the
# file. Outside a hold (the migrations, which remake the file's table) the name is the file's.
scratch_staging = sa.Table(staging.name, sa.MetaData(), *_staging_columns(), prefixes=["TEMPORARY"])
plan = sa.Table(
    "cio_sync_plan",
    metadata,
    sa.Column("run", sa.String, primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("op", sa.String, nullable=False),  # add | update | remove | rekey
    sa.Column("key", sa.String, nullable=False),
    sa.Column("fingerprint", sa.String, nullable=False),
    sa.Column("payload", sa.Text),
    sa.Column("before", sa.Text),
    sa.Column("source", sa.BigInteger),  # unused since schema 8 (above)
    sa.Column("prior", sa.String),  # a rekey's old key (schema 4)
    info=UNKEYED_ON_DUCKDB,
)


@compiles(sa.PrimaryKeyConstraint, "duckdb")
def _primary_key(constraint: sa.PrimaryKeyConstraint, compiler: Any, **kw: Any) -> str | None:
    """No PRIMARY KEY clause for a table `UNKEYED_ON_DUCKDB` on DuckDB (None: none is written)."""
    table = constraint.table
    if table is not None and table.info.get("duckdb_primary_key") is False:
        return None
    text: str = compiler.visit_primary_key_constraint(constraint, **kw)
    return text


def snapshot_keyed(conn: Connection) -> bool:
    """Whether the snapshot has its primary key in this database (for INSERT ... ON CONFLICT)."""
    return conn.dialect.name != "duckdb"


for _scratch in (staging, plan):  # rows a crash may lose: PostgreSQL need not log them
    sa.event.listen(
        _scratch,
        "after_create",
        sa.DDL("ALTER TABLE %(table)s SET UNLOGGED").execute_if(  # type: ignore[no-untyped-call]
            dialect="postgresql"
        ),
    )
work = sa.Table(  # who owns staging/plan rows, so that leftovers of a killed process are swept
    "cio_sync_work",
    metadata,
    sa.Column("run", sa.String, primary_key=True),
    sa.Column("sync", sa.String, nullable=False),
    sa.Column("kind", sa.String, nullable=False),  # run | plan
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
RUN_EXTRAS = (  # run columns added in schema 5
    sa.Column("rows_read", sa.BigInteger),
    sa.Column("mode", sa.String),  # full | incremental
    sa.Column("cursor_from", sa.Text),
    sa.Column("cursor_to", sa.Text),
    sa.Column("lowest_rate", sa.Double),
)
runs = sa.Table(
    "cio_sync_runs",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("sync", sa.String, nullable=False, index=True),
    sa.Column("destination", sa.String, nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ended_at", sa.DateTime(timezone=True)),
    sa.Column("status", sa.String, nullable=False),
    sa.Column("exit_code", sa.Integer),
    sa.Column("full", sa.Boolean, nullable=False, server_default=sa.false()),
    *(sa.Column(name, sa.BigInteger, nullable=False, server_default="0") for name in NUMBERS),
    sa.Column("message", sa.Text),
    *RUN_EXTRAS,
    sa.Column("kind", sa.String, server_default="run"),  # run | teardown (schema 3)
    sa.Column("definition", sa.String),  # the hash of the sync's definition it ran (schema 3)
)
sync_states = sa.Table(  # each sync's lifecycle (engine.lifecycle), schema 3
    "cio_sync_states",
    metadata,
    sa.Column("sync", sa.String, primary_key=True),
    sa.Column("status", sa.String, nullable=False),  # active | disabled | retiring | retired
    sa.Column("version", sa.BigInteger, nullable=False),  # +1 at each change of state
    sa.Column("definition", sa.String),  # the hash of the definition last run
    sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
)
issues = sa.Table(
    "cio_sync_issues",
    metadata,
    sa.Column("run", sa.String, nullable=False, index=True),
    sa.Column("sync", sa.String, nullable=False),
    sa.Column("key", sa.String),
    sa.Column("kind", sa.String, nullable=False),  # invalid | rejected
    sa.Column("reason", sa.Text, nullable=False),
)
budget = sa.Table(  # the shared request budget of each workspace API (engine.budget)
    "cio_sync_budget",
    metadata,
    sa.Column("key", sa.String, primary_key=True),
    sa.Column("state", sa.Text, nullable=False),
)
cursors = sa.Table(  # incremental reads: the cursor high-water mark acknowledged (SPEC §7.2)
    "cio_sync_cursors",
    metadata,
    sa.Column("sync", sa.String, primary_key=True),
    sa.Column("destination", sa.String, primary_key=True),
    sa.Column("mark", sa.Text),  # the largest cursor value of a run that delivered everything
    sa.Column("layout", sa.String, nullable=False),  # the query and cursor the mark belongs to
    sa.Column("full_at", sa.DateTime(timezone=True)),  # the last full read
)
locks = sa.Table(
    "cio_sync_locks",
    metadata,
    sa.Column("sync", sa.String, primary_key=True),
    sa.Column("token", sa.String, nullable=False),
    sa.Column("host", sa.String, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
)


BUSY_WAIT_S = 120.0
HANDOFF_POLL_S = 0.1
WAIT_SIGNAL_FRESH_S = 2.0  # waiters touch the signal on every retry (at most 0.25 s apart)
_FILE_LOCKS: defaultdict[str, threading.RLock] = defaultdict(threading.RLock)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class StateBusy(SyncError):
    """Another process kept the DuckDB state file for longer than the store waits."""


@dataclass(frozen=True)
class Staged:
    """One chunk of records encoded in Python, column-wise, numbered from `first_ord`."""

    keys: list[str]
    fingerprints: list[str]
    payloads: list[str]
    first_ord: int

    def __len__(self) -> int:
        return len(self.keys)

    def rows(self) -> Iterator[tuple[str, str, str, int]]:
        """(key, fingerprint, payload, ord) of every row."""
        encoded = zip(self.keys, self.fingerprints, self.payloads, strict=True)
        for ord_, (key, fp, payload) in enumerate(encoded, self.first_ord):
            yield key, fp, payload, ord_


@dataclass
class _Side:
    """A side connection of a DuckDB state file (`StateStore.side`), one transaction at a time."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    held: tuple[Engine, Connection] | None = None

    def close(self, *, wait: bool) -> bool:
        """Close it, unless (without `wait`) a transaction is using it; whether it is closed."""
        if not self.lock.acquire(blocking=wait):
            return False
        try:
            if self.held is not None:
                engine, conn = self.held
                self.held = None
                conn.close()
                engine.dispose()
            return True
        finally:
            self.lock.release()


class StateStore:
    """The engine's only door to the state database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = _make_engine(url)
        self.dialect = self.engine.dialect.name
        # DuckDB: one open of a file at a time in this process (concurrent opens from threads
        # conflict); other databases need no such turn-taking
        self._file = self.dialect == "duckdb" and isinstance(self.engine.pool, sa.pool.StaticPool)
        self._turn: AbstractContextManager[object] = (
            _FILE_LOCKS[url] if self._file else nullcontext()
        )
        database = self.engine.url.database
        self._path = Path(database) if self._file and database not in (None, ":memory:") else None
        self._signal = Path(f"{database}.wait") if self._path is not None else None
        self._open = False
        self._watcher: threading.Thread | None = None
        self._disposed = threading.Event()
        self._sides: dict[str, _Side] = defaultdict(_Side)  # a DuckDB file's other connections
        self._holds = 0  # blocks that keep the store's connection (`holding`)
        self._holds_lock = threading.Lock()
        self._scratch: sa.schema.CreateTable | None = None  # a DuckDB store's own staging
        if self.dialect == "duckdb":
            self._scratch = sa.schema.CreateTable(scratch_staging, if_not_exists=True)

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        """A transaction, waiting while another process holds a DuckDB state file."""
        with self._turn:
            with _connect(self.engine, self._signal) as conn, conn.begin():
                yield conn
            self._open = True
            if self._signal is not None:
                self._hand_over_if_asked()
                self._watch()

    @contextmanager
    def side(self, purpose: str) -> Iterator[Connection]:
        """A transaction that does not wait for the store's others: a DuckDB file gives each
        purpose (one transaction at a time) a connection of its own to the same database, which
        DuckDB runs beside the others (each sees what the others committed); other databases
        a pooled connection. Delivery reads the plan so while a streamed first run writes it
        and acknowledgements enter the snapshot."""
        if self._path is None:  # not a DuckDB file: an in-memory database has one connection
            with self.tx() as conn:
                yield conn
            return
        side = self._sides[purpose]
        with side.lock:
            if side.held is None:
                engine = _make_engine(self.url)
                with self._turn:  # opens of one file from two threads at once conflict
                    side.held = engine, _open(engine, self._signal)
                self._open = True
                if self._signal is not None:
                    self._watch()
            conn = side.held[1]
            with conn.begin():
                yield conn

    @contextmanager
    def holding(self) -> Iterator[None]:
        """Keep the store's connection for the block: a process waiting for the DuckDB file is
        handed it after the block, not between its transactions. A run holds it from its first
        staged row to its plan, which on DuckDB read the connection's own staging
        (`scratch_staging`, made here if the connection has none yet)."""
        with self._holds_lock:
            self._holds += 1
        try:
            if self._scratch is not None:
                with self.tx() as conn:
                    conn.execute(self._scratch)
            yield
        finally:
            with self._holds_lock:
                self._holds -= 1

    def _close_sides(self, *, wait: bool) -> bool:
        """Close the side connections, but (without `wait`) those in use; whether all are."""
        closed = True
        for side in list(self._sides.values()):
            closed = side.close(wait=wait) and closed
        return closed

    def _hand_over_if_asked(self) -> None:
        """Close the file (under the turn lock) when another process waits for it: the store's
        connection, and the side ones not in use (the watcher comes back for those)."""
        assert self._signal is not None
        if self._open and not self._holds and _fresh(self._signal):
            self.engine.dispose()
            self._open = not self._close_sides(wait=False)

    def _watch(self) -> None:
        if self._watcher is None:
            self._disposed.clear()
            self._watcher = threading.Thread(target=self._watch_loop, daemon=True)
            self._watcher.start()

    def _watch_loop(self) -> None:
        while not self._disposed.wait(HANDOFF_POLL_S):
            if self._open and _fresh(self._signal):  # type: ignore[arg-type]
                with self._turn:
                    self._hand_over_if_asked()

    def migrate(self) -> None:
        """Create the schema or bring it to `SCHEMA_VERSION`; safe under concurrent openers.

        An opener that finds the schema current (one read) writes nothing. Otherwise it takes
        the schema lock (`_lock_schema`, held to the end of the transaction) and reads the
        version again: an opener that waited finds the work done, so creation and each
        migration happen once."""
        with self.tx() as conn:
            version = _stored_version(conn)
            if version == SCHEMA_VERSION:
                return
            _refuse_newer(self.url, version)
            _lock_schema(conn)
            version = _stored_version(conn)
            if version == SCHEMA_VERSION:
                return
            _refuse_newer(self.url, version)
            from engine.migrations import MIGRATIONS, scheme

            metadata.create_all(conn, checkfirst=True)
            for step in range(SCHEMA_VERSION if version is None else version, SCHEMA_VERSION):
                MIGRATIONS[step](conn)
            upsert(conn, meta, {"name": "schema_version", "value": str(SCHEMA_VERSION)})
            upsert(conn, meta, {"name": "fingerprint_scheme", "value": scheme(conn)})

    def holds(self, url: str) -> bool:
        """Whether `url` names this store's DuckDB state file (a source reading the store)."""
        other = sa.make_url(url)
        database = other.database
        if self._path is None or other.get_backend_name() != "duckdb":
            return False
        return bool(database) and Path(str(database)).resolve() == self._path.resolve()

    @contextmanager
    def reader(self) -> Iterator[Connection]:
        """A connection of its own to the DuckDB state file, to read it as a source while the
        store works. It is opened with the store's configuration, so DuckDB gives it the
        database this process may already hold open (it refuses a second configuration of one
        file in a process, read-only included); while another process holds the file it asks
        and waits as the store does. A hand-over closes the store's connection only: the file
        is given up when the reader is closed too."""
        engine = _make_engine(self.url)
        try:
            with self._turn:  # opens of one file from two threads at once conflict
                conn = _open(engine, self._signal)
            with conn:
                yield conn
        finally:
            engine.dispose()

    def stage(self, conn: Connection, run: str, chunk: Staged) -> None:
        """Append a chunk to the staging table by the dialect's fastest path."""
        loader = _STAGE_LOADERS.get(self.dialect, _stage_generic)
        loader(conn, run, chunk)

    def release(self) -> None:
        """Give a DuckDB state file up now rather than when another process asks for it: for a
        reader that comes back seldom (`sync serve`), so that a run finds the file free. The next
        transaction opens it again; other databases keep their pool."""
        if self._signal is not None:
            self._close_sides(wait=True)
            with self._turn:
                self.engine.dispose()
                self._open = False

    def dispose(self) -> None:
        self._disposed.set()
        self._close_sides(wait=True)
        with self._turn:
            self.engine.dispose()
            self._open = False
        if self._watcher is not None:
            self._watcher.join()
            self._watcher = None


def _fresh(signal: Path) -> bool:
    try:
        return time.time() - signal.stat().st_mtime < WAIT_SIGNAL_FRESH_S
    except FileNotFoundError:
        return False


def _make_engine(url: str) -> Engine:
    """The state database's engine; a URL no installed dialect serves is a ConfigError."""
    try:
        return _create_engine(url)
    except (NoSuchModuleError, ImportError) as exc:
        problem = Problem(
            "syncs/project.yml",
            None,
            f"state: no SQLAlchemy dialect or driver for {display_url(url)} ({exc})",
            "install the dialect's package or correct the URL's dialect+driver",
        )
        raise ConfigError([problem]) from exc
    except OSError as exc:
        raise StateStoreError(
            f"the state store {display_url(url)} cannot be created: {exc}",
            "make its directory writable, or point state: in project.yml elsewhere",
        ) from exc


def _create_engine(url: str) -> Engine:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "duckdb":
        database = parsed.database or ":memory:"
        if database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        # staging and plan rows are scratch: let the WAL grow over a run instead of
        # checkpointing every 16 MB; the file is checkpointed when the store closes it
        config = {"checkpoint_threshold": "1GB", "memory_limit": "400MB"}
        return sa.create_engine(
            parsed, poolclass=sa.pool.StaticPool, connect_args={"config": config}
        )
    return sa.create_engine(parsed, pool_pre_ping=True)


def _unusable(engine: Engine, exc: sa.exc.DBAPIError) -> StateStoreError:
    """Why the state store cannot be opened, and what to do."""
    where = display_url(engine.url.render_as_string(hide_password=False))
    reason = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else repr(exc.orig)
    if engine.dialect.name == "duckdb":
        hint = (
            "the file is damaged or not a DuckDB database: move it aside (runs then start from "
            "an empty snapshot) or point state: in project.yml at the right file"
        )
    else:
        hint = "check that the database server is up and that state: in project.yml is right"
    return StateStoreError(f"the state store {where} cannot be opened: {reason}", hint)


def _refuse_newer(url: str, version: int | None) -> None:
    """A store written by a newer cio-sync is left alone: this one cannot read it safely."""
    if version is not None and version > SCHEMA_VERSION:
        raise StateStoreError(
            f"the state store {display_url(url)} has schema version {version}, written by a "
            f"newer cio-sync; this one knows versions up to {SCHEMA_VERSION}",
            "upgrade cio-sync (pip install -U cio-sync) on this host",
        )


def _is_lock_conflict(exc: sa.exc.DBAPIError) -> bool:
    return "Could not set lock on file" in str(exc.orig)


@contextmanager
def _connect(engine: Engine, signal: Path | None) -> Iterator[Connection]:
    """A connection; while another process holds the DuckDB file, ask for it (`signal`) and retry."""
    with _open(engine, signal) as conn:
        yield conn


def _open(engine: Engine, signal: Path | None) -> Connection:
    """Open a connection, asking for the DuckDB file (`signal`) and retrying while another
    process holds it, for at most `BUSY_WAIT_S`."""
    deadline = time.monotonic() + BUSY_WAIT_S
    delay = 0.01
    waited = False
    while True:
        try:
            conn = engine.connect()
            break
        except sa.exc.DBAPIError as exc:
            if not _is_lock_conflict(exc):
                raise _unusable(engine, exc) from exc
            if time.monotonic() > deadline:
                raise StateBusy(
                    f"the state file stayed locked by another process for {BUSY_WAIT_S:.0f} s; "
                    "wait for it to finish or use a PostgreSQL state store for parallel runs"
                ) from exc
            if signal is not None:
                signal.touch()
                waited = True
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.25)
    if waited:
        signal.unlink(missing_ok=True)  # type: ignore[union-attr]
    return conn


def _stored_version(conn: Connection) -> int | None:
    """The schema version the store records; None for a store not created yet."""
    if not sa.inspect(conn).has_table(meta.name):
        return None
    value = conn.execute(sa.select(meta.c.value).where(meta.c.name == "schema_version")).scalar()
    return int(value) if value is not None else None


def _lock_schema(conn: Connection) -> None:
    """Make creation and migration one opener's work at a time, to the end of the transaction.

    PostgreSQL: a transaction-scoped advisory lock. It must cover `create_all` too: concurrent
    CREATE TABLE of one name collide in PostgreSQL's catalog even with IF NOT EXISTS. A DuckDB
    file admits one process at a time, and the openers of this process take turns on it
    (`StateStore.tx`), so it needs no lock of its own."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(SCHEMA_LOCK_KEY)))


ON_CONFLICT_DIALECTS = ("postgresql", "duckdb")  # INSERT ... ON CONFLICT (PostgreSQL's syntax)


def upsert(conn: Connection, table: sa.Table, values: dict[str, Any]) -> None:
    """Insert the row, or update the one with its primary key. On PostgreSQL and DuckDB this is
    one INSERT ... ON CONFLICT DO UPDATE, which concurrent writers of one key cannot collide on;
    elsewhere an UPDATE, then an INSERT when it matched no row."""
    keys = [column.name for column in table.primary_key]
    if conn.dialect.name in ON_CONFLICT_DIALECTS:
        insert = postgresql.insert(table).values(values)
        changed = {name: insert.excluded[name] for name in values if name not in keys}
        conn.execute(insert.on_conflict_do_update(index_elements=keys, set_=changed))
        return
    match = [table.c[name] == values[name] for name in keys]
    if not conn.execute(sa.update(table).where(*match).values(values)).rowcount:
        conn.execute(sa.insert(table).values(values))


def insert_new(conn: Connection, table: sa.Table, values: dict[str, Any]) -> bool:
    """Insert the row unless its primary key exists; whether it was inserted. On PostgreSQL and
    DuckDB an INSERT ... ON CONFLICT DO NOTHING (a concurrent insert of the key that commits
    first wins, without an error), whose RETURNING tells whether it inserted (SQLAlchemy gives
    no row count for an INSERT through psycopg); elsewhere an INSERT in a savepoint."""
    if conn.dialect.name in ON_CONFLICT_DIALECTS:
        insert = postgresql.insert(table).values(values).on_conflict_do_nothing()
        return conn.execute(insert.returning(*table.primary_key)).first() is not None
    try:
        with conn.begin_nested():
            conn.execute(sa.insert(table).values(values))
    except sa.exc.IntegrityError:
        return False
    return True


def _stage_table(run: str, chunk: Staged) -> pa.Table:
    import pyarrow as pa

    count = len(chunk)
    return pa.table(
        {
            "run": pa.array([run] * count, pa.string()),
            "key": pa.array(chunk.keys, pa.string()),
            "fingerprint": pa.array(chunk.fingerprints, pa.string()),
            "payload": pa.array(chunk.payloads, pa.string()),
            "ord": pa.array(range(chunk.first_ord, chunk.first_ord + count), pa.int64()),
        }
    )


def _stage_duckdb(conn: Connection, run: str, chunk: Staged) -> None:
    """Records encoded in Python take the DuckDB store's fingerprint scheme on the way in: their
    payload as DuckDB's JSON writer spells it, fingerprinted (`engine.sqlstage`)."""
    raw = conn.connection.driver_connection
    raw.register("cio_sync_chunk", _stage_table(run, chunk))  # type: ignore[union-attr]
    try:
        conn.exec_driver_sql(
            "INSERT INTO cio_sync_staging (run, key, fingerprint, payload, ord) "
            "SELECT run, key, md5(p), p, ord "
            "FROM (SELECT *, CAST(json(payload) AS VARCHAR) AS p FROM cio_sync_chunk)"
        )
    finally:
        raw.unregister("cio_sync_chunk")  # type: ignore[union-attr]


def _stage_postgresql(conn: Connection, run: str, chunk: Staged) -> None:
    """Records encoded in Python take the PostgreSQL store's fingerprint scheme on the way in
    (`engine.pgjson.stage_encoded`)."""
    from engine.pgjson import stage_encoded

    stage_encoded(conn, run, chunk)


def _stage_generic(conn: Connection, run: str, chunk: Staged) -> None:
    columns = ("key", "fingerprint", "payload", "ord")
    conn.execute(
        sa.insert(staging),
        [{"run": run, **dict(zip(columns, row, strict=True))} for row in chunk.rows()],
    )


_STAGE_LOADERS: dict[str, Callable[[Connection, str, Staged], None]] = {
    "duckdb": _stage_duckdb,
    "postgresql": _stage_postgresql,
}
