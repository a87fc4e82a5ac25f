"""What keeps `sync validate` quick to start (issue 10), held so it cannot slip.

It imports neither SQLAlchemy, its DuckDB dialect, an HTTP client nor Arrow: URLs and table names
are read and written by SQLAlchemy's rules without SQLAlchemy (`engine.config.urls`,
`quote_table`). The timings themselves are `tests/benchmarks/startup.py`'s: no test here
measures time.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine.default import DefaultDialect
from sqlalchemy.exc import ArgumentError
from sqlalchemy.sql.compiler import RESERVED_WORDS

from engine.config import display_url, quote_table
from engine.config.urls import parse_url

HEAVY = ("sqlalchemy", "duckdb_engine", "aiohttp", "pyarrow")


def write_project(root: Path) -> None:
    """A project of two syncs on the embedded emulator."""
    (root / "syncs").mkdir()
    (root / "syncs" / "project.yml").write_text(
        "sources: {warehouse: {url: 'duckdb:///warehouse.duckdb'}}\n"
        "workspaces: {sandbox: {emulator: true}}\n"
    )
    for name in ("people", "later"):
        (root / "syncs" / f"{name}.yml").write_text("object: person\nquery: SELECT 'u1' AS id\n")


# --- what the commands import --------------------------------------------------------------------

PROGRAM = """\
import sys
from engine.cli import main
heavy, arguments = set(sys.argv[1].split(",")), sys.argv[2:]
try:
    main(arguments)
except SystemExit as done:
    print("exit", done.code)
print(sorted({name.split(".")[0] for name in sys.modules} & heavy))
"""


def test_validate_imports_no_sqlalchemy_http_client_or_arrow(tmp_path: Path) -> None:
    write_project(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, ",".join(HEAVY), "--project", str(tmp_path), "validate"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    assert lines[-2:] == ["exit 0", "[]"], done.stdout + done.stderr


# --- URLs and table names as SQLAlchemy reads and writes them ------------------------------------

URLS = [
    "duckdb:///warehouse.duckdb",
    "duckdb:////abs/path/state.duckdb",
    "duckdb:///:memory:",
    "duckdb+duckdb:///md:my_db?motherduck_token=t",
    "postgresql+psycopg://sync:s3cret@db.example.com:5432/warehouse",
    "postgresql+psycopg://sync:p%40ss%3Aw0rd@db/warehouse?sslmode=require&options=-csearch_path%3Dx",
    "postgresql://user:pw@[::1]:5432/db",
    "postgresql://user@host/db?b=2&a=1&b=1",
    "postgresql://us%20er:pw@host/db",
    "postgresql://user:@host/db",
    "postgresql://:pw@host/db",
    "postgresql://user:pw@host:/db",
    "postgresql://user:pw@host:5432",
    "snowflake://user:pw@account/db/schema?warehouse=wh&role=r",
    "bigquery://project/dataset",
    "sqlite://",
    "sqlite:///relative.db",
    "mysql+pymysql://user:pw@host:3306/db?charset=utf8mb4&empty=",
    "postgresql://host:notaport/db",
    "postgresql://user:pw@host:12x/db",
    "warehouse.duckdb",
    "not a url",
    "://nothing",
    "post gres://host/db",
    "",
]


@pytest.mark.parametrize("url", URLS)
def test_urls_parse_as_sqlalchemy_parses_them(url: str) -> None:
    try:
        expected = sa.make_url(url)
    except (ArgumentError, ValueError):
        with pytest.raises(ValueError):
            parse_url(url)
        assert display_url(url) == "<a URL SQLAlchemy cannot parse>"
        return
    parsed = parse_url(url)
    parts = ("drivername", "username", "password", "host", "port", "database")
    assert parsed[:6] == tuple(getattr(expected, part) for part in parts)
    assert parsed.backend() == expected.get_backend_name()
    assert parsed.render() == expected.render_as_string(hide_password=True)
    shown = url if expected.password is None else expected.render_as_string(hide_password=True)
    assert display_url(url) == shown


@pytest.mark.parametrize("value", [None, 5, ["duckdb:///x"]])
def test_a_url_that_is_not_text_is_refused_as_sqlalchemy_refuses_it(value: object) -> None:
    with pytest.raises(ArgumentError):
        sa.make_url(value)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        parse_url(value)  # type: ignore[arg-type]


NAMES = [
    *sorted(RESERVED_WORDS),
    *(word.upper() for word in sorted(RESERVED_WORDS)),
    "people",
    "People",
    "_private",
    "$money",
    "1st",
    "a1$",
    "with space",
    "dash-ed",
    "per%cent",
    "événement",
    "\N{LATIN SMALL LETTER LONG S}",  # upper-cases to S: SQLAlchemy lets it through unquoted
]


def test_table_names_are_quoted_as_sqlalchemy_quotes_them() -> None:
    preparer = DefaultDialect().identifier_preparer
    for name in NAMES:
        assert quote_table(f"schema.{name}") == f"schema.{preparer.quote(name)}", name
