"""What keeps `sync list` and `sync validate` quick to start (issue 10), held so it cannot slip.

Neither imports SQLAlchemy, its DuckDB dialect, an HTTP client or Arrow: URLs and table names are
read and written by SQLAlchemy's rules without SQLAlchemy (`engine.config.urls`,
`quote_table`), and `list` reads a DuckDB state file with the duckdb module alone
(`engine.statefile`), falling back to the state store whenever the file cannot simply be read.
The timings themselves are `tests/benchmarks/startup.py`'s: no test here measures time.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from sqlalchemy.engine.default import DefaultDialect
from sqlalchemy.exc import ArgumentError
from sqlalchemy.sql.compiler import RESERVED_WORDS

from engine import ledger, lifecycle, statefile
from engine.cli import main
from engine.config import display_url, quote_table
from engine.config.urls import parse_url
from engine.report import RunRecord
from engine.state import SCHEMA_VERSION, StateStore, meta, now, snapshot, sync_states

HEAVY = ("sqlalchemy", "duckdb_engine", "aiohttp", "pyarrow")
KNOWN = ("people", "later")


def write_project(root: Path, state: str | None = None) -> str:
    """A project of two syncs (people, later) on the embedded emulator; its state URL."""
    (root / "syncs").mkdir()
    (root / "syncs" / "project.yml").write_text(
        ("" if state is None else f"state: '{state}'\n")
        + "sources: {warehouse: {url: 'duckdb:///warehouse.duckdb'}}\n"
        + "workspaces: {sandbox: {emulator: true}}\n"
    )
    for name in KNOWN:
        (root / "syncs" / f"{name}.yml").write_text("object: person\nquery: SELECT 'u1' AS id\n")
    return state or f"duckdb:///{root / '.sync' / 'state.duckdb'}"


def record_run(store: StateStore, run: str, sync: str, status: str, kind: str = "run") -> None:
    ledger.start_run(store, run, sync, "emulator", False, kind=kind)
    if status != "running":
        ledger.finish_run(
            store, run, RunRecord(status=status, exit_code=0 if status == "ok" else 1)
        )


def history(url: str) -> None:
    """A store holding every case `sync list` shows: last runs (a teardown after a run is not
    one), stored statuses, a retired sync and orphans with and without a snapshot."""
    store = StateStore(url)
    try:
        store.migrate()
        record_run(store, "r1", "people", "failed")
        record_run(store, "r2", "people", "ok")
        record_run(store, "r3", "people", "ok", kind="teardown")
        record_run(store, "r4", "later", "running")
        record_run(store, "r5", "gone", "ok")  # history, no file: an orphan
        record_run(store, "r6", "retired", "ok")  # history of a retired sync: not an orphan
        with store.tx() as conn:
            states = [("people", "retiring"), ("retired", "retired"), ("kept", "retired")]
            for sync, status in states:
                values = {"sync": sync, "status": status, "version": 1, "changed_at": now()}
                conn.execute(sa.insert(sync_states).values(values))
            conn.execute(  # a retired sync still holding a snapshot is an orphan
                sa.insert(snapshot).values(sync="kept", destination="d", key="k", fingerprint="f")
            )
    finally:
        store.dispose()


def through_the_store(url: str) -> statefile.Recorded:
    store = StateStore(url)
    try:
        store.migrate()
        orphans = lifecycle.orphans(store, KNOWN)
        return statefile.Recorded(ledger.last_runs(store), lifecycle.statuses(store), orphans)
    finally:
        store.dispose()


def listed(root: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--project", str(root), "list", "--json"])
    return result.exit_code, result.stdout


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


def run_and_list_imports(root: Path, command: str, heavy: Sequence[str]) -> list[str]:
    """`sync --project root command` in a process of its own: its stdout, then its exit code
    and which of the `heavy` packages it imported."""
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM, ",".join(heavy), "--project", str(root), command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stdout, done.stderr
    return done.stdout.strip().splitlines()


@pytest.mark.parametrize("command", ["list", "validate"])
def test_list_and_validate_import_no_sqlalchemy_http_client_or_arrow(
    tmp_path: Path, command: str
) -> None:
    history(write_project(tmp_path))
    lines = run_and_list_imports(tmp_path, command, HEAVY)
    assert lines[-2:] == ["exit 0", "[]"], lines
    if command == "list":  # the history was read, not skipped
        assert "retiring" in "".join(lines) and "running" in "".join(lines)


@pytest.mark.postgres
def test_list_over_a_postgresql_store_imports_no_http_client_or_arrow(
    tmp_path: Path, pg_state: str
) -> None:
    history(write_project(tmp_path, pg_state))
    lines = run_and_list_imports(tmp_path, "list", ("aiohttp", "pyarrow"))
    assert lines[-2:] == ["exit 0", "[]"], lines
    assert "retiring" in "".join(lines)


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


# --- list's read of a DuckDB state file ----------------------------------------------------------


def test_a_state_file_read_directly_answers_as_the_store_does(tmp_path: Path) -> None:
    url = write_project(tmp_path)
    history(url)
    direct = statefile.read(url, KNOWN)
    assert direct is not None
    assert direct == through_the_store(url)
    assert {name: run["id"] for name, run in direct.last_runs.items()} == {
        "people": "r2",
        "later": "r4",
        "gone": "r5",
        "retired": "r6",
    }
    assert direct.orphans == ["gone", "kept"]


def test_list_of_a_project_without_a_state_file_reads_nothing_and_creates_nothing(
    tmp_path: Path,
) -> None:
    url = write_project(tmp_path)
    assert statefile.read(url, KNOWN) == statefile.Recorded({}, {}, [])
    code, output = listed(tmp_path)
    assert code == 0 and '"name": "later"' in output and '"last_run": null' in output
    assert not (tmp_path / ".sync").exists()


def test_list_reads_through_the_store_a_file_this_process_holds(tmp_path: Path) -> None:
    url = write_project(tmp_path)
    history(url)
    store = StateStore(url)
    try:
        store.migrate()  # the file stays open in this process, under the store's configuration
        assert statefile.read(url, KNOWN) is None
        code, output = listed(tmp_path)
    finally:
        store.dispose()
    assert code == 0 and '"status": "running"' in output


def test_list_of_a_store_of_an_older_schema_migrates_it_as_every_command_does(
    tmp_path: Path,
) -> None:
    url = write_project(tmp_path)
    history(url)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.update(meta).where(meta.c.name == "schema_version").values(value="4"))
    engine.dispose()
    assert statefile.read(url, KNOWN) is None
    code, output = listed(tmp_path)
    assert code == 0 and '"status": "running"' in output
    assert statefile.read(url, KNOWN) == through_the_store(url)
    assert SCHEMA_VERSION == statefile.SCHEMA_VERSION


@pytest.mark.parametrize(
    "url",
    [
        "duckdb:///:memory:",
        "duckdb:///md:my_db",
        "duckdb:///state.duckdb?threads=1",
        "postgresql+psycopg://postgres@127.0.0.1:5432/test",
        "not a url",
    ],
)
def test_other_state_stores_are_left_to_the_store(url: str) -> None:
    assert statefile.read(url, KNOWN) is None
