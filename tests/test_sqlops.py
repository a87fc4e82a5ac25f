"""Operations built in SQL by the DuckDB state database (`connectors.customerio.sqlops`) are the
operations `operations.build` gives, as JSON values; the rows SQL leaves (NULL) come back whole,
for Python to accept, reject or acknowledge. Plan rows are written into a real state store and
read back by the engine's own `diff.read_built`, as a run reads them."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pyarrow as pa
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import Project, emu_get, emu_post, track_requests

from connectors.customerio import operations, sqlops
from connectors.customerio.operations import build
from engine import diff
from engine.config import (
    DeviceSync,
    EventSync,
    ObjectSync,
    PersonSync,
    RelationshipSync,
    Sync,
)
from engine.destination import PlannedRecord
from engine.state import StateStore, plan

COMMON = {"source": "s", "workspace": "w", "sql": "select 1"}

# every kind of value a payload holds, under names a JSON path would trip on
VALUES: dict[str, Any] = {
    "str": 'line\n"quoted" \\ back/slash é 😀 \u0001 \u2028 \t',
    "int": 42,
    "neg": -7,
    "big": 2**63 - 1,
    "bigger": 2**64 - 1,
    "zero": 0,
    "e20": 1e20,
    "tenth": 0.1,
    "negzero": -0.0,
    "tiny": 1.5e-7,
    "whole_float": 3.0,
    "yes": True,
    "no": False,
    "nested": {"k": [1, 2.5, None, {"deep": "x"}], "e": {}},
    "list": [1, "two", None, [True]],
    "empty_list": [],
    "empty_obj": {},
    "nothing": None,
    "a.b": "dot",
    'q"uote': "q",
    "ünï": "u",
    "$.x": "path",
    "[0]": "index",
    "'s'": "single",
    "": "empty name",
    "with space": 1,
    "null": "a name that reads null",
    "text": "null",
}
PLAIN = {"plan": "pro", "score": 1, "ratio": 0.5, "vip": False}  # sent as stored


def payload(attributes: dict[str, Any], roles: dict[str, Any] | None = None) -> str:
    return orjson.dumps({"a": attributes, "r": roles or {}}, option=orjson.OPT_SORT_KEYS).decode()


def respelled(text: str) -> str:
    """The same JSON as DuckDB's writer spells it (1e+20 becomes 100000000000000000000.0)."""
    return str(duckdb.sql(f"SELECT json('{text.replace(chr(39), chr(39) * 2)}')").fetchall()[0][0])


def typed(value: Any) -> Any:
    """A JSON value with each scalar's type beside it: 1, 1.0 and True compare unequal."""
    if isinstance(value, dict):
        return {name: typed(item) for name, item in value.items()}
    if isinstance(value, list):
        return [typed(item) for item in value]
    return (type(value).__name__, value)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StateStore]:
    made = StateStore(f"duckdb:///{tmp_path_factory.mktemp('sqlops') / 'state.duckdb'}")
    made.migrate()
    yield made
    made.dispose()


def read_built(
    store: StateStore,
    sync: Sync,
    records: list[PlannedRecord],
    chunk: int | None = None,
    operations: Callable[[sa.Subquery], sa.Select[Any]] | None = None,
) -> list[tuple[dict[int, bytes], list[PlannedRecord]]]:
    """Plan `records` as a run's rows; read them back as delivery does with the sync's SQL (or
    `operations`), `chunk` rows at a time (default: all at once): each chunk's built operations
    and the records it left."""
    run = uuid.uuid4().hex
    rows = [{**record._asdict(), "run": run, "fingerprint": "f"} for record in records]
    for row in rows:
        row["payload"], row["before"] = row.pop("payload_json"), row.pop("before_json")
    first, last = records[0].seq, records[-1].seq
    size = chunk or last - first + 1
    with store.tx() as conn:
        conn.execute(sa.insert(plan), rows)
        planned = diff.plan_rows(run)
        if operations is None:
            built = sqlops.operation_sql(sync, planned, conn.dialect.name)
        else:
            built = operations(planned)
        assert built is not None
        chunks = [
            diff.read_built(conn, planned, built, after, size)
            for after in range(first - 1, last, size)
        ]
        diff.clear_work(conn, run)
    return [(built_ops(done), [PlannedRecord(*row) for row in left]) for done, left in chunks]


