"""Streaming first runs (`engine.streaming`): delivery starts while the source is still being
staged; duplicate keys are never sent; a run with a snapshot plans the whole result first."""

from __future__ import annotations

import threading
from typing import Any

import pyarrow as pa
import pytest
from support import PEOPLE_SYNC, Project, emu_get, people_table, track_requests

from engine import acks, planread, streaming
from engine.errors import SourceError

ROWS = [(f"u{i}", f"u{i}@x.io", "free", i) for i in range(10)]
PEOPLE = PEOPLE_SYNC.format(behavior="upsert") + "\n"


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streaming, "CHUNK_ROWS", 2)
    monkeypatch.setattr(streaming, "FIRST_CHUNK_ROWS", 2)


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """One source batch a row, so that staging goes in several chunks."""
    from engine import extract

    original = extract.read_source

    def read_source(*args: Any, **kwargs: Any) -> Any:
        return original(*args, **{**kwargs, "batch_rows": 1})

    monkeypatch.setattr("engine.runner.read_source", read_source)


def test_delivery_starts_while_the_first_run_is_staged(
    duck_project: Project, monkeypatch: pytest.MonkeyPatch, small_chunks: None, small_batches: None
) -> None:
    """Staging waits, before its third chunk, for an acknowledgement: only a delivery that runs
    alongside staging can give it one (else the wait times out and the test fails)."""
    project = duck_project
    project.write_project(max_batch_ops=2)  # a request as soon as a chunk is planned
    people_table(project, ROWS)
    project.write_sync("people", PEOPLE)
    acked = threading.Event()
    planned: list[int] = []
    groups = streaming.groups

    def waiting_groups(*args: Any) -> Any:
        for n, group in enumerate(groups(*args)):
            if n == 2:  # the client reads a chunk ahead of the one it sends
                assert acked.wait(20), "nothing was delivered while the run was being staged"
            planned.append(sum(batch.num_rows for batch in group))
            yield group

    record = acks.Acks.__call__

    async def noting(self: acks.Acks, outcome: Any) -> None:
        await record(self, outcome)
        acked.set()

    monkeypatch.setattr(streaming, "groups", waiting_groups)
    monkeypatch.setattr(acks.Acks, "__call__", noting)
    result = project.run_json("people")["syncs"][0]
    assert result["exit_code"] == 0 and result["counts"]["sent"] == 10
    assert planned == [2, 2, 2, 2, 2]
    assert len(track_requests(project.emulator)) == 5
    assert {p["id"] for p in emu_get(project.emulator, "people")} == {r[0] for r in ROWS}
    again = project.run_json("people")["syncs"][0]
    assert again["counts"]["planned"] == 0


def test_a_streamed_first_run_never_sends_a_duplicate_key(
    duck_project: Project, small_chunks: None, small_batches: None
) -> None:
    project = duck_project
    people_table(project, [*ROWS, ("u3", "again@x.io", "pro", 99), ("", "blank@x.io", "pro", 0)])
    project.write_sync("people", PEOPLE)
    result = project.run_json("people")["syncs"][0]
    assert result["exit_code"] == 6 and result["status"] == "invalid"
    assert result["counts"]["sent"] == 9 and result["counts"]["invalid"] == 2  # a key, a row
    people = {p["id"] for p in emu_get(project.emulator, "people")}
    assert "u3" not in people and len(people) == 9
    code, output = project.cli("errors", "people")
    assert (
        code == 0 and "duplicate key: 2 rows share it" in output and "NULL or empty key" in output
    )


def test_a_run_with_a_snapshot_is_planned_whole_first(
    duck_project: Project, monkeypatch: pytest.MonkeyPatch, small_chunks: None
) -> None:
    project = duck_project
    people_table(project, ROWS)
    project.write_sync("people", PEOPLE_SYNC.format(behavior="mirror"))
    assert project.run_json("people")["syncs"][0]["counts"]["sent"] == 10
    streamed: list[bool] = []
    stream = streaming.stream

    def noting(*args: Any, **kwargs: Any) -> bool:
        streamed.append(stream(*args, **kwargs))
        return streamed[-1]

    monkeypatch.setattr(streaming, "stream", noting)
    project.sql("DELETE FROM people WHERE id IN ('u1', 'u2', 'u3', 'u4', 'u5', 'u6')")
    stopped = project.run_json("people")["syncs"][0]  # 6 of 10 removed: the guard stops it
    assert stopped["status"] == "guard" and streamed == [False]


