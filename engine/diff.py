"""The diff, in SQL run by the state database (SPEC §5), through SQLAlchemy Core.

Staged source records are compared with the snapshot of what was last delivered:

    add      staged key not in the snapshot (every staged key in a full run)
    update   staged key in the snapshot with another fingerprint (never for append-only events)
    remove   snapshot key not staged (mirror only, never in a full run)
    rekey    an add whose stable key (`PersonSync.stable_key`) the snapshot holds under a key no
             longer staged: the same record under a new key (its old key is `prior`, and it is
             not removed); only when the stable key names one record on each side

A row staged by its key alone (no fingerprint: the SQL that staged it found the snapshot holds
it unchanged, `engine.sqlstage.stage_statement`) is unchanged.
Duplicate keys are flagged in staging first: they are neither sent nor counted as absent, so a
record whose key became duplicated is reported, never removed (SPEC §4.5).

The plan numbers its operations (`seq`): adds, then updates (each in source order), then removes
(in key order). A planned row carries the snapshot's payload (`before`) whenever the snapshot held
its key. Acknowledgements name sequence numbers; `apply_acks` moves exactly those into the
snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from engine import explain
from engine.destination import PLAN_ROW_COLUMNS
from engine.state import plan, snapshot, snapshot_keyed, staging

OPS = ("add", "update", "remove")
REKEY = "rekey"


@dataclass(frozen=True)
class Scope:
    """Whose rows a statement touches: this invocation's work rows, this sync's snapshot."""

    run: str
    sync: str
    destination: str


@dataclass(frozen=True)
class PlanCounts:
    add: int = 0
    update: int = 0
    remove: int = 0
    unchanged: int = 0
    duplicates: int = 0
    snapshot_size: int = 0
    rekey: int = 0

    @property
    def planned(self) -> int:
        return self.add + self.update + self.remove + self.rekey


def _snap(scope: Scope) -> sa.Subquery:
    return (
        sa.select(snapshot.c.key, snapshot.c.fingerprint, snapshot.c.payload)
        .where(snapshot.c.sync == scope.sync, snapshot.c.destination == scope.destination)
        .subquery("snap")
    )


def mark_duplicates(conn: Connection, run: str) -> list[tuple[str, int]]:
    """Flag every staged row whose key occurs more than once; return (key, count) pairs."""
    shared = (
        sa.select(staging.c.key, sa.func.count().label("n"))
        .where(staging.c.run == run, staging.c.key.is_not(None))
        .group_by(staging.c.key)
        .having(sa.func.count() > 1)
    )
    found = [(row.key, row.n) for row in conn.execute(shared)]
    if found:
        keys = sa.select(shared.subquery().c.key)
        conn.execute(
            sa.update(staging).where(staging.c.run == run, staging.c.key.in_(keys)).values(dup=True)
        )
    return found


def build_plan(
    conn: Connection,
    scope: Scope,
    *,
    full: bool,
    append_only: bool,
    mirror: bool,
    rekey: bool = False,
    compared: bool = False,
) -> PlanCounts:
    """Write this run's plan rows and return the counts. `compared`: the rows were compared
    with the snapshot as they were staged (`engine.extract.Extracted.compared`)."""
    # encoded rows only: a row staged by its key alone (no fingerprint) is unchanged
    encoded = sa.and_(
        staging.c.run == scope.run,
        sa.not_(staging.c.dup),
        staging.c.key.is_not(None),
        staging.c.fingerprint.is_not(None),
    )
    any_encoded = bool(conn.execute(sa.select(sa.exists().where(encoded))).scalar())
    if any_encoded:
        snap = _snap(scope)
        empty = snapshot_size(conn, scope) == 0
        if ((full and not append_only) or empty) and _dense(conn, encoded):
            _copy_adds(conn, scope, encoded, held=not empty)
        elif (full and not append_only) or empty:
            picked = sa.select(staging.c.ord).where(encoded)
            _insert_ops(conn, scope, "add", picked, offset=0, held=not empty)
        else:
            held = sa.select(snapshot.c.key).where(
                snapshot.c.sync == scope.sync,
                snapshot.c.destination == scope.destination,
                snapshot.c.key == staging.c.key,
            )
            adds = sa.select(staging.c.ord).where(encoded, ~sa.exists(held))
            _insert_ops(conn, scope, "add", adds, offset=0, held=False)  # none is held
        if not (full or append_only or empty):
            updates = (
                sa.select(staging.c.ord)
                .select_from(staging.join(snap, snap.c.key == staging.c.key))
                .where(encoded, snap.c.fingerprint != staging.c.fingerprint)
            )
            offset = planned(conn, scope.run)
            _insert_ops(conn, scope, "update", updates, offset=offset, held=True)
        if rekey and not full:
            _mark_rekeys(conn, scope)
    if mirror and not full:
        _insert_removes(conn, scope, offset=planned(conn, scope.run))
    by_op: dict[str, int] = dict(
        conn.execute(
            sa.select(plan.c.op, sa.func.count()).where(plan.c.run == scope.run).group_by(plan.c.op)
        ).all()
    )
    return PlanCounts(
        add=by_op.get("add", 0),
        update=by_op.get("update", 0),
        remove=by_op.get("remove", 0),
        rekey=by_op.get(REKEY, 0),
        unchanged=_count_unchanged(
            conn, scope, full=full, append_only=append_only, encoded=any_encoded, compared=compared
        ),
        duplicates=_count(conn, sa.and_(staging.c.run == scope.run, staging.c.dup)),
        snapshot_size=snapshot_size(conn, scope),
    )


def plan_whole(conn: Connection, scope: Scope, key: str, digest: str, *, full: bool) -> PlanCounts:
    """Plan a whole-result record (a collection): one operation carrying every staged row, when
    the result's fingerprint differs from the snapshot's (or in a full run)."""
    snap = _snap(scope)
    before = conn.execute(
        sa.select(snap.c.fingerprint, snap.c.payload).where(snap.c.key == key)
    ).first()
    if before is not None and before.fingerprint == digest and not full:
        return PlanCounts(unchanged=1, snapshot_size=1)
    rows = conn.execute(
        sa.select(staging.c.payload).where(staging.c.run == scope.run).order_by(staging.c.ord)
    ).scalars()
    payload = '{"a":{},"r":{"rows":[' + ",".join(rows) + "]}}"
    op = "add" if before is None or full else "update"
    conn.execute(
        sa.insert(plan).values(
            run=scope.run,
            seq=1,
            op=op,
            key=key,
            fingerprint=digest,
            payload=payload,
            before=before.payload if before is not None else None,
        )
    )
    return PlanCounts(
        add=int(op == "add"), update=int(op == "update"), snapshot_size=0 if before is None else 1
    )


def planned(conn: Connection, run: str) -> int:
    """How many operations the run's plan holds."""
    return conn.execute(sa.select(sa.func.count()).where(plan.c.run == run)).scalar() or 0