def built_ops(done: pa.Table) -> dict[int, bytes]:
    """The operations a chunk carries built (columns seq, operation: bytes), by seq."""
    assert done.column("operation").type == pa.binary()
    seqs, texts = done.column("seq").to_pylist(), done.column("operation").to_pylist()
    return dict(zip(seqs, texts, strict=True))


def check(store: StateStore, sync: Sync, records: list[PlannedRecord]) -> set[int]:
    """Assert every operation SQL built is Python's, and every row it left comes back as it
    was planned; return the seqs SQL built."""
    [(done, left)] = read_built(store, sync, records)
    planned = {record.seq: record for record in records}
    for seq, text in done.items():
        expected = build(sync, planned[seq])
        assert isinstance(expected, dict), (planned[seq], text)
        assert typed(orjson.loads(text)) == typed(expected), planned[seq]
    assert left == [record for record in records if record.seq not in done]
    return set(done)


@functools.cache
def person(behavior: str = "upsert", nulls: str = "clear", identifier: str = "id") -> PersonSync:
    extra = {"on_remove": "suppress"} if behavior == "mirror" else {}
    return PersonSync(
        name="people",
        object="person",
        behavior=behavior,
        nulls=nulls,
        identifier=identifier,
        key="k",
        **extra,
        **COMMON,
    )


BEFORE = {
    "same": 1,
    "changed": 1,
    "to_null": "x",
    "e20": 1e20,
    "negzero": 0.0,
    "int_to_float": 1,
    "bool_to_int": True,
    "list_same": [1, {"a": None}],
    "gone": 5,
    "str": "a",
}
AFTER = {
    "same": 1,
    "changed": 2,
    "to_null": None,
    "e20": 1e20,
    "negzero": -0.0,
    "int_to_float": 1.0,
    "bool_to_int": 1,
    "list_same": [1, {"a": None}],
    "new": "n",
    "new_null": None,
    "str": "a",
}


def person_records() -> list[PlannedRecord]:
    """Adds, changes and removals of every shape; the comments say which SQL leaves."""
    long_name = "n" * 151
    many = {f"f{i:03}": i for i in range(301)}
    return [
        PlannedRecord(1, "add", "u1", payload(VALUES), None),
        PlannedRecord(2, "add", "u2", payload(PLAIN), None),
        PlannedRecord(3, "add", "u3", payload({"bio": "x" * 900, **PLAIN}), None),
        PlannedRecord(4, "add", "u4", payload({"bio": "x" * 1001}), None),  # value over the limit
        PlannedRecord(5, "add", "u5", payload({"bio": "é" * 501}), None),  # 1002 bytes: rejected
        PlannedRecord(6, "add", "k" * 151, payload(PLAIN), None),  # an id over 150 bytes
        PlannedRecord(7, "add", 'ü"\\q ✓', payload(PLAIN), None),
        PlannedRecord(8, "update", "u8", payload(AFTER), payload(BEFORE)),
        PlannedRecord(9, "update", "u9", payload({"l": [1]}), payload({"l": [1.0]})),  # Python's ==
        PlannedRecord(
            10, "update", "u10", payload({"l": [2], "x": 1}), payload({"l": [1], "x": 0})
        ),
        PlannedRecord(
            11, "update", "u11", payload({"a": None, "b": 1}), payload({"b": 1})
        ),  # no-op
        PlannedRecord(12, "update", "u12", payload(AFTER), respelled(payload(BEFORE))),
        PlannedRecord(13, "update", "u13", respelled(payload(AFTER)), payload(BEFORE)),
        PlannedRecord(14, "remove", "u14", None, payload(BEFORE)),
        PlannedRecord(15, "rekey", "u15", payload(PLAIN), payload(PLAIN), "u0"),  # two steps
        PlannedRecord(16, "add", "u16", payload(many), None),  # over 300 attributes
        PlannedRecord(17, "add", "u17", payload({long_name: 1}), None),  # name over 150 bytes
        PlannedRecord(18, "add", "u18", payload({}), None),
        PlannedRecord(19, "add", "u19", respelled(payload(VALUES)), None),
        PlannedRecord(20, "update", "u20", payload({"x": None}), payload({"x": 1})),  # to null
        PlannedRecord(21, "add", "u21", payload({"note": "ü" * 400, **PLAIN}), None),
        PlannedRecord(22, "remove", "k" * 151, None, payload(PLAIN)),  # an id over 150 bytes
    ]


