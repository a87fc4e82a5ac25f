"""Source rows → staged records: stream the query in batches, normalise, key, fingerprint.

Rows never exist as Python objects all at once: a DuckDB source is read as Arrow record batches
(normalised column-wise), any other SQLAlchemy source through a server-side cursor in chunks.
Each record becomes (key, fingerprint, payload) where the payload is canonical JSON
`{"a": {attribute: value}, "r": {role: value}}`: the delivered attributes, and the values of
the columns with a role (a device's platform, an event's name...).

With a DuckDB or PostgreSQL state store, rows that arrive as Arrow are keyed, encoded and
compared with the snapshot by the state database's own SQL instead (`engine.sqlstage`,
`engine.pgstage`): this module reads the source for both paths, and `encode` encodes in
Python the rows SQL does not (collections' among them).

Rows with a NULL key part, and events whose name is NULL, are set aside as invalid; events whose
name is outside `filter.event_names` are counted as skipped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import sqlalchemy as sa

from engine import explain, records, sources
from engine.config import Sync, WorkspaceSettings
from engine.destination import key_string
from engine.errors import ConfigError, Problem
from engine.incremental import Highest, Read
from engine.state import Staged, StateStore

BATCH_ROWS = 50_000
Columns = dict[str, list[Any]]


@dataclass(frozen=True)
class Layout:
    """Which result column plays which part in a record."""

    key_columns: tuple[str, ...]
    email_keys: frozenset[str]  # key columns holding emails: compared as lower(trim(value))
    roles: dict[str, str]  # role → column
    fields: dict[str, str]  # attribute → column, sorted by attribute
    event_filter: frozenset[str] | None = None
    event_name: str | None = None  # an event sync's constant name


@dataclass
class Extracted:
    rows: int = 0
    staged: int = 0
    skipped: int = 0
    invalid: list[tuple[str | None, str]] = field(default_factory=list)  # (key, reason)
    digest: Any = field(default_factory=hashlib.md5)  # a whole result's: every fingerprint in order
    read: Read = field(default_factory=Read)  # full, or incremental past a bound
    highest: Highest = field(default_factory=Highest)  # the largest cursor value read
    streamed: int | None = None  # operations planned as the rows were read (a first run)
    duplicates: int = 0  # keys more than one row has, found before a streamed run
    # staged by SQL that compared each row with the snapshot: a row staged with its fingerprint
    # is new or changed (`engine.sqlstage.stage_statement`)
    compared: bool = False


def layout_for(sync: Sync, columns: Sequence[str], workspace: WorkspaceSettings) -> Layout:
    """Resolve the sync's columns against the query's result; a missing column, or a column the
    workspace's destination would refuse as an attribute name, is a ConfigError."""
    roles = {role: column for role, column in sync.roles().items() if column}
    if sync.fields is not None:
        fields = dict(sync.fields)
    else:
        reserved = set(sync.reserved_columns())
        fields = {column: column for column in columns if column not in reserved}
    missing = [
        c for c in dict.fromkeys((*sync.named_columns(), *fields.values())) if c not in columns
    ]
    if missing:
        raise ConfigError(
            [
                Problem(
                    sync.file,
                    sync.line,
                    f"sync '{sync.name}': column(s) {', '.join(missing)} missing from the query's result",
                    f"the query returns: {', '.join(columns)}",
                )
            ]
        )
    if sync.sends_attributes:
        _check_attribute_names(sync, fields, workspace)
    return Layout(
        key_columns=sync.key_columns(),
        email_keys=sync.email_columns(),
        roles=roles,
        fields=dict(sorted(fields.items())),
        event_filter=sync.event_filter(),
        event_name=sync.event_name_constant(),
    )


def _check_attribute_names(
    sync: Sync, fields: dict[str, str], workspace: WorkspaceSettings
) -> None:
    """Columns sent as attributes must make valid attribute names (`sync validate` checks listed
    `fields`; these are the query's columns). Every record would be refused otherwise, so it is a
    configuration error, and the operation builders may take the names as valid."""
    longest, most = workspace.max_attribute_name_bytes, workspace.max_attributes
    long = [n for n in fields if longest is not None and len(n.encode()) > longest]
    problems = [
        f"column '{name[:40]}…' is {len(name.encode())} bytes; attribute names take at most "
        f"{longest}"
        for name in long
    ]
    if most is not None and len(fields) > most:
        problems.append(
            f"the query returns {len(fields)} attribute columns; "
            f"{workspace.destination_name} takes at most {most}"
        )
    if problems:
        raise ConfigError(
            [
                Problem(
                    sync.file,
                    sync.line,
                    f"sync '{sync.name}': {problem}",
                    "alias the column in the query, or list the attributes under fields:",
                )
                for problem in problems
            ]
        )