def test_a_source_failing_mid_stream_fails_the_run_and_keeps_what_was_delivered(
    duck_project: Project, monkeypatch: pytest.MonkeyPatch, small_chunks: None, small_batches: None
) -> None:
    """The source fails after its second chunk: the run ends with the source's error, the
    snapshot holds what was acknowledged, and the next run (not a first run any more) sends
    the rest."""
    project = duck_project
    project.write_project(max_batch_ops=2)
    people_table(project, ROWS)
    project.write_sync("people", PEOPLE)
    groups = streaming.groups

    def failing_groups(*args: Any) -> Any:
        for n, group in enumerate(groups(*args)):
            if n == 2:
                raise SourceError("the warehouse went away", "run it again")
            yield group

    monkeypatch.setattr(streaming, "groups", failing_groups)
    failed = project.run_json("people")["syncs"][0]
    assert failed["status"] == "source" and "the warehouse went away" in failed["message"]
    assert failed["counts"]["sent"] <= 4
    monkeypatch.setattr(streaming, "groups", groups)
    again = project.run_json("people")["syncs"][0]
    assert again["exit_code"] == 0
    assert again["counts"]["sent"] == len(ROWS) - failed["counts"]["sent"]
    assert {p["id"] for p in emu_get(project.emulator, "people")} == {r[0] for r in ROWS}


def test_the_first_group_may_be_smaller_than_the_rest() -> None:
    batches = [pa.record_batch({"n": list(range(size))}) for size in (3, 3, 3, 3, 1)]
    sizes = [sum(b.num_rows for b in group) for group in streaming.groups(iter(batches), 6, 2)]
    assert sizes == [3, 6, 4]


def test_a_streamed_first_run_reads_files_relative_to_the_project(duck_project: Project) -> None:
    """The duplicate-key pass runs the query on the source as the read does: relative file
    paths from the project's root."""
    project = duck_project
    (project.root / "plans.csv").write_text("plan,label\nfree,Free\npro,Pro\n")
    people_table(project, ROWS)
    query = "SELECT p.id, l.label FROM people p JOIN read_csv('plans.csv') l ON l.plan = p.plan"
    project.write_sync(
        "people", f"object: person\nbehavior: upsert\nidentifier: id\nkey: id\nquery: {query}\n"
    )
    result = project.run_json("people")["syncs"][0]
    assert result["exit_code"] == 0, project.stderr
    assert result["counts"]["sent"] == len(ROWS)
    assert {p["attributes"]["label"] for p in emu_get(project.emulator, "people")} == {"Free"}


def test_a_delivery_that_ends_short_of_its_plan_fails_the_run(
    duck_project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A defect that ends delivery early (here the plan reader finds nothing after its first
    chunk) fails the run and says so, never reports it ok; what was not sent stays
    unacknowledged and the next run sends it."""
    project = duck_project
    project.write_project(max_batch_ops=2)
    people_table(project, ROWS)
    project.write_sync("people", PEOPLE)
    monkeypatch.setattr(planread, "PLAN_CHUNK", 4)
    read = planread.read

    def short(store: Any, run: str, after: int, built: Any, limit: int) -> Any:
        return read(store, run, after if after == 0 else 10**9, built, limit)

    monkeypatch.setattr(planread, "read", short)
    failed = project.run_json("people")["syncs"][0]
    assert failed["exit_code"] == 1 and failed["counts"]["sent"] == 4
    assert "6 of 10 planned operations neither acknowledged nor rejected" in failed["message"]
    monkeypatch.setattr(planread, "read", read)
    again = project.run_json("people")["syncs"][0]
    assert again["exit_code"] == 0 and again["counts"]["sent"] == 6
    assert {p["id"] for p in emu_get(project.emulator, "people")} == {r[0] for r in ROWS}