ALWAYS_LEFT = {4, 5, 6, 9, 10, 11, 15, 16, 17, 22}


def test_person_operations_are_pythons(store: StateStore) -> None:
    records = person_records()
    assert check(store, person(), records) == set(range(1, 23)) - ALWAYS_LEFT


def test_under_nulls_skip_a_change_to_null_is_no_change(store: StateStore) -> None:
    records = person_records()
    assert check(store, person(nulls="skip"), records) == set(range(1, 23)) - ALWAYS_LEFT - {20}


def test_update_only_adds_its_flag_and_leaves_a_field_named_like_it(store: StateStore) -> None:
    records = [*person_records(), PlannedRecord(23, "add", "u23", payload({"_update": 1}), None)]
    assert check(store, person("update_only"), records) == set(range(1, 23)) - ALWAYS_LEFT


def test_mirror_suppresses_removals(store: StateStore) -> None:
    assert check(store, person("mirror"), person_records()) == set(range(1, 23)) - ALWAYS_LEFT


def test_emails_have_no_id_limit_and_cio_ids_go_bare(store: StateStore) -> None:
    records = [
        PlannedRecord(1, "add", "a" * 200 + "@x.io", payload(PLAIN), None),
        PlannedRecord(2, "remove", "b" * 200 + "@x.io", None, payload(PLAIN)),
    ]
    assert check(store, person(identifier="email"), records) == {1, 2}
    records = [
        PlannedRecord(1, "add", "cio_abc", payload(PLAIN), None),
        PlannedRecord(2, "add", "abc", payload(PLAIN), None),
        PlannedRecord(3, "remove", "cio_def", None, payload(PLAIN)),
    ]
    assert check(store, person(identifier="cio_id"), records) == {1, 2, 3}


def test_object_operations_are_pythons(store: StateStore) -> None:
    sync = ObjectSync(name="accounts", object="object", object_type_id=7, key="k", **COMMON)
    records = [
        PlannedRecord(1, "add", "acc 1", payload(VALUES), None),
        PlannedRecord(2, "add", 'ü"q', payload(PLAIN), None),
        PlannedRecord(3, "update", "a3", payload(AFTER), payload(BEFORE)),
        PlannedRecord(4, "update", "a4", payload({"a": None}), payload({})),  # nothing to send
        PlannedRecord(5, "remove", "a5", None, payload(PLAIN)),
        PlannedRecord(6, "add", "k" * 151, payload(PLAIN), None),
    ]
    assert check(store, sync, records) == {1, 2, 3, 5}


@functools.cache
def relationship(identifier: str = "id", nulls: str = "clear") -> RelationshipSync:
    return RelationshipSync(
        name="members",
        object="relationship",
        object_type_id=3,
        object_key="account",
        person={"identifier": identifier, "column": "user"},
        nulls=nulls,
        **COMMON,
    )


def pair(person_id: str, object_id: str) -> str:
    return orjson.dumps([person_id, object_id]).decode()


def test_relationship_operations_are_pythons(store: StateStore) -> None:
    records = [
        PlannedRecord(1, "add", pair("u1", "a1"), payload({"role": "admin", "seat": 1}), None),
        PlannedRecord(2, "add", pair('ü"1', "a,2"), payload({}), None),  # no attributes at all
        PlannedRecord(3, "add", pair("u3", "a3"), payload(VALUES), None),
        PlannedRecord(4, "update", pair("u4", "a4"), payload(AFTER), payload(BEFORE)),
        PlannedRecord(5, "update", pair("u5", "a5"), payload({"r": 1}), payload({"r": 1, "x": 2})),
        PlannedRecord(6, "remove", pair("u6", "a6"), None, payload(PLAIN)),
        PlannedRecord(7, "add", pair("u" * 151, "a7"), payload(PLAIN), None),
        PlannedRecord(8, "add", pair("u8", "a" * 151), payload(PLAIN), None),
    ]
    assert check(store, relationship(), records) == {1, 2, 3, 4, 6}
    assert check(store, relationship("email", "skip"), records) == {1, 2, 3, 4, 6, 7}


@functools.cache
def device(identifier: str = "id") -> DeviceSync:
    return DeviceSync(
        name="phones",
        object="device",
        person={"identifier": identifier, "column": "user"},
        key="token",
        platform="platform",
        last_used="seen",
        **COMMON,
    )


