"""The state schema's forward migrations (`engine.state.StateStore.migrate`): `MIGRATIONS[n]`
takes a store from version n to n + 1, in the transaction that records the new version."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from engine.pgjson import respelled
from engine.state import RUN_EXTRAS, budget, cursors, plan, runs, snapshot, staging


def _add_source_hashes(conn: Connection) -> None:
    """1 → 2: snapshots remember each row's source hash; staging and plan (scratch) are remade."""
    conn.execute(sa.text("ALTER TABLE cio_sync_snapshot ADD COLUMN source BIGINT"))
    for table in (staging, plan):
        table.drop(conn, checkfirst=True)
        table.create(conn)


def _add_budgets_and_cursors(conn: Connection) -> None:
    """4 → 5: the shared request budget, incremental cursors, and runs that record what they read
    (rows, full or incremental, the cursor range) and the lowest request rate they used."""
    for column in RUN_EXTRAS:  # IF NOT EXISTS: PostgreSQL and DuckDB both take it
        kind = column.type.compile(conn.dialect)
        conn.execute(
            sa.text(f"ALTER TABLE {runs.name} ADD COLUMN IF NOT EXISTS {column.name} {kind}")
        )
    for table in (budget, cursors):
        table.create(conn, checkfirst=True)


def _add_lifecycle(conn: Connection) -> None:
    """2 → 3: runs record their kind and the definition they ran; `cio_sync_states` (the
    lifecycle, created by `create_all`) starts empty: a sync without a row is active or
    disabled as its file says."""
    for column in ("kind VARCHAR DEFAULT 'run'", "definition VARCHAR"):
        conn.execute(sa.text(f"ALTER TABLE cio_sync_runs ADD COLUMN IF NOT EXISTS {column}"))


def _add_rekeys(conn: Connection) -> None:
    """3 → 4: a plan row names a rekey's old key (`prior`); the plan (scratch) is remade."""
    plan.drop(conn, checkfirst=True)
    plan.create(conn)


# records encoded by SQL: DuckDB's JSON writer's spelling; PostgreSQL's (`engine.pgjson`); else
# "orjson-1", records encoded in Python
FINGERPRINT_SCHEMES = {"duckdb": "json-sql-1", "postgresql": "json-sql-pg-1"}


def scheme(conn: Connection) -> str:
    """How the snapshot's fingerprints are computed (SPEC §4.9), recorded in `cio_sync_meta`."""
    return FINGERPRINT_SCHEMES.get(conn.dialect.name, "orjson-1")


COLLECTION_PAYLOAD = '{"a":{},"r":{"rows":['  # a collection's record: its fingerprint is a digest


def _fingerprint_in_sql(conn: Connection) -> None:
    """5 → 6: a DuckDB store's snapshot takes the fingerprint scheme of records encoded by SQL
    (`engine.sqlstage.FINGERPRINT_SCHEME`): each payload as DuckDB's JSON writer spells it
    (the same values; large and small doubles are written otherwise), and its md5. Nothing is
    resent: the next run computes the same fingerprints from the source. A collection keeps its
    digest, which Python still computes; source hashes are forgotten (a DuckDB store's rows
    are compared by SQL). A PostgreSQL store keeps the Python scheme."""
    if conn.dialect.name != "duckdb":
        return
    normal = sa.cast(sa.func.json(snapshot.c.payload), sa.String)
    conn.execute(
        sa.update(snapshot)
        .where(snapshot.c.payload.is_not(None), ~snapshot.c.payload.startswith(COLLECTION_PAYLOAD))
        .values(payload=normal, fingerprint=sa.func.md5(normal), source=None)
    )


def _unkey_on_duckdb(conn: Connection) -> None:
    """6 → 7: a DuckDB store's snapshot and plan lose their primary keys (`UNKEYED_ON_DUCKDB`):
    the plan (scratch) is remade, the snapshot copied into a table without one."""
    if conn.dialect.name != "duckdb":
        return
    plan.drop(conn, checkfirst=True)
    plan.create(conn)
    columns = ", ".join(f'"{column.name}"' for column in snapshot.columns)
    conn.exec_driver_sql("ALTER TABLE cio_sync_snapshot RENAME TO cio_sync_snapshot_keyed")
    snapshot.create(conn)
    conn.exec_driver_sql(
        f"INSERT INTO cio_sync_snapshot ({columns}) SELECT {columns} FROM cio_sync_snapshot_keyed"
    )
    conn.exec_driver_sql("DROP TABLE cio_sync_snapshot_keyed")


def _fingerprint_in_postgresql(conn: Connection) -> None:
    """7 → 8: a PostgreSQL store's snapshot takes the scheme of records encoded by its SQL,
    `json-sql-pg-1`: each payload respelled in SQL from the values it holds (`engine.pgjson`),
    and its md5. Nothing is resent: the next run computes the same fingerprints from the source.
    A collection keeps its digest; source hashes are forgotten (rows are compared by SQL). A
    DuckDB store is already on its SQL's scheme (5 → 6)."""
    if conn.dialect.name != "postgresql":
        return
    held = snapshot.c.payload.is_not(None) & ~snapshot.c.payload.startswith(COLLECTION_PAYLOAD)
    moved = (
        sa.select(
            snapshot.c.sync,
            snapshot.c.destination,
            snapshot.c.key,
            respelled(snapshot.c.payload).label("payload"),
        )
        .where(held)
        .subquery("moved")
    )
    conn.execute(
        sa.update(snapshot)
        .where(
            snapshot.c.sync == moved.c.sync,
            snapshot.c.destination == moved.c.destination,
            snapshot.c.key == moved.c.key,
        )
        .values(payload=moved.c.payload, fingerprint=sa.func.md5(moved.c.payload), source=None)
    )


MIGRATIONS: dict[int, Callable[[Connection], None]] = {  # n → n + 1
    1: _add_source_hashes,
    2: _add_lifecycle,
    3: _add_rekeys,
    4: _add_budgets_and_cursors,
    5: _fingerprint_in_sql,
    6: _unkey_on_duckdb,
    7: _fingerprint_in_postgresql,
}
