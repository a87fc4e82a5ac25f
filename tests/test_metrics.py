"""SPEC §7.4 `metrics_file:`: the Prometheus textfile written after every run, read back with
prometheus_client's own parser after real runs against the emulator."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from support import PEOPLE_SYNC, Project, load_project, people_table
from support.config_files import PROJECT, make_project

from engine import errors
from engine.cli import main
from engine.config import resolve_duckdb_url
from engine.metrics import COUNTER_METRICS
from engine.report import COUNTS, DELIVERY, NUMBERS, STATUSES
from engine.state import StateStore, locks, runs

ROWS = [("u1", "a@x.io", "free", 1), ("u2", "b@x.io", "pro", 2), ("u3", "c@x.io", "free", None)]

ACCOUNTS_SYNC = """\
object: object
object_type_id: 2
key: account_id
query: SELECT * FROM accounts
"""

DEVICES_SYNC = """\
object: device
person: {identifier: id, column: user_id}
key: token
platform: platform
query: SELECT * FROM devices
"""

METRICS = "metrics/cio_sync.prom"  # relative: resolved against the project directory


def with_metrics_file(project: Project) -> Path:
    """Add `metrics_file: metrics/cio_sync.prom` to the project's project.yml; that file."""
    path = project.root / "syncs" / "project.yml"
    document = json.loads(path.read_text())  # support.Project writes project.yml as JSON
    path.write_text(json.dumps({**document, "metrics_file": METRICS}, indent=2))
    (project.root / "metrics").mkdir(exist_ok=True)
    return project.root / METRICS


def read_metrics(path: Path) -> dict[str, dict[str, Any]]:
    """The file parsed by prometheus_client: sync → {metric → value, "labels": the others}; the
    status gauge's series are keyed `cio_sync_last_run_status[WORD]`. Every family is a
    documented gauge."""
    found: dict[str, dict[str, Any]] = {}
    for family in text_string_to_metric_families(path.read_text()):
        assert family.type == "gauge" and family.documentation, family.name
        for sample in family.samples:
            labels = dict(sample.labels)
            status = labels.pop("status", None)
            name = sample.name + (f"[{status}]" if status else "")
            sync = labels.pop("sync")
            found.setdefault(sync, {})[name] = sample.value
            found[sync]["labels"] = labels
    return found


def status_of(values: dict[str, Any]) -> str:
    """The one status word whose series is 1."""
    words = [k[len("cio_sync_last_run_status[") : -1] for k, v in values.items() if "[" in k and v]
    assert len(words) == 1, values
    return words[0]


def assert_matches_run(values: dict[str, Any], run: dict[str, Any]) -> None:
    """The sync's series hold what `run --json` said of its run."""
    assert status_of(values) == run["status"]
    assert values["cio_sync_last_run_exit_code"] == run["exit_code"]
    for name in COUNTS:
        assert values[COUNTER_METRICS[name][0]] == run["counts"][name], name
    for name in DELIVERY:
        assert values[COUNTER_METRICS[name][0]] == run[name], name
    duration = values["cio_sync_last_run_duration_seconds"]
    assert 0 <= duration <= run["duration_s"] + 0.01
    ended = values["cio_sync_last_run_end_timestamp_seconds"]
    started = values["cio_sync_last_run_start_timestamp_seconds"]
    assert ended - started == pytest.approx(duration)


def test_two_syncs_run_apart_are_both_in_the_file(project: Project) -> None:
    path = with_metrics_file(project)
    people_table(project, ROWS)
    project.table("accounts", "account_id VARCHAR, name VARCHAR", [("a1", "Acme"), ("a2", "Co")])
    project.write_sync("people", PEOPLE_SYNC.format(behavior="upsert"))
    project.write_sync("accounts", ACCOUNTS_SYNC)

    before = time.time()
    people = project.run_json("people")["syncs"][0]
    after = time.time()
    first = read_metrics(path)
    assert sorted(first) == ["people"]  # a sync that never ran has no series
    assert first["people"]["labels"] == {"workspace": "test", "object": "person"}
    assert_matches_run(first["people"], people)
    assert people["counts"]["sent"] == 3 and people["requests"] == 1
    assert before <= first["people"]["cio_sync_last_run_end_timestamp_seconds"] <= after

    accounts = project.run_json("accounts")["syncs"][0]
    second = read_metrics(path)
    assert sorted(second) == ["accounts", "people"]  # this run's sync and the earlier one
    assert second["accounts"]["labels"] == {"workspace": "test", "object": "object"}
    assert_matches_run(second["accounts"], accounts)
    assert second["people"] == first["people"]