def _dense(conn: Connection, encoded: sa.ColumnElement[bool]) -> bool:
    """Whether the encoded rows' staging numbers run 0, 1, 2... without a gap (no row was set
    aside as a duplicate or staged by its key alone): the plan can then number them without a
    window."""
    count, lowest, highest = conn.execute(
        sa.select(sa.func.count(), sa.func.min(staging.c.ord), sa.func.max(staging.c.ord)).where(
            encoded
        )
    ).one()
    return bool(count) and lowest == 0 and highest == count - 1


def _insert_ops(
    conn: Connection, scope: Scope, op: str, picked: sa.Select[Any], offset: int, *, held: bool
) -> None:
    """Plan one operation for each staged row whose `ord` `picked` selects, numbered in source
    order after `offset`, with the snapshot's payload when it holds the key (`held`: it may;
    else no join looks). The numbering runs over the narrow `ord` column alone: a window over
    whole rows would sort their payloads."""
    chosen = picked.subquery("picked")
    numbered = sa.select(
        chosen.c.ord, (sa.func.row_number().over(order_by=chosen.c.ord) + offset).label("seq")
    ).subquery("numbered")
    snap = _snap(scope)
    rows_of = staging.join(
        numbered, sa.and_(staging.c.run == scope.run, staging.c.ord == numbered.c.ord)
    )
    rows = sa.select(
        sa.literal(scope.run),
        numbered.c.seq,
        sa.literal(op),
        staging.c.key,
        staging.c.fingerprint,
        staging.c.payload,
        snap.c.payload if held else sa.null(),
    ).select_from(rows_of.outerjoin(snap, snap.c.key == staging.c.key) if held else rows_of)
    columns = ["run", "seq", "op", "key", "fingerprint", "payload", "before"]
    conn.execute(sa.insert(plan).from_select(columns, rows))