# --- reading the source ----------------------------------------------------------------------


@dataclass
class SourceBatch:
    """One batch of the query's result: Arrow (DuckDB sources) or Python columns. Columns are
    normalised when asked for (`columns`), so rows staged by SQL never become Python values."""

    names: list[str]
    size: int
    arrow: pa.RecordBatch | None = None
    json_columns: frozenset[str] = frozenset()
    python: Columns | None = None

    def columns(self, names: Iterable[str], rows: list[int] | None = None) -> Columns:
        """Normalised values of `names`, of every row or of `rows` only."""
        if self.arrow is not None:
            picked = self.arrow if rows is None else self.arrow.take(pa.array(rows, pa.int64()))
            return {
                n: records.arrow_column(picked.column(n), n in self.json_columns) for n in names
            }
        assert self.python is not None
        if rows is None:
            return {n: self.python[n] for n in names}
        return {n: [self.python[n][i] for i in rows] for n in names}


def read_source(
    sync: Sync,
    url: str,
    root: Path,
    *,
    batch_rows: int = BATCH_ROWS,
    store: StateStore | None = None,
    read: Read | None = None,
) -> Iterator[SourceBatch]:
    """Yield the sync's query result in batches; what the source raises ends as a SourceError
    (`engine.sources`).

    A source that is the DuckDB file of `store` (the state store) is read through the store
    (`StateStore.reader`): DuckDB admits one configuration of a file in a process, and the
    store holds it open read-write. Any other source is opened by `engine.sources.connect`
    (a DuckDB file read-only). An incremental `read` filters the query past its bound."""
    read = read or Read()
    if store is not None and store.holds(url):
        with store.reader() as conn, sources.query_errors(sync):
            sql = read.query(sync.sql, conn.dialect.identifier_preparer.quote)
            yield from _read(conn, sql, root, batch_rows)
        return
    with sources.connect(sync.source, url) as conn, sources.query_errors(sync):
        sql = read.query(sync.sql, conn.dialect.identifier_preparer.quote)
        yield from _read(conn, sql, root, batch_rows)


def observe_cursor(batch: SourceBatch, cursor: str, highest: Highest) -> None:
    """Note the largest cursor value of a batch, as the source returned it."""
    if batch.arrow is not None:
        highest.arrow(batch.arrow.column(cursor))
    elif batch.python is not None:
        highest.python(batch.python[cursor])


def _read(conn: sa.Connection, sql: str, root: Path, batch_rows: int) -> Iterator[SourceBatch]:
    if conn.dialect.name == "duckdb":
        return _read_duckdb(conn, sql, root, batch_rows)
    return _read_generic(conn, sql, batch_rows)


def _read_duckdb(
    conn: sa.Connection, sql: str, root: Path, batch_rows: int
) -> Iterator[SourceBatch]:
    raw: Any = conn.connection.driver_connection
    raw.execute("SET file_search_path = ?", [str(root)])
    relation = raw.sql(sql)
    explain.note(f"duckdb {conn.engine.url.database or ''}".strip(), sql)
    names = list(relation.columns)
    json_columns = frozenset(
        n for n, t in zip(relation.columns, relation.types, strict=True) if str(t) == "JSON"
    )
    emitted = False
    for batch in relation.to_arrow_reader(batch_rows):
        emitted = True
        yield SourceBatch(names, batch.num_rows, arrow=batch, json_columns=json_columns)
    if not emitted:
        yield SourceBatch(names, 0, python={n: [] for n in names})


def _read_generic(conn: sa.Connection, sql: str, batch_rows: int) -> Iterator[SourceBatch]:
    result = conn.execution_options(stream_results=True, yield_per=batch_rows).execute(sa.text(sql))
    names = list(result.keys())
    emitted = False
    for part in result.partitions():
        emitted = True
        transposed = list(zip(*part, strict=True))
        columns = {n: records.python_column(transposed[i]) for i, n in enumerate(names)}
        yield SourceBatch(names, len(part), python=columns)
    if not emitted:
        yield SourceBatch(names, 0, python={n: [] for n in names})


# --- encoding records ------------------------------------------------------------------------


def _key_normalisers(layout: Layout) -> list[Callable[[Any], str | None]]:
    def email(value: Any) -> str | None:
        return records.email_key(records.key_text(value))

    return [email if c in layout.email_keys else records.key_text for c in layout.key_columns]


