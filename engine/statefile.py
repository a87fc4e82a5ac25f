"""`sync list`'s read of a DuckDB state file: read-only, through the duckdb module alone.

`sync list` should start within a few times a bare `import click, yaml` (issue 10). Opening the
store through SQLAlchemy and its DuckDB dialect costs more than the rest of the command, so a
DuckDB state file whose schema is current is read here instead, with the queries that
`engine.ledger.last_runs` and `engine.lifecycle` run (a test holds both ways to one answer). A
file that does not exist holds nothing: nothing is read, and nothing is created.

Everything else goes through `engine.state.StateStore`, as for every other command (`read`
answers None): another database (PostgreSQL, in memory, MotherDuck), a URL with options, a file
another process holds (the store asks for it and waits its turn), a file this process holds
(DuckDB refuses a second configuration of one file), a schema to create or migrate, and a damaged
file (the store names it and says what to do).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from engine.config.urls import parse_url
from engine.sync_status import RETIRED, orphaned

if TYPE_CHECKING:
    import duckdb

SCHEMA_VERSION = 8  # the state schema this cio-sync writes; `engine.state` migrates to it

# each sync's latest run of kind run (not a teardown or a verification): `ledger.last_runs`
_LAST_RUNS = """
    SELECT runs.* FROM cio_sync_runs AS runs
    JOIN (
        SELECT sync, max(started_at) AS at FROM cio_sync_runs
        WHERE kind = 'run' OR kind IS NULL
        GROUP BY sync
    ) AS latest ON runs.sync = latest.sync AND runs.started_at = latest.at
"""


class Recorded(NamedTuple):
    """What the state store holds of a project's syncs, as `sync list` shows it."""

    last_runs: dict[str, dict[str, Any]]  # each sync's latest run, as `ledger.last_runs`
    statuses: dict[str, str]  # the lifecycle status stored for a sync, if any
    orphans: list[str]  # syncs with state but no file (`sync_status.orphaned`)


def read(url: str, known: Iterable[str]) -> Recorded | None:
    """What the DuckDB state file at `url` holds of the syncs, `known` being those with a file;
    None when the state store must be opened instead (see the module docstring)."""
    path = _plain_duckdb_file(url)
    if path is None:
        return None
    if not path.exists():
        return Recorded({}, {}, [])
    import duckdb

    try:
        with duckdb.connect(str(path), read_only=True) as conn:
            if _schema_version(conn) != SCHEMA_VERSION:
                return None
            return _recorded(conn, known)
    except duckdb.Error:
        return None  # the store opens it: it waits its turn, or names what is wrong


def _plain_duckdb_file(url: str) -> Path | None:
    """The file of a `duckdb:///path` URL without options; None for any other URL."""
    try:
        parsed = parse_url(url)
    except ValueError:
        return None
    elsewhere = (parsed.username, parsed.password, parsed.host, parsed.port) != (None,) * 4
    if parsed.backend() != "duckdb" or elsewhere or parsed.query:
        return None
    database = parsed.database
    if not database or database.startswith((":memory:", "md:", "motherduck:")):
        return None
    return Path(database)


def _schema_version(conn: duckdb.DuckDBPyConnection) -> int | None:
    row = conn.execute("SELECT value FROM cio_sync_meta WHERE name = 'schema_version'").fetchone()
    return None if row is None else int(row[0])


def _recorded(conn: duckdb.DuckDBPyConnection, known: Iterable[str]) -> Recorded:
    found = conn.execute(_LAST_RUNS)
    columns = [column[0] for column in found.description or ()]
    runs = [dict(zip(columns, row, strict=True)) for row in found.fetchall()]
    last_runs = {run["sync"]: run for run in runs}
    statuses = dict(conn.execute("SELECT sync, status FROM cio_sync_states").fetchall())
    delivered = _names(conn, "SELECT DISTINCT sync FROM cio_sync_snapshot")
    ran = _names(conn, "SELECT DISTINCT sync FROM cio_sync_runs")
    retired = [name for name, status in statuses.items() if status == RETIRED]
    return Recorded(last_runs, statuses, orphaned(known, delivered, ran, retired))


def _names(conn: duckdb.DuckDBPyConnection, query: str) -> list[str]:
    return [row[0] for row in conn.execute(query).fetchall()]
