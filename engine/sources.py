"""Source databases: opening one, and what a source raises, told in the user's terms.

Every failure a source can cause ends as one `SourceError` that names the source, the sync and
what to do (SPEC §7.4): an unknown dialect or a missing driver, a database that does not answer
(`SourceUnreachable`, exit 1: try again later), and the errors of the query itself (syntax,
missing tables or columns, permissions: exit 2, the sync's definition must change).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import sqlalchemy as sa
from sqlalchemy.exc import NoSuchModuleError

from engine.config import SyncBase, display_url
from engine.errors import SourceError, SourceUnreachable


def first_line(exc: BaseException) -> str:
    """The first line of a database error, without SQLAlchemy's wrapping."""
    cause: Any = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return lines[0] if lines else type(cause).__name__


def _read_only_args(url: str) -> dict[str, Any]:
    """A DuckDB file is opened read-only, so that any number of processes read it at once (a
    read-write open locks the file for one process). An in-memory database, a file that does not
    exist yet, and a URL naming its own `access_mode` are opened as written."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "duckdb" or "access_mode" in map(str.lower, parsed.query):
        return {}
    database = parsed.database
    return {"read_only": True} if database and Path(database).is_file() else {}


@contextmanager
def connect(name: str, url: str) -> Iterator[sa.Connection]:
    """A connection to the source `name` (a DuckDB file read-only); SourceError when it cannot
    be had."""
    shown = display_url(url)
    try:
        engine = sa.create_engine(
            url, poolclass=sa.pool.NullPool, connect_args=_read_only_args(url)
        )
    except (NoSuchModuleError, ImportError) as exc:
        raise SourceError(
            f"source '{name}' ({shown}): no SQLAlchemy dialect or driver for this URL "
            f"({first_line(exc)})",
            "install the dialect's package (e.g. snowflake-sqlalchemy, sqlalchemy-bigquery) "
            "or correct the URL's dialect+driver in project.yml",
        ) from exc
    try:
        try:
            conn = engine.connect()
        except (sa.exc.DBAPIError, duckdb.Error) as exc:
            raise SourceUnreachable(
                f"source '{name}' ({shown}) could not be opened: {first_line(exc)}",
                "check that the database is up and that its URL in project.yml is right",
            ) from exc
        with conn:
            yield conn
    finally:
        engine.dispose()


@contextmanager
def query_errors(sync: SyncBase) -> Iterator[None]:
    """Turn what the source raises while running the sync's query into a SourceError."""
    try:
        yield
    except (duckdb.Error, sa.exc.DBAPIError) as exc:
        if getattr(exc, "connection_invalidated", False):
            raise SourceUnreachable(
                f"sync '{sync.name}': source '{sync.source}' dropped the connection: "
                f"{first_line(exc)}",
                "run the sync again; check the database if it keeps happening",
            ) from exc
        raise SourceError(
            f"{sync.file}:{sync.line}: source '{sync.source}' refused the query: {first_line(exc)}",
            f"correct the query, then check it with `sync validate --connect {sync.name}`",
        ) from exc
