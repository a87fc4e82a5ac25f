"""SPEC §4.8 (one run per sync), §4.3 (crash safety) and §4.4 (rejected records), end to end.

Runs that must be concurrent or killed are real `sync` processes; the emulator stays in the test
process (its own thread and loop, over real HTTP), so the engine is the only thing killed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from support import PEOPLE_SYNC, Project, emu_get, emu_post, people_table, track_requests

from cio_emulator import EmulatorHandle
from connectors.customerio.operations import event_id
from engine.config import resolve_duckdb_url
from engine.locks import HOST
from engine.state import StateStore, locks, snapshot

SYNC_BIN = Path(sys.executable).with_name("sync")
DUCKDB_STATE = "duckdb:///.sync/state.duckdb"


# --- helpers -------------------------------------------------------------------------------------


def state_store(project: Project) -> StateStore:
    store = StateStore(resolve_duckdb_url(project.state_url, project.root))
    store.migrate()
    return store


def put_lock(project: Project, sync: str, *, host: str, pid: int, lease_s: float) -> None:
    store = state_store(project)
    at = dt.datetime.now(dt.UTC)
    try:
        with store.tx() as conn:
            conn.execute(sa.delete(locks).where(locks.c.sync == sync))
            conn.execute(
                sa.insert(locks).values(
                    sync=sync,
                    token="planted",
                    host=host,
                    pid=pid,
                    acquired_at=at,
                    lease_until=at + dt.timedelta(seconds=lease_s),
                )
            )
    finally:
        store.dispose()


def lock_rows(project: Project) -> list[Any]:
    store = state_store(project)
    try:
        with store.tx() as conn:
            return list(conn.execute(sa.select(locks)))
    finally:
        store.dispose()


def snapshot_payloads(project: Project, sync: str) -> dict[str, Any]:
    store = state_store(project)
    try:
        with store.tx() as conn:
            rows = conn.execute(
                sa.select(snapshot.c.key, snapshot.c.payload).where(snapshot.c.sync == sync)
            )
            return {r.key: orjson.loads(r.payload) if r.payload else None for r in rows}
    finally:
        store.dispose()


def sync_process(project: Project, *args: str, out: Path) -> subprocess.Popen[bytes]:
    """`sync --project DIR ARGS` in its own process, stdout to `out`, stderr beside it."""
    with out.open("wb") as stdout, out.with_suffix(".err").open("wb") as stderr:
        return subprocess.Popen(
            [str(SYNC_BIN), "--project", str(project.root), *args],
            stdout=stdout,
            stderr=stderr,
            cwd=project.root,
        )


def sync_json(project: Project, *args: str) -> tuple[int, Any]:
    """Run `sync ... --json` to completion in another process; return its code and document."""
    done = subprocess.run(
        [str(SYNC_BIN), "--project", str(project.root), *args, "--json"],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.stdout, done.stderr.decode()
    return done.returncode, json.loads(done.stdout)


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def people_by_id(emulator: EmulatorHandle) -> dict[str, dict[str, Any]]:
    return {p["id"]: p for p in emu_get(emulator, "people") if p.get("id") and not p["suppressed"]}


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A live process on this host that is not a sync run."""
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


ROWS = [("u1", "a@x.io", "free", 1), ("u2", "b@x.io", "pro", 2), ("u3", "c@x.io", "free", None)]


# --- SPEC §4.8: locks ------------------------------------------------------------------------------


def test_a_lock_held_by_a_live_process_skips_the_run_until_that_process_is_gone(
    project: Project, sleeper: subprocess.Popen[bytes]
) -> None:
    people_table(project, ROWS)
    project.write_sync("people", PEOPLE_SYNC.format(behavior="upsert"))
    put_lock(project, "people", host=HOST, pid=sleeper.pid, lease_s=3600)
    held = project.run_json("people")
    assert held["exit_code"] == 5
    assert held["syncs"][0]["status"] == "locked"
    assert str(sleeper.pid) in held["syncs"][0]["message"]
    assert held["syncs"][0]["counts"]["sent"] == 0
    assert track_requests(project.emulator) == []
    assert [(r.token, r.pid) for r in lock_rows(project)] == [("planted", sleeper.pid)]

    sleeper.kill()
    sleeper.wait()  # reaped: a zombie would still answer kill(pid, 0)
    taken = project.run_json("people")  # the holder is gone on this host: taken over at once
    assert taken["exit_code"] == 0
    assert taken["syncs"][0]["counts"]["sent"] == 3
    assert sorted(people_by_id(project.emulator)) == ["u1", "u2", "u3"]
    assert lock_rows(project) == []  # released at the end of the run


