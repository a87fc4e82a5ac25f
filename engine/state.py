"""The state store (SPEC §5): snapshots, staging, plans, run history, issues and locks.

Any SQLAlchemy database: the DuckDB file `.sync/state.duckdb` by default, PostgreSQL for teams.
Every statement is SQLAlchemy Core, so the diff (`engine.diff`) runs unchanged on both.

A DuckDB file admits one open process at a time. The store keeps its connection open while it
works (an open and the checkpoint of a close cost tens of milliseconds, seconds on a large file)
and hands the file over when another process asks for it: a process that finds the file locked
touches `<file>.wait` and retries, and the holder closes its connection at the end of its current
transaction, or within `HANDOFF_POLL_S` when it is idle. That is what lets `plan`, `list`,
`history` and `errors` work during a run without the run paying for reopening when nobody waits.

Schema changes are forward migrations: `MIGRATIONS[n]` takes version n to n + 1.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import NoSuchModuleError

from engine.config import display_url
from engine.errors import ConfigError, Problem, StateStoreError, SyncError
from engine.report import NUMBERS

SCHEMA_VERSION = 2
metadata = sa.MetaData()

meta = sa.Table(
    "cio_sync_meta",
    metadata,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("value", sa.String, nullable=False),
)
snapshot = sa.Table(
    "cio_sync_snapshot",
    metadata,
    sa.Column("sync", sa.String, primary_key=True),
    sa.Column("destination", sa.String, primary_key=True),
    sa.Column("key", sa.String, primary_key=True),
    sa.Column("fingerprint", sa.String, nullable=False),
    sa.Column("payload", sa.Text),
    sa.Column("source", sa.BigInteger),  # the source row's hash when delivered (engine.extract)
)
bindings = sa.Table(  # the destination each sync last delivered to (SPEC §4.10)
    "cio_sync_bindings",
    metadata,
    sa.Column("sync", sa.String, primary_key=True),
    sa.Column("destination", sa.String, nullable=False),
    sa.Column("bound_at", sa.DateTime(timezone=True), nullable=False),
)
staging = sa.Table(
    "cio_sync_staging",
    metadata,
    sa.Column("run", sa.String, nullable=False),  # no index: a run's rows are contiguous
    # key, fingerprint and payload are NULL for a row recognised by its source hash (it is as the
    # snapshot holds it); `engine.diff.resolve_recognised` then copies its key from the snapshot
    sa.Column("key", sa.String),
    sa.Column("fingerprint", sa.String),
    sa.Column("payload", sa.Text),
    sa.Column("ord", sa.BigInteger, nullable=False),
    sa.Column("dup", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("source", sa.BigInteger),
)
plan = sa.Table(
    "cio_sync_plan",
    metadata,
    sa.Column("run", sa.String, primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True),
    sa.Column("op", sa.String, nullable=False),  # add | update | remove
    sa.Column("key", sa.String, nullable=False),
    sa.Column("fingerprint", sa.String, nullable=False),
    sa.Column("payload", sa.Text),
    sa.Column("before", sa.Text),
    sa.Column("source", sa.BigInteger),
)
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


def _add_source_hashes(conn: Connection) -> None:
    """1 → 2: snapshots remember each row's source hash; staging and plan (scratch) are remade."""
    conn.execute(sa.text("ALTER TABLE cio_sync_snapshot ADD COLUMN source BIGINT"))
    for table in (staging, plan):
        table.drop(conn, checkfirst=True)
        table.create(conn)


MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _add_source_hashes}  # n → n + 1
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
    """One chunk of staged records, column-wise: encoded rows, then the source hashes of rows
    recognised as unchanged (staged by their hash alone)."""

    keys: list[str]
    fingerprints: list[str]
    payloads: list[str]
    first_ord: int
    sources: list[int | None] | None = None  # each encoded row's source hash, when it has one
    recognised: pa.Array | None = None  # int64 source hashes

    def source_column(self) -> list[int | None]:
        return self.sources if self.sources is not None else [None] * len(self.keys)

    def __len__(self) -> int:
        return len(self.keys) + (0 if self.recognised is None else len(self.recognised))

    def rows(self) -> Iterator[tuple[str | None, str | None, str | None, int, int | None]]:
        """(key, fingerprint, payload, ord, source) of every row."""
        encoded = zip(
            self.keys, self.fingerprints, self.payloads, self.source_column(), strict=True
        )
        ord_ = self.first_ord
        for key, fp, payload, source in encoded:
            yield key, fp, payload, ord_, source
            ord_ += 1
        for source in [] if self.recognised is None else self.recognised.to_pylist():
            yield None, None, None, ord_, source
            ord_ += 1


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
        self._signal = (
            Path(f"{database}.wait") if self._file and database not in (None, ":memory:") else None
        )
        self._open = False
        self._watcher: threading.Thread | None = None
        self._disposed = threading.Event()

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

    def _hand_over_if_asked(self) -> None:
        """Close the file (under the turn lock) when another process waits for it."""
        assert self._signal is not None
        if self._open and _fresh(self._signal):
            self.engine.dispose()
            self._open = False

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
        with self.tx() as conn:
            metadata.create_all(conn, checkfirst=True)
            version = _schema_version(conn)
            for step in range(version, SCHEMA_VERSION):
                MIGRATIONS[step](conn)
            _set_schema_version(conn, SCHEMA_VERSION)

    def stage(self, conn: Connection, run: str, chunk: Staged) -> None:
        """Append a chunk to the staging table by the dialect's fastest path."""
        loader = _STAGE_LOADERS.get(self.dialect, _stage_generic)
        loader(conn, run, chunk)

    def dispose(self) -> None:
        self._disposed.set()
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


def _is_lock_conflict(exc: sa.exc.DBAPIError) -> bool:
    return "Could not set lock on file" in str(exc.orig)


@contextmanager
def _connect(engine: Engine, signal: Path | None) -> Iterator[Connection]:
    """A connection; while another process holds the DuckDB file, ask for it (`signal`) and retry."""
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
    with conn:
        yield conn


def _schema_version(conn: Connection) -> int:
    value = conn.execute(sa.select(meta.c.value).where(meta.c.name == "schema_version")).scalar()
    return int(value) if value is not None else SCHEMA_VERSION


def _set_schema_version(conn: Connection, version: int) -> None:
    conn.execute(sa.delete(meta).where(meta.c.name == "schema_version"))
    conn.execute(sa.insert(meta).values(name="schema_version", value=str(version)))


def _stage_table(run: str, chunk: Staged) -> pa.Table:
    encoded, count = len(chunk.keys), len(chunk)
    recognised = chunk.recognised if chunk.recognised is not None else pa.array([], pa.int64())
    blank = pa.nulls(count - encoded, pa.string())

    def text(values: list[str]) -> pa.Array:
        return pa.concat_arrays([pa.array(values, pa.string()), blank])

    return pa.table(
        {
            "run": pa.array([run] * count, pa.string()),
            "key": text(chunk.keys),
            "fingerprint": text(chunk.fingerprints),
            "payload": text(chunk.payloads),
            "ord": pa.array(range(chunk.first_ord, chunk.first_ord + count), pa.int64()),
            "source": pa.concat_arrays(
                [pa.array(chunk.source_column(), pa.int64()), recognised.cast(pa.int64())]
            ),
        }
    )


def _stage_duckdb(conn: Connection, run: str, chunk: Staged) -> None:
    raw = conn.connection.driver_connection
    raw.register("cio_sync_chunk", _stage_table(run, chunk))  # type: ignore[union-attr]
    try:
        conn.exec_driver_sql(
            "INSERT INTO cio_sync_staging (run, key, fingerprint, payload, ord, source) "
            "SELECT run, key, fingerprint, payload, ord, source FROM cio_sync_chunk"
        )
    finally:
        raw.unregister("cio_sync_chunk")  # type: ignore[union-attr]


def _stage_postgresql(conn: Connection, run: str, chunk: Staged) -> None:
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    statement = "COPY cio_sync_staging (run, key, fingerprint, payload, ord, source) FROM STDIN"
    with cursor.copy(statement) as copy:
        for row in chunk.rows():
            copy.write_row((run, *row))


def _stage_generic(conn: Connection, run: str, chunk: Staged) -> None:
    columns = ("key", "fingerprint", "payload", "ord", "source")
    conn.execute(
        sa.insert(staging),
        [{"run": run, **dict(zip(columns, row, strict=True))} for row in chunk.rows()],
    )


_STAGE_LOADERS: dict[str, Callable[[Connection, str, Staged], None]] = {
    "duckdb": _stage_duckdb,
    "postgresql": _stage_postgresql,
}


def seq_ranges(seqs: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted sequence numbers folded into inclusive (low, high) runs."""
    ranges: list[tuple[int, int]] = []
    for seq in sorted(seqs):
        if ranges and seq == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], seq)
        else:
            ranges.append((seq, seq))
    return ranges
