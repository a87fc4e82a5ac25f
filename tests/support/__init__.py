"""Helpers the tests share: the real PostgreSQL, the emulator's inspection endpoints, a sync
project in a temporary directory, and the project loader bound to the registered destination.
Fixtures that use them are in `tests/conftest.py`."""

from __future__ import annotations

import base64
import json
import os
import textwrap
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import sqlalchemy as sa
from click.testing import CliRunner

from cio_emulator import EmulatorHandle
from engine import compose
from engine.config import Project as LoadedProject

PG_URL = os.environ.get("SYNC_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def pg_available() -> bool:
    try:
        engine = sa.create_engine(PG_URL, poolclass=sa.pool.NullPool)
        with engine.connect():
            return True
    except sa.exc.OperationalError:
        if os.environ.get("SYNC_REQUIRE_PG"):
            raise
        return False


def private_schema(url: str, schema: str) -> str:
    """`url` with a fresh schema of its own on the search path, so that other test sessions
    sharing the database cannot drop or read this session's tables."""
    drop_schema(url, schema)
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    engine.dispose()
    return str(sa.make_url(url).update_query_dict({"options": f"-csearch_path={schema}"}))


def drop_schema(url: str, schema: str) -> None:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    engine.dispose()



def emu_get(handle: EmulatorHandle, what: str) -> Any:
    """An inspection list, unwrapped: GET /_emulator/people answers {"people": [...]}."""
    with urllib.request.urlopen(f"{handle.url}/_emulator/{what}") as answer:
        document = json.loads(answer.read())
    return document.get(what, document)


def emu_post(handle: EmulatorHandle, what: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        f"{handle.url}/_emulator/{what}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as answer:
        return json.loads(answer.read() or b"{}")


def track_requests(handle: EmulatorHandle) -> list[dict[str, Any]]:
    return [r for r in emu_get(handle, "requests") if r["path"].startswith(("/api/", "/v1/"))]


def assert_clean_log(handle: EmulatorHandle) -> list[dict[str, Any]]:
    """Every logged request was answered 2xx and listed no validation error; the log."""
    log = track_requests(handle)
    bad = [
        (r["method"], r["path"], r["status"], r["errors"])
        for r in log
        if r["errors"] or r["status"] is None or not 200 <= r["status"] < 300
    ]
    assert bad == [], f"the emulator refused or dropped requests: {bad}"
    return log



def seed_people(handle: EmulatorHandle, ids: list[str], *, email: bool = False) -> None:
    """Create people in the emulator through v2 batches (before a test counts requests)."""
    config = handle.config
    auth = base64.b64encode(f"{config.site_id}:{config.track_api_key}".encode()).decode()
    for start in range(0, len(ids), 1000):
        ops = [
            {
                "type": "person",
                "action": "identify",
                "identifiers": {"id": i},
                "attributes": {"email": f"{i}@x.io"} if email else {},
            }
            for i in ids[start : start + 1000]
        ]
        request = urllib.request.Request(
            f"{handle.url}/api/v2/batch",
            data=json.dumps({"batch": ops}).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Basic {auth}"},
        )
        with urllib.request.urlopen(request) as answer:
            assert answer.status == 200, answer.read()


@dataclass
class Project:
    """A sync project in a temporary directory, wired to the emulator, with a DuckDB warehouse."""

    root: Path
    emulator: EmulatorHandle
    state_url: str
    workspace: dict[str, Any] = field(default_factory=dict)

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse.duckdb"

    def sql(self, statement: str) -> None:
        with duckdb.connect(str(self.warehouse)) as conn:
            conn.execute(statement)

    def table(self, name: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
        """(Re)create a warehouse table holding `rows` (None is NULL)."""
        self.sql(f"CREATE OR REPLACE TABLE {name} ({columns})")
        if rows:
            values = ", ".join(
                "(" + ", ".join("NULL" if v is None else repr(v) for v in row) + ")" for row in rows
            )
            self.sql(f"INSERT INTO {name} VALUES {values}")

    def write_project(self, **workspace: Any) -> None:
        ws = {
            "site_id": "emulator-site",
            "track_api_key": "emulator-track-key",
            "app_api_key": "emulator-app-key",
            "track_url": self.emulator.url,
            "app_url": self.emulator.url,
            "max_retries": 2,
            **workspace,
        }
        document = {
            "state": self.state_url,
            "sources": {"warehouse": {"url": "duckdb:///warehouse.duckdb"}},
            "workspaces": {"test": ws},
            "defaults": {"workspace": "test", "source": "warehouse"},
        }
        (self.root / "syncs").mkdir(exist_ok=True)
        (self.root / "syncs" / "project.yml").write_text(json.dumps(document, indent=2))

    def write_sync(self, name: str, text: str) -> None:
        (self.root / "syncs" / f"{name}.yml").write_text(textwrap.dedent(text))

    def cli(self, *args: str) -> tuple[int, str]:
        """Run the CLI in-process; return its exit code and stdout (stderr goes to self.stderr)."""
        from engine.cli import main

        result = CliRunner().invoke(main, ["--project", str(self.root), *args])
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        self.stderr = result.stderr
        return result.exit_code, result.stdout

    def run_json(self, *args: str) -> dict[str, Any]:
        code, output = self.cli("run", "--json", *args)
        document: dict[str, Any] = json.loads(output)
        assert document["exit_code"] == code, self.stderr
        return document

    def run_stopped_by_guard(self, sync: str) -> int:
        """Run `sync`, which must trip its guard: exit 3, nothing sent, no request made.
        Returns how many Track/App requests the emulator had logged before."""
        before = len(track_requests(self.emulator))
        stopped = self.run_json(sync)
        assert stopped["exit_code"] == 3 and stopped["syncs"][0]["status"] == "guard"
        assert stopped["syncs"][0]["counts"]["sent"] == 0
        assert len(track_requests(self.emulator)) == before
        return before

    def json(self, *args: str) -> dict[str, Any]:
        code, output = self.cli(*args, "--json")
        assert code == 0, self.stderr
        return json.loads(output)  # type: ignore[no-any-return]



PEOPLE_SYNC = """\
object: person
behavior: {behavior}
identifier: id
key: id
query: SELECT * FROM people
"""


def people_table(project: Project, rows: list[tuple[Any, ...]]) -> None:
    project.table("people", "id VARCHAR, email VARCHAR, plan VARCHAR, score INTEGER", rows)



def load_project(root: Path | str, selected: Sequence[str] | None = None) -> LoadedProject:
    """A project loaded as the CLI loads it (workspaces read as Customer.io workspaces)."""
    return compose.load_project(root, selected)