TEXTS = {"s": 'q"é\n', "b": True, "f": False, "i": -3, "u": 2**64 - 1, "n": None, "a.b": "x"}


def test_device_operations_are_pythons(store: StateStore) -> None:
    def add(seq: int, attributes: dict[str, Any], **roles: Any) -> PlannedRecord:
        return PlannedRecord(
            seq, "add", pair(f"u{seq}", f"t{seq}"), payload(attributes, roles), None
        )

    records = [
        add(1, TEXTS, platform="ios", last_used=1700000000),
        add(2, {}, platform=None),
        add(3, {"x": "y"}, platform="", last_used=None),
        add(4, {"x": "y"}, platform=True),
        add(5, {"x": "y"}, platform=False, last_used=1.5),
        add(6, {"x": "y"}, platform=7),
        add(7, {"x": "y"}, platform=0),
        add(8, {"ratio": 0.5}, platform="ios"),  # str(0.5) is Python's
        add(9, {"tags": ["a"]}, platform="ios"),  # so is orjson's text of a list
        add(10, {"x": "y"}, platform=2.5),
        add(11, {"bio": "é" * 501}, platform="ios"),  # 1002 bytes: rejected
        PlannedRecord(12, "update", pair("u12", "t12"), payload(TEXTS, {"platform": "web"}), "{}"),
        PlannedRecord(13, "remove", pair('ü"13', "t,13"), None, payload({})),
        PlannedRecord(14, "add", pair("u" * 151, "t14"), payload({}, {"platform": "ios"}), None),
    ]
    assert check(store, device(), records) == set(range(1, 15)) - {8, 9, 10, 11, 14}
    assert check(store, device("email"), records) == set(range(1, 15)) - {8, 9, 10, 11}


@functools.cache
def events(named: bool) -> EventSync:
    columns = {"event_name_column": "name", "event_type_column": "type"}
    return EventSync(
        name="events",
        object="event",
        person={"identifier": "id", "column": "user"},
        key=("id",),
        timestamp="at",
        **(columns if named else {"event_name": "signed up ✓"}),
        **COMMON,
    )


def test_event_operations_are_pythons(store: StateStore) -> None:
    """Event ids are ULIDs over sha256 of the sync's name and the key: SQL writes the same."""

    def event(seq: int, key: str, data: dict[str, Any], **roles: Any) -> PlannedRecord:
        return PlannedRecord(seq, "add", key, payload(data, {"person": "u1", **roles}), None)

    records = [
        event(1, "e1", VALUES, timestamp=1700000000),
        event(2, 'é"2', PLAIN, timestamp=0),
        event(3, "e3", {}, timestamp=None),
        event(4, pair("e", "4"), PLAIN),
        event(5, "e5", PLAIN, timestamp=-5),
        event(6, "e6", PLAIN, timestamp=2**62),
        event(7, "e7", PLAIN, timestamp=1.5),  # int(1.5): Python's
        event(8, "e8", PLAIN, timestamp=1700000000, person=42),
        event(9, "e9", PLAIN, person="u" * 151),  # an id over 150 bytes
        event(10, "e10", {"big": "x" * 60_000}),  # data over the limit
        event(11, "e11", PLAIN, event_type="page", event_name="viewed"),
        event(12, "e12", PLAIN, event_type="", event_name=7),
        event(13, "e13", PLAIN, event_type="click", event_name="x"),  # rejected
        event(14, "e14", PLAIN, event_type="screen", event_name="n" * 101),  # rejected
        event(15, "e15", PLAIN, event_type="event", event_name=None),  # str(None): Python's
        event(16, "e16", PLAIN, event_type=None, event_name="ü"),
    ]
    assert check(store, events(named=False), records[:10]) == {1, 2, 3, 4, 5, 6, 8}
    assert check(store, events(named=True), records[10:]) == {11, 12, 16}


def test_other_syncs_and_dialects_take_the_python_path() -> None:
    rows = diff.plan_rows("run")
    assert sqlops.operation_sql(person(), rows, "postgresql") is None
    assert sqlops.operation_sql(person(), rows, "duckdb") is not None


# --- any payload ---------------------------------------------------------------------------------

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["null", "1", "1.0", "true", '"', "\\", "é", "😀"]),
)


