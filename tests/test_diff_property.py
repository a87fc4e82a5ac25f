"""The diff, as a property (STYLE "Tests"): applying the planned changes to what Customer.io
holds after the old table gives the new table, for any pair of tables; and once every planned
operation is acknowledged, the snapshot is the new table.

Each example stages the old table into a real state store, plans it as a mirror, "delivers" every
operation to a model of Customer.io (an identify merges its attributes, null removing one; a
delete removes the person), acknowledges them all, then does the same for the new table. Each
table is staged by either of the engine's paths: encoded in Python (`engine.extract.encode`), or
as Arrow rows by the state database's SQL, which compares them with the snapshot as it stages
them and stages a row the snapshot holds unchanged by its key alone (`engine.sqlstage`).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Connection
from support import PG_URL, drop_schema, pg_available, private_schema

from connectors.customerio.operations import Rejection, build
from engine import diff, records, sqlstage
from engine.config import PersonSync
from engine.destination import PlannedRecord
from engine.diff import Scope
from engine.extract import Extracted, Layout, SourceBatch
from engine.pgstage import stage_copied
from engine.state import Staged, StateStore, snapshot, staging

ATTRIBUTES = ("plan", "score", "vip")
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from(["", "a", "b", "ü"])
)
ROW = st.fixed_dictionaries({name: VALUES for name in ATTRIBUTES})
TABLE = st.dictionaries(st.text("abcdef", min_size=1, max_size=2), ROW, max_size=30)
Table = dict[str, dict[str, Any]]
People = dict[str, dict[str, Any]]
DESTINATION = "emulator:test"


@pytest.fixture(
    scope="module", params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StateStore]:
    """One state store for every example; each example uses its own sync name and run ids."""
    if request.param == "duckdb":
        url = f"duckdb:///{tmp_path_factory.mktemp('diff') / 'state.duckdb'}"
    elif pg_available():
        url = private_schema(PG_URL, SCHEMA)
    else:
        pytest.skip("PostgreSQL is not reachable at SYNC_TEST_PG_URL")
    made = StateStore(url)
    made.migrate()
    yield made
    made.dispose()
    if request.param == "postgres":
        drop_schema(PG_URL, SCHEMA)


SCHEMA = f"cio_sync_diff_{os.getpid()}"


def mirror_sync(name: str) -> PersonSync:
    return PersonSync(
        name=name,
        object="person",
        behavior="mirror",
        source="s",
        workspace="w",
        sql="select 1",
        key="id",
    )


LAYOUT = Layout(
    key_columns=("id",),
    email_keys=frozenset(),
    roles={},
    fields={name: name for name in ATTRIBUTES},
)


def encoded(table: Table) -> Staged:
    """The table as Python encodes it (`engine.extract.encode`)."""
    payloads = [records.canonical({"a": attrs, "r": {}}) for attrs in table.values()]
    return Staged(
        keys=list(table),
        fingerprints=[records.fingerprint(p) for p in payloads],
        payloads=[p.decode() for p in payloads],
        first_ord=0,
    )


def arrow_batch(table: Table) -> SourceBatch:
    """The table as a DuckDB source hands it over. An attribute's values are of mixed kinds, so
    each attribute is a JSON column (NULL for None)."""
    columns = {"id": pa.array(list(table), pa.string())}
    for name in ATTRIBUTES:
        values = [attrs[name] for attrs in table.values()]
        texts = [None if v is None else orjson.dumps(v).decode() for v in values]
        columns[name] = pa.array(texts, pa.string())
    batch = pa.RecordBatch.from_pydict(columns)
    return SourceBatch(list(columns), len(table), arrow=batch, json_columns=frozenset(ATTRIBUTES))


def stage_in_sql(store: StateStore, conn: Connection, scope: Scope, table: Table) -> None:
    """Stage the table as a run stages Arrow rows: by the store's SQL, compared with the snapshot."""
    stage = sqlstage.stage if store.dialect == "duckdb" else stage_copied
    out = Extracted()
    stage(conn, scope, LAYOUT, arrow_batch(table), iter(()), out, cursor=None, compare=True)
    assert (out.rows, out.staged, out.invalid) == (len(table), len(table), [])


def plan(
    store: StateStore, scope: Scope, table: Table, in_sql: bool = False
) -> tuple[diff.PlanCounts, list[Any]]:
    """Stage the table and plan it as a mirror (one transaction, to keep examples quick);
    `in_sql` stages it by the store's SQL, else as encoded in Python."""
    with store.tx() as conn:
        if table and in_sql:
            stage_in_sql(store, conn, scope, table)
        elif table:
            store.stage(conn, scope.run, encoded(table))
        diff.refresh_statistics(conn)
        assert diff.mark_duplicates(conn, scope.run) == []
        counts = diff.build_plan(conn, scope, full=False, append_only=False, mirror=True)
        rows = diff.read_plan(conn, scope.run, 0, 10_000)
        if in_sql:  # every unchanged row, and only those, was staged by its key alone
            by_key = (staging.c.run == scope.run) & staging.c.fingerprint.is_(None)
            alone = conn.execute(sa.select(sa.func.count()).where(by_key)).scalar()
            assert alone == counts.unchanged
    planned = [PlannedRecord(r.seq, r.op, r.key, r.payload, r.before) for r in rows]
    return counts, planned


