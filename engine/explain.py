"""`sync plan --explain`: the SQL a run executes, recorded while the plan computes it (SPEC §7.1).

A plan runs the same statements a run does up to delivery: the source query (as filtered for an
incremental read), staging, the diff and the plan rows, in the state database. While
`recording()` is open, every statement SQLAlchemy executes, and the source queries the DuckDB
reader runs through DuckDB's own API, are noted with the database they ran on. Recording is
process-wide (the plan's steps run in worker threads): one plan at a time, as the CLI runs it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa


@dataclass(frozen=True)
class Statement:
    where: str  # the database: its dialect and, for a file, its path
    sql: str


_lock = threading.Lock()
_recording: list[Statement] | None = None


def note(where: str, sql: str) -> None:
    """Record one statement, when a recording is open."""
    with _lock:
        if _recording is not None:
            _recording.append(Statement(where, sql.strip()))


_CATALOG = ("duckdb_tables()", "pg_catalog.", "information_schema.")  # the driver's own look-ups


def _on_execute(conn: sa.Connection, cursor: Any, statement: str, *_: Any) -> None:
    if any(name in statement for name in _CATALOG):
        return
    url = conn.engine.url
    note(f"{url.get_backend_name()} {url.database or ''}".strip(), statement)


@contextmanager
def recording() -> Iterator[list[Statement]]:
    """Record the statements executed inside the block."""
    global _recording
    statements: list[Statement] = []
    with _lock:
        _recording = statements
    sa.event.listen(sa.Engine, "before_cursor_execute", _on_execute)
    try:
        yield statements
    finally:
        sa.event.remove(sa.Engine, "before_cursor_execute", _on_execute)
        with _lock:
            _recording = None


def text(statements: list[Statement]) -> str:
    """The statements as SQL a person reads: grouped by database, in the order they ran."""
    lines: list[str] = []
    where = None
    for statement in statements:
        if statement.where != where:
            where = statement.where
            lines.append(f"\n-- on {where}")
        lines.append(statement.sql.rstrip(";") + ";")
    return "\n".join(lines).lstrip("\n")
