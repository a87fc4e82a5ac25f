"""Everyday mistakes end in one message that names the thing and what to do, with SPEC §3's exit
code and no traceback (SPEC §7.4); values no rule covered are converted by a documented rule."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import sqlalchemy as sa
from support import PEOPLE_SYNC, PG_URL, Project, emu_get, emu_post, people_table, pg_available

ROWS = [("u1", "a@x.io", "free", 1), ("u2", "b@x.io", "pro", 2)]


def no_traceback(project: Project) -> None:
    assert "Traceback" not in project.stderr, project.stderr


def error_lines(project: Project) -> list[str]:
    return [line for line in project.stderr.splitlines() if line.startswith("error:")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def add_source(project: Project, name: str, url: str) -> None:
    path = project.root / "syncs" / "project.yml"
    document = json.loads(path.read_text())
    document["sources"][name] = {"url": url}
    path.write_text(json.dumps(document))


@pytest.fixture
def people(duck_project: Project) -> Project:
    people_table(duck_project, ROWS)
    duck_project.write_sync("people", PEOPLE_SYNC.format(behavior="upsert"))
    return duck_project


# --- source errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["run", "plan"])
def test_a_sql_syntax_error_names_the_sync_file_and_exits_2(people: Project, command: str) -> None:
    people.write_sync("people", PEOPLE_SYNC.format(behavior="upsert").replace("FROM", "FRM"))
    code, output = people.cli(command, "people")
    assert code == 2
    text = people.stderr + output
    assert "syncs/people.yml" in text and "source 'warehouse' refused the query" in text
    assert "syntax error" in text
    no_traceback(people)


def test_a_missing_table_names_the_table(people: Project) -> None:
    people.write_sync("people", PEOPLE_SYNC.format(behavior="upsert").replace("people", "nobody"))
    code, _ = people.cli("run", "people")
    assert code == 2
    assert "nobody" in people.stderr and "validate --connect people" in people.stderr
    no_traceback(people)


def test_an_unreachable_source_names_the_source_and_exits_1(people: Project) -> None:
    add_source(people, "crm", f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/crm")
    people.write_sync("people", PEOPLE_SYNC.format(behavior="upsert") + "source: crm\n")
    for command in ("run", "plan"):
        code, output = people.cli(command, "people")
        assert code == 1, command
        text = people.stderr + output
        assert "source 'crm'" in text and "could not be opened" in text
        assert "Connection refused" in text or "connection" in text.lower()
        no_traceback(people)


def test_an_unknown_dialect_is_a_configuration_error(people: Project) -> None:
    add_source(people, "odd", "nosuchdialect://host/db")
    people.write_sync("people", PEOPLE_SYNC.format(behavior="upsert") + "source: odd\n")
    code, _ = people.cli("run", "people")
    assert code == 2
    assert "no SQLAlchemy dialect or driver" in people.stderr and "source 'odd'" in people.stderr
    no_traceback(people)


@pytest.mark.postgres
def test_a_sql_error_on_postgresql_names_the_sync(people: Project) -> None:
    if not pg_available():
        pytest.skip("PostgreSQL is not reachable at SYNC_TEST_PG_URL")
    add_source(people, "pg", PG_URL)
    people.write_sync("people", "object: person\nsource: pg\nquery: SELECT * FROM no_such_table\n")
    code, _ = people.cli("run", "people")
    assert code == 2
    assert "source 'pg' refused the query" in people.stderr and "no_such_table" in people.stderr
    no_traceback(people)


# --- the state store ---------------------------------------------------------------------------


def test_a_damaged_state_file_names_the_file_and_exits_1(people: Project) -> None:
    state = people.root / ".sync" / "state.duckdb"
    state.parent.mkdir(exist_ok=True)
    state.write_bytes(os.urandom(4096))
    for args in (("run", "people"), ("list",), ("history",), ("errors", "people")):
        code, _ = people.cli(*args)
        assert code == 1, args
        assert str(state) in people.stderr and "move it aside" in people.stderr
        no_traceback(people)
    assert state.stat().st_size == 4096  # nothing was written over it


def test_an_unreachable_state_store_names_it_and_exits_1(tmp_path: Path, emulator: object) -> None:
    project = Project(tmp_path, emulator, f"postgresql+psycopg://u@127.0.0.1:{free_port()}/s")  # type: ignore[arg-type]
    project.write_project()
    code, _ = project.cli("list")
    assert code == 1
    assert "the state store" in project.stderr and "cannot be opened" in project.stderr
    no_traceback(project)


def test_a_damaged_emulator_database_names_it(tmp_path: Path) -> None:
    (tmp_path / "syncs").mkdir()
    (tmp_path / "syncs" / "project.yml").write_text(
        "sources: {warehouse: {url: 'duckdb:///:memory:'}}\nworkspaces: {sandbox: {emulator: true}}\n"
    )
    (tmp_path / "syncs" / "one.yml").write_text("object: person\nquery: SELECT 'u1' AS id\n")
    (tmp_path / ".sync").mkdir()
    (tmp_path / ".sync" / "emulator.duckdb").write_bytes(os.urandom(4096))
    project = Project(tmp_path, None, "")  # type: ignore[arg-type]
    code, _ = project.cli("run", "one")
    assert code == 1
    assert "emulator's database" in project.stderr and "move the file aside" in project.stderr
    no_traceback(project)


# --- files and usage ---------------------------------------------------------------------------


def test_a_sync_file_that_is_no_file_is_reported_with_its_path(people: Project) -> None:
    syncs = people.root / "syncs"
    (syncs / "folder.yml").mkdir()
    (syncs / "gone.yml").symlink_to(people.root / "nowhere.yml")
    os.mkfifo(syncs / "pipe.yml")
    code, _ = people.cli("validate")
    assert code == 2
    for name, why in (("folder", "directory"), ("gone", "symbolic link"), ("pipe", "pipe")):
        assert any(f"syncs/{name}.yml" in line and why in line for line in people.stderr.splitlines())
    no_traceback(people)


@pytest.mark.parametrize(
    "args",
    [
        ("plan", "people", "--sample", "-1"),
        ("history", "--limit", "-3"),
        ("request", "POST", "/api/v2/batch", "--data", "@missing.json"),
        ("request", "POST", "/api/v2/batch", "--data", "{not json"),
        ("run", "people", "--all"),
    ],
)
def test_bad_usage_exits_2_without_a_traceback(people: Project, args: tuple[str, ...]) -> None:
    code, _ = people.cli(*args)
    assert code == 2
    assert people.stderr.strip(), "a usage error says what is wrong"
    no_traceback(people)


def test_global_options_may_follow_the_subcommand(people: Project) -> None:
    code, output = people.cli("run", "people", "--json", "--log-format", "json", "-v")
    assert code == 0 and json.loads(output)["exit_code"] == 0
    events = [json.loads(line)["event"] for line in people.stderr.splitlines()]
    assert "run.start" in events and "run.end" in events


# --- JSON logs ---------------------------------------------------------------------------------


def test_every_stderr_line_of_a_json_run_is_one_json_object(people: Project) -> None:
    people_table(people, [*ROWS, (None, "n@x.io", "free", 3)])  # one invalid row: exit 6
    code, _ = people.cli("--log-format", "json", "run", "people")
    assert code == 6
    lines = [json.loads(line) for line in people.stderr.splitlines()]
    assert lines and all({"ts", "level", "event", "sync", "run"} <= set(line) for line in lines)
    start = next(line for line in lines if line["event"] == "run.start")
    end = next(line for line in lines if line["event"] == "run.end")
    assert start["sync"] == end["sync"] == "people" and start["run"] == end["run"]
    assert end["counts"] == {"planned": 2, "sent": 2, "rejected": 0, "invalid": 1, "skipped": 0}
    assert end["status"] == "invalid" and end["exit_code"] == 6
    assert end["hint"] == "see: sync errors people" and end["requests"] == 1


def test_a_guard_verdict_and_an_error_are_json_events(people: Project) -> None:
    people.write_sync("people", PEOPLE_SYNC.format(behavior="mirror"))
    assert people.cli("run", "people")[0] == 0
    people_table(people, [])
    code, _ = people.cli("--log-format", "json", "run", "people")
    assert code == 3
    lines = [json.loads(line) for line in people.stderr.splitlines()]
    guard = next(line for line in lines if line["event"] == "guard.verdict")
    assert guard["would_trip"] is True and guard["level"] == "warning"
    people.write_sync("people", PEOPLE_SYNC.format(behavior="upsert").replace("FROM", "FRM"))
    code, _ = people.cli("--log-format", "json", "run", "people")
    lines = [json.loads(line) for line in people.stderr.splitlines()]
    end = next(line for line in lines if line["event"] == "run.end")
    assert code == 2 and end["level"] == "error" and end["status"] == "source"
    assert "refused the query" in end["message"] and "validate --connect" in end["hint"]


# --- validate --connect ----------------------------------------------------------------------


def test_validate_connect_says_what_it_reached(people: Project) -> None:
    code, output = people.cli("validate", "--connect")
    assert code == 0
    assert "ok: source 'warehouse': connected to" in output
    assert "ok: sync 'people': the query returns 4 column(s)" in output
    assert f"ok: workspace 'test': Customer.io at {people.emulator.url}" in output


def test_validate_connect_exits_4_on_rejected_credentials(people: Project) -> None:
    people.write_project(track_api_key="wrong")
    code, _ = people.cli("validate", "--connect")
    assert code == 4
    assert "workspace 'test'" in people.stderr and "refused" in people.stderr
    no_traceback(people)


# --- values no rule covered --------------------------------------------------------------------

LOG_BODIES = True


def test_values_without_a_json_form_are_converted_by_documented_rules(people: Project) -> None:
    people.sql(
        "CREATE OR REPLACE TABLE odd AS SELECT 'o1' AS id, "
        "170141183460469231731687303715884105727::HUGEINT AS huge, "
        "INTERVAL 1 DAY + INTERVAL 90 MINUTE AS span, MAP {'a': 1, 'b': 2} AS tags, "
        "18446744073709551615::UBIGINT AS wide"
    )
    people.write_sync("odd", "object: person\nquery: SELECT * FROM odd\n")
    code, _ = people.cli("run", "odd")
    assert code == 0, people.stderr
    person = next(p for p in emu_get(people.emulator, "people") if p.get("id") == "o1")
    assert person["attributes"] == {
        "huge": "170141183460469231731687303715884105727",
        "span": "P1DT5400S",
        "tags": {"a": 1, "b": 2},
        "wide": "18446744073709551615",
    }


def test_an_event_naming_no_person_is_an_invalid_record(people: Project) -> None:
    people.sql(
        "CREATE OR REPLACE TABLE clicks AS SELECT * FROM (VALUES ('e1', 'u1'), ('e2', NULL)) "
        "AS t(event_id, user_id)"
    )
    people.write_sync(
        "clicks",
        "object: event\nperson: {column: user_id}\nkey: event_id\nevent_name: click\n"
        "query: SELECT * FROM clicks\n",
    )
    result = people.run_json("clicks")["syncs"][0]
    assert result["exit_code"] == 6 and result["counts"]["sent"] == 1
    errors = people.json("errors", "clicks")["errors"]
    assert [(e["key"], e["reason"]) for e in errors] == [("e2", "NULL or empty person identifier")]


def test_sync_errors_locates_a_row_with_a_null_key(people: Project) -> None:
    people_table(people, [*ROWS, (None, "n@x.io", "team", 9)])
    assert people.run_json("people")["syncs"][0]["status"] == "invalid"
    [error] = people.json("errors", "people")["errors"]
    assert "row 3 of the query's result" in error["reason"]
    assert "id=NULL" in error["reason"] and "'n@x.io'" in error["reason"]


def test_history_shows_what_a_failed_run_had_delivered(people: Project) -> None:
    rows = [(f"u{i:04d}", f"{i}@x.io", "free", i) for i in range(2500)]
    people_table(people, rows)
    people.write_project(max_batch_ops=1000, max_retries=0, concurrency=1)
    script = [{"count": 1, "status": 200}, {"count": 1, "status": 500}]  # a scripted 200: {}
    emu_post(people.emulator, "faults", {"script": script, "script_paths": "/api/v2/batch"})
    code, _ = people.cli("run", "people")
    assert code == 1
    [run] = people.json("history", "people")["runs"]
    state = sa.create_engine(f"duckdb:///{people.root / '.sync' / 'state.duckdb'}")
    with state.connect() as conn:
        held = conn.execute(sa.text("SELECT count(*) FROM cio_sync_snapshot")).scalar()
    state.dispose()
    assert run["sent"] == held and 0 < held < 2500


def test_a_state_store_of_a_newer_version_is_left_alone(people: Project) -> None:
    assert people.cli("history")[0] == 0  # creates the store (`list` reads only what exists)
    state = sa.create_engine(f"duckdb:///{people.root / '.sync' / 'state.duckdb'}")
    with state.begin() as conn:
        conn.execute(sa.text("UPDATE cio_sync_meta SET value = '99' WHERE name = 'schema_version'"))
    state.dispose()
    for args in (("run", "people"), ("list",)):
        code, _ = people.cli(*args)
        assert code == 1, args
        assert "schema version 99" in people.stderr and "upgrade cio-sync" in people.stderr
        no_traceback(people)
    state = sa.create_engine(f"duckdb:///{people.root / '.sync' / 'state.duckdb'}")
    with state.connect() as conn:
        kept = conn.execute(sa.text("SELECT value FROM cio_sync_meta")).scalar()
    state.dispose()
    assert kept == "99"


def test_a_reader_that_goes_away_ends_the_output_quietly(people: Project) -> None:
    """`sync plan x | head`: no defect report, no traceback."""
    import subprocess
    import sys

    people_table(people, [(f"u{i}", f"{i}@x.io", "free", i) for i in range(3000)])
    command = [sys.executable, "-m", "engine.cli", "--project", str(people.root)]
    with subprocess.Popen(
        [*command, "plan", "people", "--sample", "3000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        assert process.stdout is not None and process.stderr is not None
        process.stdout.read(100)
        process.stdout.close()
        stderr = process.stderr.read().decode()
        process.wait(60)
    assert "internal error" not in stderr and "Traceback" not in stderr, stderr


def test_the_executable_ends_with_the_commands_exit_code_and_message(people: Project) -> None:
    """`sync` ends without the interpreter's teardown (`engine.cli_base.run_then_exit`): what
    the command said and its exit code still come out."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "engine.cli", "--project", str(people.root)]
    missing = subprocess.run([*command, "run", "nosuch"], capture_output=True, text=True)
    assert missing.returncode == 2 and "no sync named 'nosuch'" in missing.stderr
    listed = subprocess.run([*command, "list", "--json"], capture_output=True, text=True)
    assert listed.returncode == 0 and '"people"' in listed.stdout