def _keys(layout: Layout, columns: Columns) -> list[str | None]:
    """Each row's key, or None when a key part is NULL or empty (the row is then set aside)."""
    parts = [
        list(map(norm, columns[column]))
        for norm, column in zip(_key_normalisers(layout), layout.key_columns, strict=True)
    ]
    if len(parts) == 1:
        return [k if k else None for k in parts[0]]
    return [key_string(row) if all(row) else None for row in zip(*parts, strict=True)]


def _shown_key(layout: Layout, columns: Columns, i: int) -> str:
    norms = _key_normalisers(layout)
    parts = [norm(columns[c][i]) for norm, c in zip(norms, layout.key_columns, strict=True)]
    return key_string([p or "" for p in parts])


def _row_text(row: int, layout: Layout, key_columns: Columns, i: int, attrs: dict[str, Any]) -> str:
    """Where an invalid row is: its number in the query's result and a few of its columns."""
    shown = {c: key_columns[c][i] for c in layout.key_columns}
    shown.update(list(attrs.items())[:3])
    values = ", ".join(f"{name}={_short(value)}" for name, value in shown.items())
    return f"row {row:,} of the query's result: {values}"


def _short(value: Any) -> str:
    text = "NULL" if value is None else repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def encode(
    layout: Layout,
    batch: SourceBatch,
    first_ord: int,
    out: Extracted,
    *,
    whole: bool = False,
) -> Staged:
    """Encode one batch. `whole` (collections) keys rows by their position instead of key columns."""
    count = batch.size
    key_columns = {} if whole else batch.columns(layout.key_columns)
    keys = [str(first_ord + i) for i in range(count)] if whole else _keys(layout, key_columns)
    names, roles = tuple(layout.fields), tuple(layout.roles)
    values = batch.columns([*layout.fields.values(), *layout.roles.values()])
    attr_rows = zip(*(values[c] for c in layout.fields.values()), strict=True) if names else None
    role_rows = zip(*(values[c] for c in layout.roles.values()), strict=True) if roles else None
    filtered = "person" in layout.roles or "event_name" in layout.roles or layout.event_name
    staged_keys: list[str] = []
    fps: list[str] = []
    payloads: list[str] = []
    canonical, fingerprint = records.canonical, records.fingerprint
    for i, key in enumerate(keys):
        attrs = dict(zip(names, next(attr_rows), strict=True)) if attr_rows else {}
        role_values = dict(zip(roles, next(role_rows), strict=True)) if role_rows else {}
        if key is None:
            shown = _shown_key(layout, key_columns, i)
            row = out.rows + i + 1
            where = _row_text(row, layout, key_columns, i, attrs)
            out.invalid.append(
                (shown, f"NULL or empty key: the row cannot be identified ({where})")
            )
            continue
        if filtered and _set_aside(layout, role_values, key, out):
            continue
        encoded = canonical({"a": attrs, "r": role_values})
        staged_keys.append(key)
        fps.append(fingerprint(encoded))
        payloads.append(encoded.decode())
    if whole:
        for fp in fps:
            out.digest.update(fp.encode())
    out.staged += len(staged_keys)
    out.rows += count
    return Staged(staged_keys, fps, payloads, first_ord)


def describe_invalid(layout: Layout, batch: SourceBatch, rows: list[int], out: Extracted) -> None:
    """Set aside `rows` of a batch as `encode` sets invalid rows aside, with the same reasons
    (for `engine.sqlstage`, which finds them by Arrow compute and stages the rest in SQL)."""
    key_columns = batch.columns(layout.key_columns, rows)
    values = batch.columns([*layout.fields.values(), *layout.roles.values()], rows)
    for i, key in enumerate(_keys(layout, key_columns)):
        attrs = {name: values[column][i] for name, column in layout.fields.items()}
        if key is None:
            where = _row_text(out.rows + rows[i] + 1, layout, key_columns, i, attrs)
            reason = f"NULL or empty key: the row cannot be identified ({where})"
            out.invalid.append((_shown_key(layout, key_columns, i), reason))
            continue
        role_values = {role: values[column][i] for role, column in layout.roles.items()}
        _set_aside(layout, role_values, key, out)


def _set_aside(layout: Layout, role_values: dict[str, Any], key: str, out: Extracted) -> bool:
    """True when an event row is not staged: it names no person, it has no name, or one outside
    the filter."""
    if "person" in layout.roles and role_values.get("person") in (None, ""):
        out.invalid.append((key, "NULL or empty person identifier"))
        return True
    name = role_values.get("event_name", layout.event_name)
    if name is None or name == "":
        out.invalid.append((key, "NULL or empty event name"))
        return True
    if layout.event_filter is not None and name not in layout.event_filter:
        out.skipped += 1
        return True
    return False