def _containers(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)
    )


VALUE = st.recursive(SCALARS, _containers, max_leaves=6)
NAMES = st.one_of(st.sampled_from(["a", "b", "c", "a.b", 'q"', "ü", "null"]), st.text(max_size=6))
ATTRIBUTES = st.dictionaries(NAMES, VALUE, max_size=6)


EVENT_TYPES = st.sampled_from(["event", "page", "screen", "click", ""])
ROLES = {
    "platform": SCALARS,
    "last_used": SCALARS,
    "timestamp": st.one_of(SCALARS, st.integers(-(2**40), 2**40)),
    "event_name": SCALARS,
    "event_type": st.one_of(SCALARS, EVENT_TYPES),
}


@st.composite
def change(draw: st.DrawFn) -> tuple[str, dict[str, Any] | None, dict[str, Any] | None]:
    """An op with its attributes after and before; an update shares some of its values."""
    op = draw(st.sampled_from(["add", "update", "remove"]))
    before = draw(ATTRIBUTES)
    if op == "remove":
        return op, None, before
    after = draw(ATTRIBUTES)
    if op == "update":
        kept = draw(st.lists(st.sampled_from(sorted(before)), unique=True)) if before else []
        after = {**after, **{name: before[name] for name in kept}}
    return op, after, before if op == "update" else None


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    changes=st.lists(change(), min_size=1, max_size=8),
    behavior=st.sampled_from(["upsert", "update_only", "mirror"]),
    nulls=st.sampled_from(["clear", "skip"]),
    spelling=st.booleans(),
    roles=st.fixed_dictionaries({"person": st.sampled_from(["p1", 7, None])}, optional=ROLES),
)
def test_any_planned_change_builds_as_in_python(
    store: StateStore,
    changes: list[tuple[str, dict[str, Any] | None, dict[str, Any] | None]],
    behavior: str,
    nulls: str,
    spelling: bool,
    roles: dict[str, Any],
) -> None:
    def text(attributes: dict[str, Any] | None) -> str | None:
        if attributes is None:
            return None
        written = payload(attributes, roles)  # a device's or an event's
        return respelled(written) if spelling else written

    records = [
        PlannedRecord(seq, op, f"u{seq}", text(after), text(before))
        for seq, (op, after, before) in enumerate(changes, start=1)
    ]
    check(store, person(behavior, nulls), records)
    paired = [r._replace(key=pair(r.key, "o")) for r in records]
    check(store, relationship(nulls=nulls), paired)
    check(store, device(), paired)
    check(store, events(named=True), [r._replace(op="add") for r in records])


def test_the_plan_rows_come_back_in_order_in_chunks(store: StateStore) -> None:
    """`read_built` reads its range only: the runner's chunks cover the plan once."""
    records = [PlannedRecord(seq, "add", f"u{seq}", payload(PLAIN), None) for seq in range(1, 8)]
    records[3] = records[3]._replace(key="k" * 151)  # left to Python
    first, second = read_built(store, person(), records, chunk=5)
    assert (list(first[0]), first[1]) == ([1, 2, 3, 5], [records[3]])
    assert (list(second[0]), second[1]) == ([6, 7], [])


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    """A DuckDB state file, then the real PostgreSQL."""
    if request.param == "duckdb":
        url = f"duckdb:///{tmp_path / 'state.duckdb'}"
    else:
        url = request.getfixturevalue("pg_state")
    made = StateStore(url)
    made.migrate()
    yield made
    made.dispose()


def test_any_state_database_hands_over_built_operations_and_the_rows_left(
    any_store: StateStore,
) -> None:
    """The engine's side of the contract, on either state database: whatever a destination's
    SELECT builds comes back as bytes, in order; the rows it leaves come back whole."""

    def keys_of_adds(rows: sa.Subquery) -> sa.Select[Any]:
        return sa.select(rows.c.seq, sa.case((rows.c.op == "add", rows.c.key)).label("operation"))

    records = [
        PlannedRecord(1, "add", "é1", payload(PLAIN), None),
        PlannedRecord(2, "remove", "u2", None, payload(PLAIN)),
        PlannedRecord(3, "add", "u3", payload(PLAIN), None),
        PlannedRecord(4, "rekey", "u4", payload(PLAIN), payload(PLAIN), "u0"),
        PlannedRecord(5, "add", "u5", payload(PLAIN), None),
    ]
    chunks = read_built(any_store, person(), records, chunk=3, operations=keys_of_adds)
    assert chunks == [
        ({1: "é1".encode(), 3: b"u3"}, [records[1]]),
        ({5: b"u5"}, [records[3]]),
    ]