def test_a_guarded_run_and_a_rejected_run_show_status_and_exit_code(project: Project) -> None:
    path = with_metrics_file(project)
    people_table(project, [(f"u{i}", f"{i}@x.io", "free", i) for i in range(10)])
    project.write_sync(
        "people", PEOPLE_SYNC.format(behavior="mirror") + "guard:\n  max_removals: 2\n"
    )
    project.run_json("people")
    project.sql("DELETE FROM people WHERE id IN ('u1', 'u2', 'u3')")
    guarded = project.run_json("people")["syncs"][0]
    assert guarded["exit_code"] == 3
    values = read_metrics(path)["people"]
    assert_matches_run(values, guarded)
    assert status_of(values) == "guard" and values["cio_sync_last_run_exit_code"] == 3
    assert values["cio_sync_last_run_planned_records"] == 3  # the removals it refused to send
    assert values["cio_sync_last_run_sent_records"] == 0

    # Customer.io takes platform ios or android only: the emulator refuses t2 in a 207
    project.sql(
        "CREATE TABLE devices AS SELECT * FROM (VALUES ('u4', 't1', 'ios'), "
        "('u5', 't2', 'windows')) v(user_id, token, platform)"
    )
    project.write_sync("devices", DEVICES_SYNC)
    rejected = project.run_json("devices")["syncs"][0]
    assert rejected["exit_code"] == 6
    both = read_metrics(path)
    assert_matches_run(both["devices"], rejected)
    assert status_of(both["devices"]) == "rejected"
    assert both["devices"]["cio_sync_last_run_rejected_records"] == 1
    assert both["people"] == values


def another_host_is_running(project: Project, sync: str) -> None:
    """What a run of `sync` on another host looks like in the store: its lock and its run row."""
    store = StateStore(resolve_duckdb_url(project.state_url, project.root))
    at = dt.datetime.now(dt.UTC)
    lock = {"sync": sync, "token": "elsewhere", "host": "elsewhere.example", "pid": 1}
    run = {"id": "elsewhere-run", "sync": sync, "destination": "elsewhere", "status": "running"}
    try:
        with store.tx() as conn:
            conn.execute(
                sa.insert(locks).values(
                    **lock, acquired_at=at, lease_until=at + dt.timedelta(hours=1)
                )
            )
            conn.execute(sa.insert(runs).values(**run, started_at=at))
    finally:
        store.dispose()


def test_a_locked_run_rewrites_the_file_with_the_last_finished_runs(project: Project) -> None:
    path = with_metrics_file(project)
    people_table(project, ROWS)
    project.write_sync("people", PEOPLE_SYNC.format(behavior="upsert"))
    done = project.run_json("people")["syncs"][0]
    written = os.stat(path).st_ino
    another_host_is_running(project, "people")
    locked = project.run_json("people")
    assert locked["exit_code"] == 5
    assert os.stat(path).st_ino != written  # written again after the skipped run
    assert_matches_run(read_metrics(path)["people"], done)  # the run in progress is not shown


def test_the_status_gauge_has_one_series_per_status_word(project: Project) -> None:
    path = with_metrics_file(project)
    people_table(project, ROWS)
    project.write_sync("people", PEOPLE_SYNC.format(behavior="upsert"))
    project.run_json("people")
    values = read_metrics(path)["people"]
    words = sorted(
        k.split("[")[1][:-1] for k in values if k.startswith("cio_sync_last_run_status[")
    )
    assert words == sorted(STATUSES)
    assert sum(values[f"cio_sync_last_run_status[{word}]"] for word in words) == 1