def test_a_live_lease_from_another_host_holds_and_an_expired_one_is_taken_over(
    project: Project,
) -> None:
    people_table(project, ROWS)
    project.write_sync("people", PEOPLE_SYNC.format(behavior="upsert"))
    gone_pid = 2**22 + 12345  # not a process here; it does not matter on another host
    put_lock(project, "people", host="elsewhere.example", pid=gone_pid, lease_s=3600)
    held = project.run_json("people")
    assert (held["exit_code"], held["syncs"][0]["status"]) == (5, "locked")
    assert track_requests(project.emulator) == []

    put_lock(project, "people", host="elsewhere.example", pid=gone_pid, lease_s=-1)
    taken = project.run_json("people")
    assert taken["exit_code"] == 0
    assert taken["syncs"][0]["counts"]["sent"] == 3
    assert lock_rows(project) == []


def test_a_lock_of_one_sync_does_not_hold_another(
    project: Project, sleeper: subprocess.Popen[bytes]
) -> None:
    people_table(project, ROWS)
    project.write_sync("people", PEOPLE_SYNC.format(behavior="upsert"))
    project.write_sync("others", PEOPLE_SYNC.format(behavior="upsert"))
    put_lock(project, "people", host=HOST, pid=sleeper.pid, lease_s=3600)
    result = project.run_json("--all")
    codes = {s["name"]: s["exit_code"] for s in result["syncs"]}
    assert codes == {"others": 0, "people": 5}
    assert result["exit_code"] == 5


ROWS_SLOW = 1000


@pytest.mark.slow
def test_a_concurrent_run_exits_5_while_plan_list_and_history_work(
    duck_project: Project, tmp_path: Path
) -> None:
    project = duck_project
    people_table(project, [(f"u{i}", f"{i}@x.io", "free", i) for i in range(ROWS_SLOW)])
    project.write_project(max_batch_ops=10, concurrency=2)
    project.write_sync("people", PEOPLE_SYNC.format(behavior="upsert"))
    # 100 requests, 2 at a time, 300 ms each: ~15 s, until the latency is lifted below
    emu_post(project.emulator, "faults", {"latency_ms": 300})

    running = sync_process(project, "run", "people", "--json", out=tmp_path / "run.json")
    try:
        wait_for(lambda: track_requests(project.emulator), 30, "the first request")
        second = project.run_json("people")  # in this process, while the other one sends
        assert second["exit_code"] == 5
        assert second["syncs"][0]["status"] == "locked"
        assert str(running.pid) in second["syncs"][0]["message"]

        # each takes its turn on the state file between the run's transactions (SPEC §5)
        plan_code, plans = sync_json(project, "plan", "people")
        list_code, listed = sync_json(project, "list")
        history_code, history = sync_json(project, "history", "people")
        assert running.poll() is None, "the run ended before the readers: lengthen it"
        emu_post(project.emulator, "faults", {"latency_ms": 0})
        assert (plan_code, list_code, history_code) == (0, 0, 0)
        plan = plans["syncs"][0]
        assert plan["counts"]["add"] + plan["counts"]["unchanged"] == ROWS_SLOW
        assert "people" in {s["name"] for s in listed["syncs"]}
        statuses = [r["status"] for r in history["runs"]]
        assert statuses == ["running"]  # the skipped run holds no history row of its own
    finally:
        code = running.wait(timeout=60)
    document = json.loads((tmp_path / "run.json").read_text())
    assert code == 0 == document["exit_code"], (tmp_path / "run.err").read_text()
    assert document["syncs"][0]["counts"]["sent"] == ROWS_SLOW
    assert len(people_by_id(project.emulator)) == ROWS_SLOW
    assert project.run_json("people")["syncs"][0]["counts"]["planned"] == 0  # lock released


# --- SPEC §4.3: kill -9 and resume ----------------------------------------------------------------

EVENTS_SYNC = """\
object: event
person: {identifier: id, column: user_id}
key: event_id
event_name_column: name
timestamp: ts
query: SELECT * FROM events
"""
PEOPLE = 1000
EVENTS = 1000


def crash_tables(project: Project) -> None:
    project.sql(
        f"CREATE TABLE people AS SELECT 'u' || i AS id, 'u' || i || '@x.io' AS email, "
        f"CASE WHEN i % 3 = 0 THEN 'pro' ELSE 'free' END AS plan, i::INTEGER AS score "
        f"FROM range({PEOPLE}) t(i)"
    )
    project.sql(
        f"CREATE TABLE events AS SELECT 'e' || i AS event_id, 'u' || (i % {PEOPLE}) AS user_id, "
        f"CASE WHEN i % 2 = 0 THEN 'signed_up' ELSE 'paid' END AS name, "
        f"TIMESTAMPTZ '2024-01-01 00:00:00+00' + to_seconds(i) AS ts, i AS n "
        f"FROM range({EVENTS}) t(i)"
    )