# --- end to end ----------------------------------------------------------------------------------

LOG_BODIES = True  # the emulator keeps request bodies: the operations a run sent

TABLE = """
CREATE OR REPLACE TABLE people AS SELECT * FROM (VALUES
    ('u1', 'Ann "A" \\ é', 1, 9007199254740993, 1e20, true, ['x', 'y'], 'dot', {'k': 1.5}),
    ('u2', NULL, 2, -1, 0.1, false, [], NULL, NULL),
    ('ü"3', 'line
break', NULL, 0, -0.0, NULL, NULL, 'd', {'k': NULL})
) AS t(id, name, score, big, ratio, active, tags, "a.b", meta)
"""
CHANGES = [
    "UPDATE people SET score = 5, name = NULL WHERE id = 'u1'",
    "UPDATE people SET tags = ['z'] WHERE id = 'u2'",  # a list: Python compares it
    'UPDATE people SET ratio = 2.5, "a.b" = NULL WHERE id = \'ü"3\'',
]
SYNC = "object: person\nbehavior: upsert\nidentifier: id\nkey: id\nquery: SELECT * FROM people\n"


def run_twice(project: Project, python: list[str]) -> tuple[Any, ...]:
    """A first delivery, then the changes: the people after each, the second run's operations,
    and the keys of the records built in Python (`python` collects them) in each run."""
    project.sql(TABLE)
    assert project.run_json("people")["exit_code"] == 0
    first, first_python = people(project), sorted(python)
    python.clear()
    since = len(track_requests(project.emulator))
    for statement in CHANGES:
        project.sql(statement)
    assert project.run_json("people")["exit_code"] == 0
    sent = [op for r in track_requests(project.emulator)[since:] for op in r["body"]["batch"]]
    sent.sort(key=lambda op: op["identifiers"]["id"])
    return first, people(project), typed(sent), first_python, sorted(python)


def people(project: Project) -> dict[str, Any]:
    return {p["id"]: typed(p["attributes"]) for p in emu_get(project.emulator, "people")}


def test_a_run_delivers_what_the_python_path_delivers(
    duck_project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same source, delivered and changed twice over: once with operations built in SQL,
    once (after a reset of the emulator and the sync) with every operation built in Python."""
    python: list[str] = []

    def encode(sync: Sync, records: list[PlannedRecord]) -> operations.Encoded:
        python.extend(record.key for record in records)
        return real_encode(sync, records)

    real_encode = operations.encode
    monkeypatch.setattr(operations, "encode", encode)
    duck_project.write_sync("people", SYNC)
    *in_sql, first_python, second_python = run_twice(duck_project, python)
    assert (first_python, second_python) == ([], ["u2"])  # only the changed list: Python's ==

    emu_post(duck_project.emulator, "reset", {})
    assert duck_project.cli("reset", "people", "--yes")[0] == 0
    monkeypatch.setattr(sqlops, "operation_sql", lambda *_: None)
    python.clear()
    *in_python, first_python, second_python = run_twice(duck_project, python)
    assert (first_python, second_python) == (["u1", "u2", 'ü"3'], ["u1", "u2", 'ü"3'])

    assert in_sql == in_python
    first, second, _ = in_sql
    assert first["u1"] == typed(
        {
            "name": 'Ann "A" \\ é',
            "score": 1,
            "big": 9007199254740993,
            "ratio": 1e20,
            "active": True,
            "tags": ["x", "y"],
            "a.b": "dot",
            "meta": {"k": 1.5},
        }
    )
    assert "name" not in second["u1"] and "a.b" not in second['ü"3']


def test_the_plan_explains_how_delivery_reads_the_built_operations(duck_project: Project) -> None:
    duck_project.sql(TABLE)
    duck_project.write_sync("people", SYNC)
    code, output = duck_project.cli("plan", "people", "--explain")
    assert code == 0
    delivery = output.rpartition("-- on duckdb")[2]
    assert "json_extract(" in delivery and "lambda" in delivery and "operations.seq" in delivery
    assert track_requests(duck_project.emulator) == []