def _copy_adds(conn: Connection, scope: Scope, encoded: sa.ColumnElement[bool], held: bool) -> None:
    """Plan every encoded row as an add, when their staging numbers are dense (`_dense`): each
    row's number is its seq, so the plan is a copy of staging, without a window or a join
    (`held`: the snapshot holds records, whose payloads the adds carry as `before`)."""
    snap = _snap(scope)
    rows = sa.select(
        sa.literal(scope.run),
        staging.c.ord + 1,
        sa.literal("add"),
        staging.c.key,
        staging.c.fingerprint,
        staging.c.payload,
        snap.c.payload if held else sa.null(),
    ).where(encoded)
    if held:
        rows = rows.select_from(staging.outerjoin(snap, snap.c.key == staging.c.key))
    columns = ["run", "seq", "op", "key", "fingerprint", "payload", "before"]
    conn.execute(sa.insert(plan).from_select(columns, rows))


def _stable(conn: Connection, payload: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """A payload's stable key (its role "stable") as text, by the dialect's JSON functions."""
    if conn.dialect.name == "postgresql":
        stable: sa.ColumnElement[Any] = sa.cast(payload, postgresql.JSONB)[("r", "stable")].astext
        return stable
    return sa.func.json_extract_string(payload, "$.r.stable")  # DuckDB


def _mark_rekeys(conn: Connection, scope: Scope) -> None:
    """Turn into rekeys the adds whose stable key the snapshot holds under a key the source no
    longer has; only a stable key held by one add and one such snapshot record is paired."""
    adds = (
        sa.select(plan.c.seq, _stable(conn, plan.c.payload).label("stable"))
        .where(plan.c.run == scope.run, plan.c.op == "add")
        .subquery("adds")
    )
    snap = _snap(scope)
    staged = sa.select(staging.c.key).where(staging.c.run == scope.run, staging.c.key == snap.c.key)
    gone = (
        sa.select(snap.c.key, snap.c.payload, _stable(conn, snap.c.payload).label("stable"))
        .where(~sa.exists(staged))
        .subquery("gone")
    )
    lone_adds = sa.select(adds.c.stable).group_by(adds.c.stable).having(sa.func.count() == 1)
    lone_gone = sa.select(gone.c.stable).group_by(gone.c.stable).having(sa.func.count() == 1)
    pairs = (
        sa.select(adds.c.seq, gone.c.key, gone.c.payload)
        .select_from(adds.join(gone, adds.c.stable == gone.c.stable))
        .where(adds.c.stable.in_(lone_adds), gone.c.stable.in_(lone_gone))
        .subquery("pairs")
    )
    conn.execute(
        sa.update(plan)
        .where(plan.c.run == scope.run, plan.c.seq == pairs.c.seq)
        .values(op=REKEY, prior=pairs.c.key, before=pairs.c.payload)
    )


def _insert_removes(conn: Connection, scope: Scope, offset: int) -> None:
    snap = _snap(scope)
    staged = sa.select(staging.c.key).where(staging.c.run == scope.run, staging.c.key == snap.c.key)
    rekeyed = sa.select(plan.c.prior).where(plan.c.run == scope.run, plan.c.prior == snap.c.key)
    seq = sa.func.row_number().over(order_by=snap.c.key) + offset
    rows = sa.select(
        sa.literal(scope.run),
        seq,
        sa.literal("remove"),
        snap.c.key,
        snap.c.fingerprint,
        sa.null(),
        snap.c.payload,
    ).where(~sa.exists(staged), ~sa.exists(rekeyed))
    columns = ["run", "seq", "op", "key", "fingerprint", "payload", "before"]
    conn.execute(sa.insert(plan).from_select(columns, rows))


def plan_teardown(conn: Connection, scope: Scope) -> PlanCounts:
    """Plan the removal of every record the snapshot holds: what a mirror to an empty source
    would remove (`sync teardown`)."""
    _insert_removes(conn, scope, offset=0)  # nothing is staged for this run: every key goes
    size = snapshot_size(conn, scope)
    return PlanCounts(remove=size, snapshot_size=size)


def _count(conn: Connection, where: sa.ColumnElement[bool]) -> int:
    return conn.execute(sa.select(sa.func.count()).select_from(staging).where(where)).scalar() or 0


def _count_unchanged(
    conn: Connection,
    scope: Scope,
    *,
    full: bool,
    append_only: bool,
    encoded: bool,
    compared: bool,
) -> int:
    """Rows staged by their key alone (`compared` by SQL as they were staged, and found as the
    snapshot holds them), plus encoded rows the snapshot holds as they are (for events: at all).
    The second count's join with the snapshot (0.1 s at 1M people) is skipped when no row was
    `encoded`, or when compared rows were (each is then new or changed), but for events."""
    if full and not append_only:
        return 0
    staged = sa.and_(staging.c.run == scope.run, sa.not_(staging.c.dup))
    by_key = _count(conn, sa.and_(staged, staging.c.fingerprint.is_(None)))
    if not encoded or (compared and not append_only):
        return by_key
    snap = _snap(scope)
    # a delivered event stays delivered whatever its columns say now
    same = sa.true() if append_only else snap.c.fingerprint == staging.c.fingerprint
    query = (
        sa.select(sa.func.count())
        .select_from(staging.join(snap, snap.c.key == staging.c.key))
        .where(staged, staging.c.fingerprint.is_not(None), same)
    )
    return by_key + (conn.execute(query).scalar() or 0)


def snapshot_size(conn: Connection, scope: Scope) -> int:
    query = (
        sa.select(sa.func.count())
        .select_from(snapshot)
        .where(snapshot.c.sync == scope.sync, snapshot.c.destination == scope.destination)
    )
    return conn.execute(query).scalar() or 0


def read_plan(conn: Connection, run: str, after: int, limit: int) -> Sequence[Any]:
    """The plan rows numbered after+1 .. after+limit (sequence numbers are dense, so a range
    lets DuckDB skip row groups instead of sorting the whole plan)."""
    query = (
        sa.select(*(plan.c[name] for name in PLAN_ROW_COLUMNS))
        .where(plan.c.run == run, plan.c.seq.between(after + 1, after + limit))
        .order_by(plan.c.seq)
    )
    return conn.execute(query).fetchall()  # one fetch: DuckDB's row-wise fetch is slow


def plan_rows(run: str) -> sa.Subquery:
    """A run's plan rows in the range `read_built` binds: what a destination's operation SQL
    reads (`Destination.operation_sql`)."""
    low, high = sa.bindparam("low", type_=sa.BigInteger), sa.bindparam("high", type_=sa.BigInteger)
    return (
        sa.select(*(plan.c[name] for name in PLAN_ROW_COLUMNS))
        .where(plan.c.run == run, plan.c.seq.between(low, high))
        .subquery("rows")
    )


def read_built(
    conn: Connection, rows: sa.Subquery, operations: sa.Select[Any], after: int, limit: int
) -> tuple[pa.Table, Sequence[Any]]:
    """The plan rows after+1 .. after+limit of `rows` (`plan_rows`) with their `operations` (a
    destination's SELECT of seq, operation over them) computed by the state database: a table
    (seq, operation as bytes) of the rows it built, and whole rows (`read_plan`'s) for those where it
    gave NULL, read by a second query only when there are any (joining the rows back to their
    operations would cost more than building them). DuckDB hands both over as Arrow columns: no
    Python object is made for a built row but its bytes."""
    bounds = {"low": after + 1, "high": after + limit}
    query = _built(operations, bounds)
    if conn.dialect.name == "duckdb":
        table = _arrow(conn, query)
    else:
        fetched = conn.execute(query).fetchall()
        table = pa.table(
            {
                "seq": pa.array([seq for seq, _ in fetched], pa.int64()),
                "operation": pa.array([text for _, text in fetched], pa.string()),
            }
        )
    settled = pc.is_valid(table.column("operation"))
    ready = table.filter(settled)
    done = pa.table(
        {"seq": ready.column("seq"), "operation": ready.column("operation").cast(pa.binary())}
    )
    left = table.filter(pc.invert(settled)).column("seq").to_pylist()
    if not left:
        return done, []
    records = sa.select(*(rows.c[name] for name in PLAN_ROW_COLUMNS)).order_by(rows.c.seq)
    if conn.dialect.name != "duckdb":
        return done, conn.execute(records.where(rows.c.seq.in_(left)).params(bounds)).fetchall()
    # the chunk's range, filtered here: a list of thousands of seqs costs DuckDB more to bind
    table = _arrow(conn, records.params(bounds))
    table = table.filter(pc.is_in(table.column("seq"), value_set=pa.array(left, pa.int64())))
    columns = [table.column(name).to_pylist() for name in PLAN_ROW_COLUMNS]
    return done, list(zip(*columns, strict=True))


def _built(operations: sa.Select[Any], bounds: dict[str, int]) -> sa.Select[Any]:
    built = operations.params(bounds).subquery("operations")
    return sa.select(built.c.seq, built.c.operation).order_by(built.c.seq)


def explain_built(conn: Connection, operations: sa.Select[Any], limit: int) -> None:
    """Note for `sync plan --explain` the query by which a run reads its first chunk of built
    operations (`read_built`): a plan runs everything up to delivery, but not that."""
    url = conn.engine.url
    compiled = _built(operations, {"low": 1, "high": limit}).compile(
        conn, compile_kwargs={"literal_binds": True}
    )
    explain.note(f"{url.get_backend_name()} {url.database or ''}".strip(), str(compiled))


def _arrow(conn: Connection, query: sa.Select[Any]) -> pa.Table:
    """A DuckDB query's result as one Arrow table (its row-wise fetch is slow)."""
    raw: Any = conn.connection.driver_connection
    compiled = query.compile(conn, compile_kwargs={"literal_binds": True})
    return raw.sql(str(compiled)).to_arrow_table()


def sample_plan(conn: Connection, run: str, op: str, limit: int) -> Sequence[Any]:
    query = (
        sa.select(plan.c.seq, plan.c.op, plan.c.key, plan.c.payload, plan.c.before, plan.c.prior)
        .where(plan.c.run == run, plan.c.op == op)
        .order_by(plan.c.seq)
        .limit(limit)
    )
    return conn.execute(query).fetchall()  # one fetch: DuckDB's row-wise fetch is slow


def seq_ranges(seqs: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted sequence numbers folded into inclusive (low, high) runs."""
    ranges: list[tuple[int, int]] = []
    for seq in sorted(seqs):
        if ranges and seq == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], seq)
        else:
            ranges.append((seq, seq))
    return ranges


def _seq_filter(run: str, seqs: Sequence[int]) -> sa.ColumnElement[bool]:
    ranges = [plan.c.seq.between(low, high) for low, high in seq_ranges(seqs)]
    return sa.and_(plan.c.run == run, sa.or_(*ranges))


def apply_acks(conn: Connection, scope: Scope, seqs: Sequence[int]) -> None:
    """Move acknowledged plan rows into the snapshot: adds/updates replace, removes delete, a
    rekey replaces its old key (`prior`) with its new one.

    Where the snapshot has a primary key (PostgreSQL) the replacing is one INSERT ... ON
    CONFLICT DO UPDATE, which finds held keys through it; on DuckDB, which keeps the snapshot
    without one (`engine.state.UNKEYED_ON_DUCKDB`), the keys an update or a removal replaces
    are deleted first (one hash join over the snapshot), then the rows inserted."""
    if not seqs:
        return
    acked = _seq_filter(scope.run, seqs)
    upserts = snapshot_keyed(conn)
    leaving = sa.or_(plan.c.op == "remove", plan.c.prior.is_not(None))
    if not upserts:  # replaced by a delete, then an insert
        leaving = sa.or_(leaving, plan.c.before.is_not(None), plan.c.op != "add")
    if conn.execute(sa.select(sa.exists().where(acked, leaving))).scalar():
        keys = sa.union(
            sa.select(plan.c.key).where(acked, plan.c.op == "remove" if upserts else leaving),
            sa.select(plan.c.prior).where(acked, plan.c.prior.is_not(None)),
        )
        conn.execute(
            sa.delete(snapshot).where(
                snapshot.c.sync == scope.sync,
                snapshot.c.destination == scope.destination,
                snapshot.c.key.in_(keys),
            )
        )
    kept = sa.select(
        sa.literal(scope.sync),
        sa.literal(scope.destination),
        plan.c.key,
        plan.c.fingerprint,
        plan.c.payload,
    ).where(acked, plan.c.op != "remove")
    columns = ["sync", "destination", "key", "fingerprint", "payload"]
    if not upserts:
        conn.execute(sa.insert(snapshot).from_select(columns, kept))
        return
    insert = postgresql.insert(snapshot).from_select(columns, kept)
    replaced = {name: insert.excluded[name] for name in ("fingerprint", "payload")}
    primary = [snapshot.c.sync, snapshot.c.destination, snapshot.c.key]
    conn.execute(insert.on_conflict_do_update(index_elements=primary, set_=replaced))


def refresh_statistics(conn: Connection) -> None:
    """PostgreSQL plans the diff's joins from table statistics; freshly staged rows have none,
    and a planner that takes a million-row staging table for an empty one picks nested loops
    that run for hours. ANALYZE samples them (well under a second for a million rows)."""
    if conn.dialect.name == "postgresql":
        for table in (staging, snapshot):
            conn.exec_driver_sql(f"ANALYZE {table.name}")


def clear_work(conn: Connection, run: str) -> None:
    conn.execute(sa.delete(staging).where(staging.c.run == run))
    conn.execute(sa.delete(plan).where(plan.c.run == run))