def _loads(text: str | None) -> Any:
    return orjson.loads(text) if text else None


def deliver(sync: PersonSync, planned: list[PlannedRecord], people: People) -> None:
    """What Customer.io does with each operation the engine builds."""
    for record in planned:
        op = build(sync, record)
        assert not isinstance(op, Rejection), op
        if op is None:  # nothing changed that needs a request
            continue
        key = op["identifiers"]["id"]
        assert key == record.key
        if op["action"] == "delete":
            people.pop(key, None)
            continue
        assert op["action"] == "identify"
        person = people.setdefault(key, {})
        for name, value in op["attributes"].items():
            if value is None:
                person.pop(name, None)
            else:
                person[name] = value


def acknowledge(
    store: StateStore, scope: Scope, planned: list[PlannedRecord]
) -> dict[str, tuple[str, Any]]:
    """Acknowledge every planned operation; return the snapshot that results."""
    with store.tx() as conn:
        diff.apply_acks(conn, scope, [r.seq for r in planned])
        diff.clear_work(conn, scope.run)
        return snapshot_of(conn, scope.sync)


def non_null(table: Table) -> People:
    return {key: {k: v for k, v in attrs.items() if v is not None} for key, attrs in table.items()}


def snapshot_of(conn: Connection, sync: str) -> dict[str, tuple[str, Any]]:
    query = sa.select(snapshot.c.key, snapshot.c.fingerprint, snapshot.c.payload).where(
        snapshot.c.sync == sync, snapshot.c.destination == DESTINATION
    )
    return {r.key: (r.fingerprint, orjson.loads(r.payload)) for r in conn.execute(query)}


def expected_snapshot(table: Table) -> dict[str, tuple[str, Any]]:
    payloads = {key: {"a": attrs, "r": {}} for key, attrs in table.items()}
    return {k: (records.fingerprint(records.canonical(p)), p) for k, p in payloads.items()}


def expected_counts(old: Table, new: Table) -> dict[str, int]:
    common = old.keys() & new.keys()
    changed = {k for k in common if records.canonical(old[k]) != records.canonical(new[k])}
    return {
        "add": len(new.keys() - old.keys()),
        "update": len(changed),
        "remove": len(old.keys() - new.keys()),
        "unchanged": len(common - changed),
    }


def counts_of(counts: diff.PlanCounts) -> dict[str, int]:
    return {
        "add": counts.add,
        "update": counts.update,
        "remove": counts.remove,
        "unchanged": counts.unchanged,
    }


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(old=TABLE, new=TABLE, old_in_sql=st.booleans(), new_in_sql=st.booleans())
def test_applying_the_plan_to_the_old_table_gives_the_new_table(
    store: StateStore, old: Table, new: Table, old_in_sql: bool, new_in_sql: bool
) -> None:
    """Whichever path stages each table (SQL with `*_in_sql`, else Python's encoding), the plans
    take the model from the old table to the new one."""
    name = f"p-{uuid.uuid4().hex[:12]}"
    sync = mirror_sync(name)
    people: People = {}

    first = Scope(uuid.uuid4().hex, name, DESTINATION)
    counts, planned = plan(store, first, old, old_in_sql)
    assert counts_of(counts) == expected_counts({}, old)
    deliver(sync, planned, people)
    assert people == non_null(old)
    assert acknowledge(store, first, planned) == expected_snapshot(old)

    second = Scope(uuid.uuid4().hex, name, DESTINATION)
    counts, planned = plan(store, second, new, new_in_sql)
    assert counts_of(counts) == expected_counts(old, new)
    assert counts.snapshot_size == len(old)
    assert [r.seq for r in planned] == list(range(1, counts.planned + 1))
    deliver(sync, planned, people)
    assert people == non_null(new)
    assert acknowledge(store, second, planned) == expected_snapshot(new)


def test_only_acknowledged_operations_reach_the_snapshot(tmp_path: Path) -> None:
    """An example the property does not cover: a partial acknowledgement moves exactly those."""
    store = StateStore(f"duckdb:///{tmp_path / 'state.duckdb'}")
    store.migrate()
    try:
        old = {"a": {"plan": "x"}, "b": {"plan": "y"}, "c": {"plan": "z"}}
        first = Scope("run-1", "p", DESTINATION)
        _, planned = plan(store, first, old)
        acknowledge(store, first, planned)
        new = {"a": {"plan": "x2"}, "b": {"plan": "y"}, "d": {"plan": "w"}}
        second = Scope("run-2", "p", DESTINATION)
        _, planned = plan(store, second, new)
        by_key = {r.key: r for r in planned}
        assert {k: r.op for k, r in by_key.items()} == {"a": "update", "c": "remove", "d": "add"}
        with store.tx() as conn:
            diff.apply_acks(conn, second, [by_key["a"].seq, by_key["c"].seq])
            held = snapshot_of(conn, "p")
        assert sorted(held) == ["a", "b"]
        assert held["a"][1] == {"a": {"plan": "x2"}, "r": {}}
    finally:
        store.dispose()
