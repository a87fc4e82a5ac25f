"""Teams benchmark (SPEC §7.2, §7.3): an incremental rerun beside a full one, and what the shared
request budget costs one process.

1. Incremental: N people (default 1,000,000) with `updated_at` in a DuckDB warehouse, synced by
   two syncs of the same table to the emulator (in memory, its own process): `full` reads the
   whole table, `incremental` reads past its mark. Then 1% of the rows change, and each sync's
   rerun is timed as a whole `sync run` process, alternately, for --runs rounds (each round
   changes another 1%). Printed beside them, measured in the same run: the floor of the
   requests (requests / rate_limit) and DuckDB reading the changed rows alone.
2. Budget overhead: one process sends --requests one-operation batches to the emulator through
   the client, with no shared budget and with the budget kept in PostgreSQL
   ($SYNC_TEST_PG_URL, a schema of its own), at a rate limit it cannot reach; printed: request
   starts per second of each, and their ratio.

    .venv/bin/python tests/benchmarks/teams.py [--rows 1000000] [--runs 3] [--requests 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import sqlalchemy as sa
from engine_people import BIN, ENGINE_ENV, byte_compile
from receivers import Emulator

from connectors.customerio.client import CustomerIOClient, Op
from connectors.customerio.policy import ClientSettings
from engine.budget import Budgets, DatabaseLedger
from engine.destination import DeliveryStats, Outcome
from engine.state import StateStore

PG_URL = os.environ.get("SYNC_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
RATE = 150
SYNC = """\
object: person
query: SELECT id, email, plan, updated_at FROM people
"""


def make_warehouse(path: Path, rows: int) -> None:
    with duckdb.connect(str(path)) as conn:
        conn.execute(
            f"""CREATE OR REPLACE TABLE people AS SELECT 'u' || i AS id,
                'user' || i || '@example.com' AS email, 'free' AS plan,
                TIMESTAMP '2026-01-01' + to_seconds(i % 86400) AS updated_at
            FROM range({rows}) t(i)"""
        )


def change_one_percent(path: Path, round_: int) -> tuple[int, float]:
    """1% of the rows get a new plan and a fresh `updated_at`; the changed count and how long
    DuckDB takes to read them (the floor of an incremental read)."""
    with duckdb.connect(str(path)) as conn:
        conn.execute(
            f"""UPDATE people SET plan = 'pro{round_}',
                updated_at = TIMESTAMP '2026-02-01' + to_seconds({round_})
            WHERE hash(id || '{round_}') % 100 = 0"""
        )
        started = time.perf_counter()
        changed = conn.execute(
            f"SELECT count(*) FROM people WHERE updated_at >= TIMESTAMP '2026-02-01' + to_seconds({round_})"
        ).fetchone()
        return int(changed[0]) if changed else 0, time.perf_counter() - started


def write_project(root: Path, url: str, rate_limit: int = RATE) -> None:
    (root / "syncs").mkdir(parents=True, exist_ok=True)
    document = {
        "state": "duckdb:///.sync/state.duckdb",
        "sources": {"warehouse": {"url": "duckdb:///warehouse.duckdb"}},
        "workspaces": {
            "emu": {
                "site_id": "emulator-site",
                "track_api_key": "emulator-track-key",
                "app_api_key": "emulator-app-key",
                "track_url": url,
                "app_url": url,
                "rate_limit": rate_limit,
            }
        },
    }
    (root / "syncs" / "project.yml").write_text(json.dumps(document))
    (root / "syncs" / "full.yml").write_text(SYNC)
    (root / "syncs" / "incremental.yml").write_text(
        SYNC + "incremental:\n  cursor: updated_at\n  lookback: 1m\n"
    )


def run(root: Path, name: str) -> tuple[float, dict[str, object]]:
    started = time.perf_counter()
    done = subprocess.run(
        [str(BIN / "sync"), "--project", str(root), "run", name, "--json"],
        env=ENGINE_ENV,
        capture_output=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(done.stderr.decode()[-2000:])
    result: dict[str, object] = json.loads(done.stdout)["syncs"][0]
    return wall, result


def incremental(rows: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="cio-sync-teams-") as tmp:
        root = Path(tmp)
        emulator = Emulator()
        try:
            make_warehouse(root / "warehouse.duckdb", rows)
            write_project(root, emulator.url)
            for name in ("full", "incremental"):
                run(root, name)
            full, inc, floors = [], [], []
            for round_ in range(1, rounds + 1):
                changed, read_s = change_one_percent(root / "warehouse.duckdb", round_)
                full_s, full_result = run(root, "full")
                inc_s, inc_result = run(root, "incremental")
                assert full_result["counts"] == inc_result["counts"], (full_result, inc_result)
                full.append(full_s)
                inc.append(inc_s)
                requests = -(-changed // 1000)
                floors.append(requests / RATE + read_s)
                print(
                    f"round {round_}: {changed:,} changed; full rerun {full_s:.2f} s "
                    f"(read {full_result['rows_read']:,} rows), incremental {inc_s:.2f} s "
                    f"(read {inc_result['rows_read']:,}); floor {floors[-1]:.2f} s"
                )
        finally:
            emulator.stop()
    print(
        f"incremental rerun: min {min(inc):.2f} s, median {statistics.median(inc):.2f} s; "
        f"full rerun: min {min(full):.2f} s, median {statistics.median(full):.2f} s; "
        f"full / incremental (median) {statistics.median(full) / statistics.median(inc):.1f}x"
    )


class _Sink:
    async def __call__(self, outcome: Outcome) -> None:
        return None


async def _send(url: str, count: int, budgets: Budgets | None) -> float:
    settings = ClientSettings(
        track_url=url,
        app_url=url,
        site_id="emulator-site",
        track_api_key="emulator-track-key",
        rate_limit=100_000,
        max_batch_ops=1,
        concurrency=8,
    )
    budget_for = None
    if budgets is not None:
        budget_for = lambda api, limit: budgets.budget("bench", api, limit)  # noqa: E731
    ops = [Op(i, {"type": "person", "action": "identify", "identifiers": {"id": f"b{i}"}}) for i in range(count)]
    async with CustomerIOClient(settings, budget_for=budget_for) as client:
        started = time.perf_counter()
        await client.send_batches(ops, _Sink(), DeliveryStats())
        return count / (time.perf_counter() - started)


def budget_overhead(requests: int, rounds: int) -> None:
    schema = f"cio_sync_bench_{os.getpid()}"
    admin = sa.create_engine(PG_URL, poolclass=sa.pool.NullPool)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    url = str(sa.make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"}))
    store = StateStore(url)
    emulator = Emulator()
    try:
        store.migrate()
        alone, shared = [], []
        for _ in range(rounds):
            alone.append(asyncio.run(_send(emulator.url, requests, None)))
            shared.append(
                asyncio.run(_send(emulator.url, requests, Budgets(DatabaseLedger(store))))
            )
    finally:
        emulator.stop()
        store.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()
    print(
        f"request starts/s, one process: without a shared budget median {statistics.median(alone):,.0f} "
        f"(min {min(alone):,.0f}); with the PostgreSQL budget median {statistics.median(shared):,.0f} "
        f"(min {min(shared):,.0f}); ratio {statistics.median(shared) / statistics.median(alone):.2f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    print(f"load: {os.getloadavg()[0]:.2f} (1 min); rows {args.rows:,}; rounds {args.runs}")
    byte_compile()
    incremental(args.rows, args.runs)
    budget_overhead(args.requests, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
