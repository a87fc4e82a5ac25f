"""Write-through persistence in a DuckDB file: a compacted snapshot plus a request journal.

Each request that changes data appends one journal row (its operations as JSON, and the
arrival time they were applied with) and DuckDB commits it before the response is sent, so a
kill -9 after a 2xx loses nothing. Opening the file loads the snapshot and replays the journal
in order; a graceful close (and a reset) writes a fresh snapshot and empties the journal.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import orjson

from cio_emulator.apply import apply_ops
from cio_emulator.state import Workspace

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS emulator_snapshot (id INTEGER PRIMARY KEY, data VARCHAR)",
    "CREATE TABLE IF NOT EXISTS emulator_journal (seq BIGINT, arrived DOUBLE, ops BLOB)",
)


# One DuckDB thread: the event loop waits on each commit anyway, and worker threads would
# compete with it for the core. A large checkpoint threshold keeps journal appends in the WAL
# until compaction (a restart after a kill replays the WAL).
_DUCKDB_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "threads": 1,
    "checkpoint_threshold": "256MB",
}


class DatabaseError(Exception):
    """The emulator's DuckDB file cannot be used (damaged, not DuckDB, locked, unreadable)."""


class Journal:
    """The DuckDB file behind one emulator; not thread-safe (used from the event loop)."""

    def __init__(self, path: Path) -> None:
        try:
            self._conn = duckdb.connect(str(path), config=_DUCKDB_CONFIG)
            for statement in _SCHEMA:
                self._conn.execute(statement)
        except duckdb.Error as exc:
            reason = str(exc).strip().splitlines()[0]
            raise DatabaseError(f"the emulator's database {path} cannot be used: {reason}") from exc
        self._seq = 0

    def load(self, environment_id: int) -> Workspace:
        """The stored workspace (snapshot plus journal), or a new one with `environment_id`."""
        row = self._conn.execute("SELECT data FROM emulator_snapshot WHERE id = 1").fetchone()
        if row is None:
            workspace = Workspace(environment_id=environment_id)
            self.compact(workspace)
            return workspace
        workspace = Workspace.from_snapshot(orjson.loads(row[0]))
        rows = self._conn.execute(
            "SELECT seq, arrived, ops FROM emulator_journal ORDER BY seq"
        ).fetchall()
        for seq, arrived, ops in rows:
            apply_ops(workspace, orjson.loads(ops), arrived)
            self._seq = seq
        return workspace

    def append(self, arrived: float, ops_json: bytes) -> None:
        """Commit one request's operations (JSON array) to the journal."""
        self._seq += 1
        self._conn.execute(
            "INSERT INTO emulator_journal VALUES (?, ?, ?)",
            [self._seq, arrived, ops_json],
        )

    def compact(self, workspace: Workspace) -> None:
        """Replace the snapshot with `workspace` and empty the journal, in one transaction."""
        data = orjson.dumps(workspace.to_snapshot(), default=_jsonable).decode()
        self._conn.execute("BEGIN TRANSACTION")
        self._conn.execute("DELETE FROM emulator_snapshot")
        self._conn.execute("INSERT INTO emulator_snapshot VALUES (1, ?)", [data])
        self._conn.execute("DELETE FROM emulator_journal")
        self._conn.execute("COMMIT")
        self._seq = 0

    def close(self) -> None:
        """Close the DuckDB connection."""
        self._conn.close()


def _jsonable(value: object) -> object:
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"cannot store {type(value).__name__}")