def expected_event_ids() -> dict[str, str]:
    """key → the ULID the engine must send (SPEC §2.2), computed here from the source's rules."""
    return {f"e{i}": event_id("events", f"e{i}", 1704067200 + i) for i in range(EVENTS)}


def request_ops(emulator: EmulatorHandle) -> int:
    """Operations in every batch that arrived whole (a dropped connection has no status)."""
    return sum(r["ops"] or 0 for r in track_requests(emulator) if r["status"] is not None)


@pytest.mark.slow
def test_kill_9_mid_delivery_then_rerun_delivers_everything_exactly_once(
    duck_project: Project, tmp_path: Path
) -> None:
    project = duck_project
    crash_tables(project)
    project.write_project(max_batch_ops=20, concurrency=4)
    project.write_sync("people", PEOPLE_SYNC.format(behavior="upsert"))
    project.write_sync("events", EVENTS_SYNC)
    emu_post(project.emulator, "faults", {"latency_ms": 50})
    total_batches = (PEOPLE + EVENTS) // 20

    victim = sync_process(project, "run", "--all", "--json", out=tmp_path / "killed.json")
    try:
        # people go first (SPEC §4.11): kill once events are on their way, before the end
        started = PEOPLE // 20 + 15
        wait_for(lambda: len(track_requests(project.emulator)) >= started, 60, "events to go")
    finally:
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
    assert victim.returncode == -signal.SIGKILL
    sent_before = len(track_requests(project.emulator))
    assert sent_before < total_batches, "the run finished before the kill: slow it down"

    # nothing was recorded before Customer.io accepted it (SPEC §4.2)
    people = people_by_id(project.emulator)
    recorded_people = snapshot_payloads(project, "people")
    assert recorded_people, "no acknowledgement was recorded before the kill"
    for key, payload in recorded_people.items():
        assert key in people
        attributes = people[key]["attributes"]
        assert (attributes["plan"], attributes["score"]) == (
            payload["a"]["plan"],
            payload["a"]["score"],
        )
    arrived_ids = {e["id"] for e in emu_get(project.emulator, "events")}
    ids = expected_event_ids()
    assert {ids[key] for key in snapshot_payloads(project, "events")} <= arrived_ids
    assert len(arrived_ids) < EVENTS

    time.sleep(0.3)  # let the in-flight requests of the dead process finish arriving
    rerun = project.run_json("--all")
    assert rerun["exit_code"] == 0, rerun
    runs = {s["name"]: s for s in rerun["syncs"]}
    assert runs["people"]["counts"]["planned"] == 0  # people were all acknowledged before events
    assert len(recorded_people) == PEOPLE

    events = emu_get(project.emulator, "events")
    arrived = Counter(e["id"] for e in events)
    assert len(events) == EVENTS and max(arrived.values()) == 1  # once each, by id
    assert set(arrived) == set(ids.values())
    event_ops = request_ops(project.emulator) - PEOPLE  # the people's ops went once each
    assert event_ops >= EVENTS
    by_id = {e["id"]: e for e in events}
    sample = by_id[ids["e7"]]
    assert (sample["name"], sample["timestamp"], sample["person"]) == (
        "paid",
        1704067207,
        {"id": "u7"},
    )
    assert sample["data"] == {"n": 7}

    people = people_by_id(project.emulator)
    assert len(people) == PEOPLE
    for i in (0, 1, 2, 3, PEOPLE - 1):
        attributes = people[f"u{i}"]["attributes"]
        assert attributes["plan"] == ("pro" if i % 3 == 0 else "free")
        assert attributes["score"] == i
    assert len(snapshot_payloads(project, "people")) == PEOPLE
    assert len(snapshot_payloads(project, "events")) == EVENTS

    statuses = [r["status"] for r in project.json("history", "events")["runs"]]
    assert statuses == ["ok", "interrupted"]  # the killed run is marked by the next one
    again = project.run_json("--all")
    assert [s["counts"]["planned"] for s in again["syncs"]] == [0, 0]


# --- SPEC §4.4: rejected records -------------------------------------------------------------------

DEVICES_SYNC = """\
object: device
person: {identifier: id, column: user_id}
key: token
platform: platform
query: SELECT * FROM devices
"""


