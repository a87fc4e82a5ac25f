"""Customer.io v2 operations as SQL: the state database writes each plan row's finished
operation, so that delivery moves bytes instead of building a Python object per row (SPEC §7.1).

`operation_sql(sync, rows, dialect)` is a SELECT over plan rows giving, for each, the compact
JSON `operations.build` would encode (the same JSON value; the spelling may differ, e.g. `1e20`
against `100000000000000000000.0`) — or NULL for a row it cannot settle, which then takes the
Python path (`operations.encode`) that accepts, rejects or acknowledges it:

- a rekey, or an update whose changed attributes are empty under the `nulls` rule;
- a record near a documented limit (an id over 150 bytes, an attribute name over 150 bytes, a
  value that might be over 1000, more than 300 attributes, an operation that might be over the
  32,000-byte entity limit);
- an update where a list or object attribute's text differs: Python's equality (`1 == 1.0 ==
  True` inside a list, key order inside an object) decides whether it changed.

Values are compared by JSON type and value, never by their text alone: the payload's writer may
spell a number differently from one run to the next. Names and values are read as two aligned
lists (`json_keys`, `json_extract(..., '$.*')`): never through a path built from a name.

The SELECT is a few stages of subqueries, each computing its columns once a row: DuckDB computes
an expression a lambda captures again for every element, so a single expression would parse a
payload dozens of times. Only DuckDB is covered, for the syncs of v2 operations (person, object,
relationship, device, event); any other sync or dialect gets None and is built in Python whole.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

from connectors.customerio import limits
from engine.config import DeviceSync, EventSync, ObjectSync, PersonSync, RelationshipSync, Sync

Sql = ColumnElement[Any]

SAFE_ENTITY_BYTES = limits.MAX_ENTITY_BYTES // 2
"""The longest operation text settled here. Another writer may spell a value up to twice as long
(a float's exponent, an escape), and the client measures the bytes it is given against the
entity limit: a longer operation is measured in Python's own spelling."""
SAFE_PLAIN_BYTES = limits.MAX_ATTRIBUTE_VALUE_BYTES // 2
"""An attributes object this short, without nulls, is sent as stored: no value in it can be over
the value limit in any spelling, and it cannot hold more than 300 attributes."""
_INTEGERS = ["BIGINT", "UBIGINT"]  # json_type's names of integers (UBIGINT: any above zero)


class _Lambda(ColumnElement[Any]):
    """DuckDB's `lambda x, i: body`, which SQLAlchemy Core has no construct for."""

    inherit_cache = True
    _traverse_internals = [
        ("arguments", InternalTraversal.dp_string_list),
        ("body", InternalTraversal.dp_clauseelement),
    ]

    def __init__(self, arguments: list[str], body: Sql) -> None:
        self.arguments, self.body = arguments, body


@compiles(_Lambda)
def _compile_lambda(element: _Lambda, compiler: SQLCompiler, **kw: Any) -> str:
    return f"lambda {', '.join(element.arguments)}: {compiler.process(element.body, **kw)}"


def _each(body: Callable[..., Sql], *arguments: str) -> _Lambda:
    """A lambda of `arguments` (an element, and its 1-based index when two); `body` gets them
    as columns."""
    return _Lambda(list(arguments), body(*(sa.literal_column(a) for a in arguments)))


def _text(value: str) -> Sql:
    return sa.literal(value, sa.String)


def _cat(*parts: Sql) -> Sql:
    """Concatenation that stays NULL when a part is NULL."""
    out = parts[0]
    for part in parts[1:]:
        out = out.op("||")(part)
    return out


def _strlen(value: Sql) -> Sql:
    return sa.func.strlen(value)  # bytes of UTF-8, as Customer.io measures


def _at(items: Sql, index: Sql) -> Sql:
    return sa.func.list_extract(items, index)  # 1-based; NULL for a NULL index


# --- attributes ----------------------------------------------------------------------------------


def _same(after: Sql, before: Sql) -> Sql:
    """Python's `_same` on two JSON value texts: TRUE, FALSE, or NULL when two lists or two
    objects differ in text and only Python's equality can tell."""
    kind_a, kind_b = sa.func.json_type(after), sa.func.json_type(before)
    return sa.case(
        (after == before, sa.true()),
        (
            sa.and_(kind_a == "DOUBLE", kind_b == "DOUBLE"),
            sa.cast(after, sa.Double) == sa.cast(before, sa.Double),
        ),
        (sa.and_(kind_a == kind_b, kind_a.in_(["ARRAY", "OBJECT"])), sa.null()),
        else_=sa.false(),
    )


def _value_bytes(value: Sql) -> Sql:
    """A bound on the value's size as Customer.io measures it: a string's UTF-8 bytes exactly,
    any other value's text twice over (see `SAFE_ENTITY_BYTES`)."""
    return sa.case(
        (sa.func.json_type(value) == "VARCHAR", _strlen(sa.func.json_extract_string(value, "$"))),
        else_=2 * _strlen(value),
    )


def _longest(items: Sql, measure: Callable[[Sql], Sql], sends: Sql | None = None) -> Sql:
    """The largest `measure` of the items (of those `sends` marks, when given); 0 for none."""

    def measured(item: Sql, index: Sql) -> Sql:
        return measure(item) if sends is None else sa.case((_at(sends, index), measure(item)))

    sizes = sa.func.list_transform(items, _each(measured, "item", "i"))
    return sa.func.coalesce(sa.func.list_max(sizes), 0)


def _parsed(rows: sa.FromClause, update_only: bool) -> sa.Subquery:
    """Stage 1: the attributes object as stored, its names, and whether it can be sent as it is
    (`plain`: delivered whole, no null, short, names within the limit)."""
    whole = sa.or_(rows.c.op == "add", rows.c.before.is_(None))
    stored = sa.func.json_extract(rows.c.payload, "$.a")
    names = sa.func.json_keys(rows.c.payload, "$.a")
    plain = sa.and_(
        whole,
        sa.not_(sa.func.contains(stored, "null")),
        _strlen(stored) <= SAFE_PLAIN_BYTES,
        _longest(names, _strlen) <= limits.MAX_ATTRIBUTE_NAME_BYTES,
    )
    reserved = sa.func.list_contains(names, "_update") if update_only else sa.false()
    return sa.select(
        rows.c.seq,
        rows.c.op,
        rows.c.key,
        rows.c.before,
        whole.label("whole"),
        stored.label("stored"),
        names.label("names"),
        plain.label("plain"),
        reserved.label("reserved"),
    ).subquery("parsed")


def _split(parsed: sa.Subquery) -> sa.Subquery:
    """Stage 2, for rows not sent as stored: the values aligned with the names, and for a change
    where each name stood in the snapshot's payload (`positions`) and its values there."""
    p = parsed.c
    changed = sa.and_(sa.not_(p.plain), sa.not_(p.whole))
    was_names = sa.func.json_keys(p.before, "$.a")
    positions = sa.func.list_transform(
        p.names, _each(lambda name: sa.func.list_position(was_names, name), "name")
    )
    return sa.select(
        *(c for c in p if c.name != "before"),
        sa.case((sa.not_(p.plain), sa.func.json_extract(p.stored, "$.*"))).label("vals"),
        sa.case((changed, positions)).label("positions"),
        sa.case((changed, sa.func.json_extract(p.before, "$.a.*"))).label("was_values"),
    ).subquery("split")


def _judged(split: sa.Subquery, nulls: str) -> sa.Subquery:
    """Stage 3: for each name, whether the record sends it (`sends`; NULL when Python must
    compare): a whole record its non-null values, a change the values that changed (a null
    that replaced a value only under `nulls: clear`)."""
    s = split.c

    def sends(value: Sql, index: Sql) -> Sql:
        position = _at(s.positions, index)
        changed = sa.case(
            (position.is_(None), sa.true()),
            else_=sa.not_(_same(value, _at(s.was_values, position))),
        )
        wanted: Sql = value != "null"
        if nulls == "clear":
            wanted = sa.or_(wanted, position.is_not(None))
        return sa.case((s.whole, value != "null"), else_=sa.and_(changed, wanted))

    verdicts = sa.func.list_transform(s.vals, _each(sends, "value", "i"))
    return sa.select(*s, sa.case((sa.not_(s.plain), verdicts)).label("sends")).subquery("judged")


def _members(names: Sql, values: Sql, sends: Sql) -> Sql:
    """The JSON object text of the names and value texts that `sends` marks."""

    def member(name: Sql, index: Sql) -> Sql:
        return sa.case(
            (_at(sends, index), _cat(sa.func.to_json(name), _text(":"), _at(values, index)))
        )

    members = sa.func.list_transform(names, _each(member, "name", "i"))
    return _cat(_text("{"), sa.func.array_to_string(members, ","), _text("}"))


def _sent_count(sends: Sql) -> Sql:
    return sa.func.len(sa.func.list_filter(sends, _each(lambda flag: flag, "flag")))


def _fits(names: Sql, values: Sql, sends: Sql, extra: int = 0) -> Sql:
    """The attribute limits hold for the members `sends` marks (and `extra` more of them)."""
    return sa.and_(
        _sent_count(sends) + extra <= limits.MAX_ATTRIBUTES_PER_CALL,
        _longest(names, _strlen, sends) <= limits.MAX_ATTRIBUTE_NAME_BYTES,
        _longest(values, _value_bytes, sends) <= limits.MAX_ATTRIBUTE_VALUE_BYTES,
    )


def _attributes(rows: sa.FromClause, nulls: str, update_only: bool) -> sa.Subquery:
    """`rows` (seq, op, key) with `attributes`: what `PlannedRecord.attributes(nulls)` gives, as
    a JSON object's text (with update_only's `"_update": true`), or NULL where Python decides."""
    judged = _judged(_split(_parsed(rows, update_only)), nulls)
    j = judged.c
    attributes: Sql = sa.case(
        (j.reserved, sa.null()),
        (j.plain, j.stored),
        (sa.func.list_count(j.sends) < sa.func.len(j.sends), sa.null()),  # a NULL verdict
        (sa.and_(sa.not_(j.whole), _sent_count(j.sends) == 0), sa.null()),  # nothing to send
        (_fits(j.names, j.vals, j.sends, int(update_only)), _members(j.names, j.vals, j.sends)),
        else_=sa.null(),
    )
    if update_only:
        attributes = _with_update(attributes)
    return sa.select(j.seq, j.op, j.key, attributes.label("attributes")).subquery("attributes")


def _with_update(attributes: Sql) -> Sql:
    """update_only's `"_update": true`, appended to an attributes object's text."""
    return sa.case(
        (attributes == "{}", _text('{"_update":true}')),
        else_=_cat(
            sa.func.substr(attributes, 1, sa.func.length(attributes) - 1),
            _text(',"_update":true}'),
        ),
    )


def _bounded(seq: Sql, operation: Sql) -> sa.Select[Any]:
    """The final stage: each row's operation, NULL when it might be over the entity limit."""
    built = sa.select(seq.label("seq"), operation.label("operation")).subquery("built")
    fits = _strlen(built.c.operation) <= SAFE_ENTITY_BYTES
    return sa.select(built.c.seq, sa.case((fits, built.c.operation)).label("operation"))


def _id_fits(value: Sql) -> Sql:
    return _strlen(value) <= limits.MAX_ID_BYTES


# --- one operation per sync type ----------------------------------------------------------------


def _person_ids(identifier: str, value: Sql) -> Sql:
    """`operations.person_identifiers`: exactly one identifier; a cio_id sent bare."""
    if identifier == "cio_id":
        value = sa.case(
            (sa.func.starts_with(value, "cio_"), sa.func.substr(value, len("cio_") + 1)),
            else_=value,
        )
    return _cat(_text('{"' + identifier + '":'), sa.func.to_json(value), _text("}"))


def _person_id_fits(identifier: str, value: Sql) -> Sql:
    return sa.true() if identifier == "email" else _id_fits(value)


def _person(sync: PersonSync, rows: sa.FromClause) -> sa.Select[Any]:
    a = _attributes(rows, sync.nulls, update_only=sync.behavior == "update_only").c
    ids = _person_ids(sync.identifier, a.key)
    remove = '{"type":"person","action":"' + sync.on_remove + '","identifiers":'
    identify = '{"type":"person","action":"identify","identifiers":'
    operation = sa.case(
        (sa.not_(_person_id_fits(sync.identifier, a.key)), sa.null()),
        (a.op == "remove", _cat(_text(remove), ids, _text("}"))),
        (
            a.op.in_(["add", "update"]),
            _cat(_text(identify), ids, _text(',"attributes":'), a.attributes, _text("}")),
        ),
    )
    return _bounded(a.seq, operation)


def _object_ids(sync: ObjectSync | RelationshipSync, object_id: Sql) -> Sql:
    return _cat(
        _text('{"object_type_id":"' + str(sync.object_type_id) + '","object_id":'),
        sa.func.to_json(object_id),
        _text("}"),
    )


def _object(sync: ObjectSync, rows: sa.FromClause) -> sa.Select[Any]:
    a = _attributes(rows, sync.nulls, update_only=False).c
    ids = _object_ids(sync, a.key)
    delete = '{"type":"object","action":"delete","identifiers":'
    identify = '{"type":"object","action":"identify","identifiers":'
    operation = sa.case(
        (sa.not_(_id_fits(a.key)), sa.null()),
        (a.op == "remove", _cat(_text(delete), ids, _text("}"))),
        (
            a.op.in_(["add", "update"]),
            _cat(_text(identify), ids, _text(',"attributes":'), a.attributes, _text("}")),
        ),
    )
    return _bounded(a.seq, operation)


def _relationship(sync: RelationshipSync, rows: sa.FromClause) -> sa.Select[Any]:
    """A person's relationship to an object; the key is the JSON array [person, object id]."""
    a = _attributes(rows, sync.nulls, update_only=False).c
    person = sa.func.json_extract_string(a.key, "$[0]")
    object_id = sa.func.json_extract_string(a.key, "$[1]")

    def operation(action: str, relation_attributes: Sql) -> Sql:
        return _cat(
            _text('{"type":"person","action":"' + action + '","identifiers":'),
            _person_ids(sync.person.identifier, person),
            _text(',"cio_relationships":[{"identifiers":'),
            _object_ids(sync, object_id),
            relation_attributes,
            _text("}]}"),
        )

    with_attributes = sa.case(
        (a.attributes == "{}", _text("")),
        else_=_cat(_text(',"relationship_attributes":'), a.attributes),
    )
    fits = sa.and_(_person_id_fits(sync.person.identifier, person), _id_fits(object_id))
    return _bounded(
        a.seq,
        sa.case(
            (sa.not_(fits), sa.null()),
            (a.op == "remove", operation("delete_relationships", _text(""))),
            (a.op.in_(["add", "update"]), operation("add_relationships", with_attributes)),
        ),
    )


def _device_text(value: Sql) -> Sql:
    """`operations._as_text` of a value as JSON text: a string as it is, a boolean or an integer
    as its text; NULL for a float, list or object, whose Python text only Python writes."""
    kind = sa.func.json_type(value)
    return sa.case(
        (kind == "VARCHAR", value),
        (kind.in_(["BOOLEAN", *_INTEGERS]), _cat(_text('"'), value, _text('"'))),
    )


def _platform(value: Sql) -> Sql:
    """`str(platform or "")` as JSON text, for the types whose Python text SQL writes."""
    kind = sa.func.json_type(value)
    falsy = sa.or_(value.is_(None), value.in_(["null", '""', "0", "false"]))
    return sa.case(
        (falsy, _text('""')),
        (kind == "VARCHAR", value),
        (value == "true", _text('"True"')),
        (kind.in_(_INTEGERS), _cat(_text('"'), value, _text('"'))),
    )


def _device(sync: DeviceSync, rows: sa.FromClause) -> sa.Select[Any]:
    """A person's device, keyed by the JSON array [person, token]: its attributes sent whole as
    text, its platform and last_used from the payload's roles."""
    values = sa.func.json_extract(rows.c.payload, "$.a.*")
    parsed = sa.select(
        rows.c.seq,
        rows.c.op,
        sa.func.json_extract_string(rows.c.key, "$[0]").label("person"),
        sa.func.json_extract_string(rows.c.key, "$[1]").label("token"),
        _platform(sa.func.json_extract(rows.c.payload, "$.r.platform")).label("platform"),
        sa.func.json_extract(rows.c.payload, "$.r.last_used").label("last_used"),
        sa.func.json_keys(rows.c.payload, "$.a").label("names"),
        sa.func.list_transform(values, _each(_device_text, "value")).label("texts"),
        sa.func.list_transform(values, _each(lambda v: v != "null", "value")).label("sends"),
    ).subquery("parsed")
    d = parsed.c
    texts_known = sa.func.list_count(d.texts) == _sent_count(d.sends)  # no float, list, object
    attributes = sa.case(
        (sa.not_(sa.and_(texts_known, _fits(d.names, d.texts, d.sends))), sa.null()),
        (_sent_count(d.sends) == 0, _text("")),
        else_=_cat(_text(',"attributes":'), _members(d.names, d.texts, d.sends)),
    )
    last_used = sa.case(
        (sa.or_(d.last_used.is_(None), d.last_used == "null"), _text("")),
        else_=_cat(_text(',"last_used":'), d.last_used),
    )
    ids = _person_ids(sync.person.identifier, d.person)
    token = _cat(_text('{"token":'), sa.func.to_json(d.token))
    add = _cat(
        _text('{"type":"person","action":"add_device","identifiers":'),
        ids,
        _text(',"device":'),
        token,
        _text(',"platform":'),
        d.platform,
        last_used,
        attributes,
        _text("}}"),
    )
    delete = _cat(
        _text('{"type":"person","action":"delete_device","identifiers":'),
        ids,
        _text(',"device":'),
        token,
        _text("}}"),
    )
    return _bounded(
        d.seq,
        sa.case(
            (sa.not_(_person_id_fits(sync.person.identifier, d.person)), sa.null()),
            (d.op == "remove", delete),
            (d.op.in_(["add", "update"]), add),
        ),
    )


class _Integer128(sa.types.UserDefinedType[int]):
    """DuckDB's 128-bit integer: an event id's parts, and any timestamp times 1000, fit it."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "HUGEINT"

    def literal_processor(self, dialect: Any) -> Callable[[int], str]:
        return str


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # a ULID's base32 alphabet


def _event_id(sync_name: str, key: Sql, seconds: Sql) -> Sql:
    """`operations.event_id`: a ULID of 48 bits of milliseconds (0 without a timestamp) and 80
    bits of sha256 over the sync's name, a NUL and the key; 130 bits with two leading zeros,
    written five at a time."""
    whole = sa.cast(seconds, _Integer128())
    millis = sa.case((whole > 0, whole * 1000 % 2**48), else_=sa.cast(0, _Integer128()))
    digest = sa.func.sha256(_cat(_text(sync_name), sa.func.chr(0), key))
    hashed = sa.cast(_cat(_text("0x"), sa.func.substr(digest, 1, 20)), _Integer128())
    bits = _cat(
        sa.func.lpad(sa.func.bin(millis), 50, "0"), sa.func.lpad(sa.func.bin(hashed), 80, "0")
    )

    def letter(index: Sql) -> Sql:
        group = sa.cast(_cat(_text("0b"), sa.func.substr(bits, 5 * index + 1, 5)), sa.Integer)
        return sa.func.substr(_CROCKFORD, group + 1, 1)

    return sa.func.array_to_string(
        sa.func.list_transform(sa.func.range(26), _each(letter, "n")), ""
    )


def _role_text(value: Sql) -> Sql:
    """`str(value)` of a role as JSON text, for a string or an integer; NULL for other types."""
    kind = sa.func.json_type(value)
    return sa.case(
        (kind == "VARCHAR", value),
        (kind.in_(_INTEGERS), _cat(_text('"'), value, _text('"'))),
    )


def _event_kind(sync: EventSync, value: Sql) -> Sql:
    """`roles.get("event_type") or sync.event_type`, as JSON text; NULL for anything else than
    event, page or screen (which Python rejects) or a falsy value SQL does not recognise."""
    default = _text(orjson.dumps(sync.event_type).decode())
    return sa.case(
        (sa.or_(value.is_(None), value.in_(["null", '""', "0", "false", "[]", "{}"])), default),
        (value.in_(['"event"', '"page"', '"screen"']), value),
    )


def _event(sync: EventSync, rows: sa.FromClause) -> sa.Select[Any]:
    """An event, page or screen with its deterministic id; attributes are its non-null data."""

    def role(name: str) -> Sql:
        return sa.func.json_extract(rows.c.payload, "$.r." + name)

    stored = sa.func.json_extract(rows.c.payload, "$.a")
    name = role("event_name")
    if sync.event_name is not None:
        name = sa.func.coalesce(name, _text(orjson.dumps(sync.event_name).decode()))
    parsed = sa.select(
        rows.c.seq,
        rows.c.key,
        stored.label("stored"),
        sa.func.json_keys(rows.c.payload, "$.a").label("names"),
        sa.case((sa.func.contains(stored, "null"), sa.func.json_extract(stored, "$.*"))).label(
            "vals"
        ),
        _event_kind(sync, role("event_type")).label("kind"),
        _role_text(name).label("name"),
        _role_text(role("person")).label("person"),
        role("timestamp").label("seconds"),
    ).subquery("parsed")
    e = parsed.c
    sends = sa.func.list_transform(e.vals, _each(lambda v: v != "null", "value"))
    data = sa.case((e.vals.is_(None), e.stored), else_=_members(e.names, e.vals, sends))
    person = sa.func.json_extract_string(e.person, "$")
    timed = sa.and_(e.seconds.is_not(None), e.seconds != "null")
    known = sa.and_(
        e.kind.is_not(None),
        e.name.is_not(None),
        _strlen(sa.func.json_extract_string(e.name, "$")) <= limits.MAX_EVENT_NAME_BYTES,
        e.person.is_not(None),
        _person_id_fits(sync.person.identifier, person),
        sa.or_(sa.not_(timed), sa.func.json_type(e.seconds).in_(_INTEGERS)),
        2 * _strlen(data) <= limits.MAX_EVENT_DATA_BYTES,
    )
    seconds = sa.case((sa.func.json_type(e.seconds).in_(_INTEGERS), e.seconds))
    operation = _cat(
        _text('{"type":"person","action":'),
        e.kind,
        _text(',"identifiers":'),
        _person_ids(sync.person.identifier, person),
        _text(',"name":'),
        e.name,
        _text(',"id":"'),
        _event_id(sync.name, e.key, seconds),
        _text('"'),
        sa.case((timed, _cat(_text(',"timestamp":'), e.seconds)), else_=_text("")),
        sa.case((data == "{}", _text("")), else_=_cat(_text(',"attributes":'), data)),
        _text("}"),
    )
    return _bounded(e.seq, sa.case((known, operation)))


_BUILDERS: dict[type[Sync], Callable[[Any, sa.FromClause], sa.Select[Any]]] = {
    PersonSync: _person,
    ObjectSync: _object,
    RelationshipSync: _relationship,
    DeviceSync: _device,
    EventSync: _event,
}


def operation_sql(sync: Sync, rows: sa.FromClause, dialect: str) -> sa.Select[Any] | None:
    """A SELECT of (seq, operation) over plan `rows`: each row's v2 operation as compact JSON
    text, or NULL where Python must build it; None when this sync type or dialect has no SQL."""
    build = _BUILDERS.get(type(sync))
    if dialect != "duckdb" or build is None:
        return None
    return build(sync, rows)