def test_every_status_word_of_the_error_tree_is_a_series() -> None:
    def tree(cls: type[errors.SyncError]) -> list[type[errors.SyncError]]:
        return [cls, *(c for sub in cls.__subclasses__() for c in tree(sub))]

    words = {cls.status for cls in tree(errors.SyncError)}
    assert words | {"ok", "invalid", "interrupted"} == set(STATUSES)


def test_every_counter_of_a_run_has_its_metric() -> None:
    assert set(COUNTER_METRICS) == set(NUMBERS)
    names = [name for name, _ in COUNTER_METRICS.values()]
    assert len(set(names)) == len(names) and all(n.startswith("cio_sync_") for n in names)


# --- where the file goes, and when it is not written -----------------------------------------


@pytest.fixture
def people_project(duck_project: Project) -> Project:
    """People synced on a DuckDB state file: these tests are about the file, not the store."""
    people_table(duck_project, ROWS)
    duck_project.write_sync("people", PEOPLE_SYNC.format(behavior="upsert"))
    return duck_project


def test_the_option_overrides_project_yml(people_project: Project, tmp_path: Path) -> None:
    project = people_project
    configured = with_metrics_file(project)
    given = tmp_path / "elsewhere.prom"
    code, _ = project.cli("--metrics-file", str(given), "run", "people")
    assert code == 0, project.stderr
    assert not configured.exists()
    assert read_metrics(given)["people"]["cio_sync_last_run_sent_records"] == 3


def test_plan_and_dry_run_write_no_metrics(people_project: Project) -> None:
    project = people_project
    path = with_metrics_file(project)
    assert project.cli("plan", "people")[0] == 0
    assert project.cli("run", "--dry-run", "people")[0] == 0
    assert not path.exists()


def test_an_unwritable_path_warns_and_keeps_the_exit_code(people_project: Project) -> None:
    project = people_project
    people_table(project, [*ROWS, (None, "n@x.io", "free", 1)])  # one invalid row: exit 6
    missing = project.root / "no-such-dir" / "cio_sync.prom"
    code, output = project.cli("--metrics-file", str(missing), "run", "--json", "people")
    assert code == 6
    assert json.loads(output)["syncs"][0]["counts"]["sent"] == 3
    warnings = [line for line in project.stderr.splitlines() if "metrics file" in line]
    assert warnings == [
        f"warning: could not write the metrics file {missing}: No such file or directory"
    ]
    assert not missing.parent.exists()


def test_the_file_is_replaced_by_a_rename(people_project: Project) -> None:
    project = people_project
    path = with_metrics_file(project)
    project.run_json("people")
    first = os.stat(path)
    with path.open() as reader:  # a collector reading the old file keeps reading it whole
        project.sql("UPDATE people SET plan = 'team' WHERE id = 'u2'")
        project.run_json("people")
        assert os.stat(path).st_ino != first.st_ino  # a new file renamed over the old one
        assert "cio_sync_last_run_sent_records" in reader.read()
    assert read_metrics(path)["people"]["cio_sync_last_run_sent_records"] == 1
    assert sorted(p.name for p in path.parent.iterdir()) == ["cio_sync.prom"]  # no temp left


def test_metrics_file_resolves_against_the_project_directory(tmp_path: Path) -> None:
    root = make_project(tmp_path, PROJECT + "metrics_file: out/cio_sync.prom\n")
    assert load_project(root).metrics_file == tmp_path / "out" / "cio_sync.prom"
    assert load_project(make_project(tmp_path, PROJECT)).metrics_file is None


def test_validate_reports_a_metrics_file_that_is_not_a_path(tmp_path: Path) -> None:
    root = make_project(tmp_path, PROJECT + "metrics_file:\n  - a.prom\n")
    result = CliRunner().invoke(main, ["--project", str(root), "validate"])
    assert result.exit_code == 2
    line = PROJECT.count("\n") + 1
    assert f"syncs/project.yml:{line}: metrics_file: must be a file path" in result.stderr