def test_a_record_refused_in_a_207_is_stored_listed_and_retried(project: Project) -> None:
    # Customer.io's schema takes platform ios or android only: the emulator refuses the op in a 207
    project.sql(
        "CREATE TABLE devices AS SELECT * FROM (VALUES ('u1', 't1', 'ios', 'a'), "
        "('u2', 't2', 'windows', 'b'), ('u3', 't3', 'android', 'c')) v(user_id, token, platform, model)"
    )
    project.write_sync("devices", DEVICES_SYNC)
    first = project.run_json("devices")
    assert first["exit_code"] == 6
    assert first["syncs"][0]["status"] == "rejected"
    assert first["syncs"][0]["counts"] == {
        "planned": 3,
        "sent": 2,
        "rejected": 1,
        "invalid": 0,
        "skipped": 0,
    }
    log = track_requests(project.emulator)
    assert [(r["status"], r["ops"]) for r in log] == [(207, 3)]
    devices = {d["token"]: d for d in emu_get(project.emulator, "devices")}
    assert sorted(devices) == ["t1", "t3"]
    assert devices["t1"]["person"]["id"] == "u1"

    errors = project.json("errors", "devices")["errors"]
    assert len(errors) == 1
    assert errors[0]["key"] == '["u2","t2"]'
    assert errors[0]["kind"] == "rejected"
    assert "platform" in errors[0]["reason"] or "windows" in errors[0]["reason"]

    retried = project.run_json("devices")  # unchanged source: only the rejected record travels
    assert retried["exit_code"] == 6
    assert retried["syncs"][0]["counts"]["planned"] == 1
    assert [(r["status"], r["ops"]) for r in track_requests(project.emulator)[1:]] == [(207, 1)]

    project.sql("UPDATE devices SET platform = 'android' WHERE token = 't2'")
    fixed = project.run_json("devices")
    assert fixed["exit_code"] == 0
    assert fixed["syncs"][0]["counts"]["sent"] == 1
    assert sorted(d["token"] for d in emu_get(project.emulator, "devices")) == ["t1", "t2", "t3"]
    assert project.json("errors", "devices")["errors"] == []
    assert project.run_json("devices")["syncs"][0]["counts"]["planned"] == 0


LONG_ID = "x" * 151  # one byte over Customer.io's 150-byte id limit

OVERSIZED = {
    "relationship-object-id": (
        """\
        object: relationship
        object_type_id: 1
        object_key: account
        person: {identifier: id, column: user_id}
        query: SELECT * FROM source
        """,
        "SELECT * FROM (VALUES ('u1', 'acme', 'admin'), ('u2', '{long}', 'viewer')) "
        "v(user_id, account, role)",
        '["u2","{long}"]',
    ),
    "event-person-id": (
        """\
        object: event
        person: {identifier: id, column: user_id}
        key: event_id
        event_name: visited
        query: SELECT * FROM source
        """,
        "SELECT * FROM (VALUES ('e1', 'u1', 1), ('e2', '{long}', 2)) v(event_id, user_id, n)",
        "e2",
    ),
    "device-person-id": (
        """\
        object: device
        person: {identifier: id, column: user_id}
        key: token
        platform: platform
        query: SELECT * FROM source
        """,
        "SELECT * FROM (VALUES ('u1', 't1', 'ios'), ('{long}', 't2', 'ios')) "
        "v(user_id, token, platform)",
        '["{long}","t2"]',
    ),
    "object-id": (
        """\
        object: object
        object_type_id: 1
        key: account
        query: SELECT * FROM source
        """,
        "SELECT * FROM (VALUES ('acme', 'Acme'), ('{long}', 'Long')) v(account, title)",
        "{long}",
    ),
}


@pytest.mark.parametrize("case", list(OVERSIZED))
def test_an_id_over_150_bytes_is_rejected_locally_and_never_sent(
    duck_project: Project, case: str
) -> None:
    project = duck_project
    sync_text, select, key = OVERSIZED[case]
    project.sql("CREATE TABLE source AS " + select.format(long=LONG_ID))
    project.write_sync("source", sync_text)
    result = project.run_json("source")
    assert result["exit_code"] == 6
    assert result["syncs"][0]["counts"]["sent"] == 1
    assert result["syncs"][0]["counts"]["rejected"] == 1
    log = track_requests(project.emulator)
    assert all(not r["errors"] for r in log), log  # nothing was refused by Customer.io
    assert sum(r["ops"] or 0 for r in log) == 1
    errors = project.json("errors", "source")["errors"]
    assert [(e["key"], e["kind"]) for e in errors] == [(key.format(long=LONG_ID), "rejected")]
    assert "150" in errors[0]["reason"]
