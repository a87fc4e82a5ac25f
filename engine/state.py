"""The state store (SPEC §5): snapshots, staging, plans, run history, issues and locks.

Any SQLAlchemy database: the DuckDB file `.sync/state.duckdb` by default, PostgreSQL for teams.
Every statement is SQLAlchemy Core, so the diff (`engine.diff`) runs unchanged on both.

A DuckDB file admits one open process at a time, so the store never keeps it for long: it keeps
one connection while transactions follow each other and closes it once idle for `IDLE_CLOSE_S`
(an open costs ~60 ms, so a busy phase pays it once), and waits its turn while another process
holds the file. That is what lets `plan`, `list`, `history` and `errors` work during a run.

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

from engine.errors import SyncError

SCHEMA_VERSION = 1
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
    sa.Column("run", sa.String, nullable=False, index=True),
    sa.Column("key", sa.String, nullable=False),
    sa.Column("fingerprint", sa.String, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("ord", sa.BigInteger, nullable=False),
    sa.Column("dup", sa.Boolean, nullable=False, server_default=sa.false()),
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
    *(
        sa.Column(name, sa.BigInteger, nullable=False, server_default="0")
        for name in (
            "planned",
            "sent",
            "rejected",
            "invalid",
            "skipped",
            "requests",
            "retries",
            "throttled",
        )
    ),
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

MIGRATIONS: dict[int, Callable[[Connection], None]] = {}  # version n → n + 1, none yet
BUSY_WAIT_S = 120.0
IDLE_CLOSE_S = 0.25
_FILE_LOCKS: defaultdict[str, threading.RLock] = defaultdict(threading.RLock)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class StateBusy(SyncError):
    """Another process kept the DuckDB state file for longer than the store waits."""


@dataclass(frozen=True)
class Staged:
    """One chunk of staged records, column-wise."""

    keys: list[str]
    fingerprints: list[str]
    payloads: list[str]
    first_ord: int


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
        self._last_used = 0.0
        self._closer: threading.Timer | None = None

    @contextmanager
    def tx(self) -> Iterator[Connection]:
        """A transaction, waiting while another process holds a DuckDB state file."""
        with self._turn:
            with _connect(self.engine) as conn, conn.begin():
                yield conn
            self._last_used = time.monotonic()
            if self._file and self._closer is None:
                self._schedule_close()

    def _schedule_close(self) -> None:
        self._closer = threading.Timer(IDLE_CLOSE_S, self._close_if_idle)
        self._closer.daemon = True
        self._closer.start()

    def _close_if_idle(self) -> None:
        with self._turn:
            self._closer = None
            if time.monotonic() - self._last_used >= IDLE_CLOSE_S:
                self.engine.dispose()  # releases the file for other processes
            else:
                self._schedule_close()

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
        with self._turn:
            if self._closer is not None:
                self._closer.cancel()
                self._closer = None
            self.engine.dispose()


def _make_engine(url: str) -> Engine:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "duckdb":
        database = parsed.database or ":memory:"
        if database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        return sa.create_engine(parsed, poolclass=sa.pool.StaticPool)
    return sa.create_engine(parsed, pool_pre_ping=True)


def _is_lock_conflict(exc: sa.exc.DBAPIError) -> bool:
    return "Could not set lock on file" in str(exc.orig)


@contextmanager
def _connect(engine: Engine) -> Iterator[Connection]:
    deadline = time.monotonic() + BUSY_WAIT_S
    delay = 0.01
    while True:
        try:
            conn = engine.connect()
            break
        except sa.exc.DBAPIError as exc:
            if not _is_lock_conflict(exc):
                raise
            if time.monotonic() > deadline:
                raise StateBusy(
                    f"the state file stayed locked by another process for {BUSY_WAIT_S:.0f} s; "
                    "wait for it to finish or use a PostgreSQL state store for parallel runs"
                ) from exc
            time.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 0.25)
    with conn:
        yield conn


def _schema_version(conn: Connection) -> int:
    value = conn.execute(sa.select(meta.c.value).where(meta.c.name == "schema_version")).scalar()
    return int(value) if value is not None else SCHEMA_VERSION


def _set_schema_version(conn: Connection, version: int) -> None:
    conn.execute(sa.delete(meta).where(meta.c.name == "schema_version"))
    conn.execute(sa.insert(meta).values(name="schema_version", value=str(version)))


def _stage_table(run: str, chunk: Staged) -> pa.Table:
    count = len(chunk.keys)
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
    raw = conn.connection.driver_connection
    raw.register("cio_sync_chunk", _stage_table(run, chunk))  # type: ignore[union-attr]
    try:
        conn.exec_driver_sql(
            "INSERT INTO cio_sync_staging (run, key, fingerprint, payload, ord) "
            "SELECT run, key, fingerprint, payload, ord FROM cio_sync_chunk"
        )
    finally:
        raw.unregister("cio_sync_chunk")  # type: ignore[union-attr]


def _stage_postgresql(conn: Connection, run: str, chunk: Staged) -> None:
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    statement = "COPY cio_sync_staging (run, key, fingerprint, payload, ord) FROM STDIN"
    with cursor.copy(statement) as copy:
        rows = zip(chunk.keys, chunk.fingerprints, chunk.payloads, strict=True)
        for ord_, (key, fp, payload) in enumerate(rows, start=chunk.first_ord):
            copy.write_row((run, key, fp, payload, ord_))


def _stage_generic(conn: Connection, run: str, chunk: Staged) -> None:
    rows = zip(chunk.keys, chunk.fingerprints, chunk.payloads, strict=True)
    conn.execute(
        sa.insert(staging),
        [
            {"run": run, "key": k, "fingerprint": f, "payload": p, "ord": i, "dup": False}
            for i, (k, f, p) in enumerate(rows, start=chunk.first_ord)
        ],
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
