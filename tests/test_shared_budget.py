"""Teams at scale (SPEC §7.3): one request budget per workspace across processes, adaptive
pacing after 429s, workers, and several `run --all` on one PostgreSQL state store — with real
`sync` processes and the emulator over HTTP, checked from the emulator's arrival stamps."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import Project, emu_get, emu_post, track_requests
from support.processes import assert_all_ok, at_once, inline_syncs, people_ids
from support.scripted_server import max_in_window

from engine.budget import (
    HORIZON_S,
    MARGIN_S,
    WINDOW,
    FileLedger,
    MemoryLedger,
    SharedBudget,
    Window,
)

RATE = 20


def arrivals(project: Project) -> list[float]:
    return sorted(r["at"] for r in track_requests(project.emulator) if r["path"] == "/api/v2/batch")


# --- the window itself --------------------------------------------------------------------


def test_a_window_grants_evenly_spaced_slots_that_keep_its_rate() -> None:
    window, now, slots = Window(rate=RATE), 0.0, []
    while now < 5:
        grant = window.grant(now, RATE, 3)
        assert grant.count == 0 or now <= grant.first <= now + HORIZON_S
        slots += [grant.first + n * grant.spacing for n in range(grant.count)]
        now += grant.wait or 0.01
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert min(gaps) == pytest.approx((1 + MARGIN_S) / RATE, abs=1e-5)
    assert max_in_window(slots, 1.0 + MARGIN_S) <= RATE  # arrivals late by the margin too
    assert len(slots) >= RATE / (1 + MARGIN_S) * 5  # and it grants the rate, not less


def test_a_429_lowers_the_rate_once_a_second_and_quiet_raises_it_again() -> None:
    window = Window(rate=100.0)
    window.throttle(10.0)
    window.throttle(10.5)  # the same storm: no second decrease
    assert window.rate == pytest.approx(70.0)
    window.throttle(11.2)
    assert window.rate == pytest.approx(49.0)
    window.grant(11.2 + 14, 100, 1)
    assert window.rate == pytest.approx(49.0)
    window.grant(11.2 + 15, 100, 1)
    assert window.rate == pytest.approx(59.0)


@pytest.mark.parametrize("kind", ["memory", "file"])
def test_budgets_of_one_ledger_share_the_rate(kind: str, tmp_path: Path) -> None:
    """Two budgets on one ledger (two processes' view) together keep the rate."""
    import asyncio

    ledger = MemoryLedger() if kind == "memory" else FileLedger(tmp_path / "state.duckdb.budget")
    starts: list[float] = []

    async def spend(budget: SharedBudget, count: int) -> None:
        for _ in range(count):
            await budget.take()
            starts.append(time.monotonic())

    async def both() -> None:
        first, second = (SharedBudget(ledger, "w:Track", RATE) for _ in range(2))
        await asyncio.gather(spend(first, 30), spend(second, 30))

    asyncio.run(both())
    assert max_in_window(sorted(starts), 1.0) <= RATE


# --- processes -----------------------------------------------------------------------------


@pytest.mark.postgres
def test_three_processes_on_one_workspace_keep_its_rate(pg_project: Project) -> None:
    pg_project.write_project(rate_limit=RATE, max_batch_ops=1)
    names = inline_syncs(pg_project, 3, 25)
    finished = at_once(pg_project, [["run", name] for name in names])
    assert_all_ok(finished)
    stamps = arrivals(pg_project)
    assert len(stamps) == 75 and len(people_ids(pg_project.emulator)) == 75
    assert max_in_window(stamps) <= RATE
    assert max_in_window(stamps) >= RATE * 0.6  # the budget is used, not wasted


@pytest.mark.postgres
def test_a_killed_process_does_not_stall_the_others(pg_project: Project, tmp_path: Path) -> None:
    pg_project.write_project(rate_limit=RATE, max_batch_ops=1)
    names = inline_syncs(pg_project, 3, 30)
    command = [sys.executable, "-m", "engine.cli", "--project", str(pg_project.root), "run"]
    processes = [subprocess.Popen([*command, n], stderr=subprocess.DEVNULL) for n in names]
    deadline = time.monotonic() + 30
    while len(arrivals(pg_project)) < 15 and time.monotonic() < deadline:
        time.sleep(0.05)
    processes[0].send_signal(signal.SIGKILL)
    killed_at = time.time()
    codes = [p.wait(60) for p in processes]
    assert codes[0] == -signal.SIGKILL and codes[1:] == [0, 0]
    later = [t for t in arrivals(pg_project) if t > killed_at]
    gaps = [b - a for a, b in zip([killed_at, *later], later, strict=False)]
    assert max(gaps) < WINDOW + 0.3, "a killed holder's slots go by unused"
    survivors = {i for i in people_ids(pg_project.emulator) if not i.startswith("s0-")}
    assert len(survivors) == 60


def test_429s_lower_the_rate_so_few_requests_are_refused(duck_project: Project) -> None:
    emu_post(duck_project.emulator, "faults", {"rate_limit": 20, "retry_after": None})
    duck_project.write_project(rate_limit=40, max_batch_ops=1, max_retries=20)
    [name] = inline_syncs(duck_project, 1, 120)
    result = duck_project.run_json(name)["syncs"][0]
    log = [r for r in track_requests(duck_project.emulator) if r["path"] == "/api/v2/batch"]
    refused = sum(1 for r in log if r["status"] == 429)
    assert result["exit_code"] == 0 and result["counts"]["sent"] == 120
    assert len(people_ids(duck_project.emulator)) == 120
    assert refused / len(log) < 0.2, f"{refused} of {len(log)} requests got 429"
    assert result["throttled"] == refused and result["lowest_rate"] < 40
    [run] = duck_project.json("history", name)["runs"]
    assert run["throttled"] == refused and run["lowest_rate"] == result["lowest_rate"]


# --- workers and several run --all -------------------------------------------------------------


def test_workers_bound_the_syncs_in_flight(duck_project: Project) -> None:
    duck_project.write_project(rate_limit=10, max_batch_ops=1)
    inline_syncs(duck_project, 4, 4)
    code, _ = duck_project.cli("--log-format", "json", "run", "--all", "--workers", "2")
    assert code == 0
    events = [json.loads(line) for line in duck_project.stderr.splitlines()]
    spans = [
        (e["ts"], 1 if e["event"] == "run.start" else -1)
        for e in events
        if e["event"] in ("run.start", "run.end")
    ]
    in_flight, most = 0, 0
    for _, step in sorted(spans, key=lambda span: (span[0], span[1])):
        in_flight += step
        most = max(most, in_flight)
    assert most == 2


@pytest.mark.postgres
def test_two_run_all_on_one_postgresql_store_deliver_each_record_once(
    pg_project: Project,
) -> None:
    names = inline_syncs(pg_project, 4, 5)
    finished = at_once(pg_project, [["run", "--all", "--json"], ["run", "--all", "--json"]])
    runs: dict[str, list[int]] = {name: [] for name in names}
    for done in finished:
        assert done.code in (0, 5), str(done)
        for sync in json.loads(done.stdout)["syncs"]:
            runs[sync["name"]].append(sync["exit_code"])
    assert all(sorted(codes) in ([0, 5], [0, 0]) for codes in runs.values()), runs
    ops = sum(r["ops"] for r in track_requests(pg_project.emulator))
    people = emu_get(pg_project.emulator, "people")
    assert len(people) == 20
    sent = sum(
        s["counts"]["sent"] for done in finished for s in json.loads(done.stdout)["syncs"]
    )
    assert ops == sent == 20, "a record sent twice would show as more operations"
