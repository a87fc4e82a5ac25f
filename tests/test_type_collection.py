"""Collection syncs end to end (SPEC §2.2, §4.7): the whole result replaces a collection's
contents through the App API, only when the result's fingerprint changes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from support import Project, emu_get, track_requests

pytestmark = pytest.mark.usefixtures("clean_request_log")

SYNC = """\
object: collection
collection: plans
query: SELECT plan_id, name, price, features FROM plans ORDER BY plan_id
"""

ROWS = [
    {"plan_id": 1, "name": "Free", "price": 0, "features": ["email"]},
    {"plan_id": 2, "name": "Pro", "price": 49.5, "features": ["email", "sms"]},
    {"plan_id": 3, "name": "Team", "price": 99, "features": {"seats": 10}},
]


LOG_BODIES = True  # the emulator keeps request bodies, to check what was sent


def plans_table(project: Project, rows: list[dict[str, Any]]) -> None:
    project.sql(
        "CREATE OR REPLACE TABLE plans "
        "(plan_id INTEGER, name VARCHAR, price DECIMAL(8, 2), features JSON)"
    )
    for row in rows:
        features = json.dumps(row["features"]).replace("'", "''")
        project.sql(
            f"INSERT INTO plans VALUES ({row['plan_id']}, '{row['name']}', {row['price']}, "
            f"'{features}')"
        )


def collections(project: Project) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in emu_get(project.emulator, "collections")}


def calls(project: Project, since: int) -> list[tuple[str, str, Any]]:
    return [(r["method"], r["path"], r["body"]) for r in track_requests(project.emulator)[since:]]


def test_first_run_creates_the_collection_and_a_change_replaces_it_whole(project: Project) -> None:
    plans_table(project, ROWS)
    project.write_sync("plans", SYNC)
    plan = project.json("plan", "plans")["syncs"][0]
    assert (plan["object"], plan["behavior"]) == ("collection", "replace")
    assert plan["counts"] == {
        "add": 1,
        "update": 0,
        "remove": 0,
        "unchanged": 0,
        "invalid": 0,
        "skipped": 0,
    }
    assert [s["key"] for s in plan["samples"]["add"]] == ["plans"]
    assert track_requests(project.emulator) == []  # plan looks nothing up for a collection

    first = project.run_json("plans")
    assert first["exit_code"] == 0 and first["syncs"][0]["counts"]["sent"] == 1
    assert calls(project, 0) == [
        ("GET", "/v1/collections", None),
        ("POST", "/v1/collections", {"name": "plans", "data": ROWS}),
    ]
    created = collections(project)["plans"]
    assert created["data"] == ROWS and created["rows"] == 3

    before = len(track_requests(project.emulator))
    again = project.run_json("plans")
    assert again["syncs"][0]["counts"]["planned"] == 0
    assert len(track_requests(project.emulator)) == before
    assert project.json("plan", "plans")["syncs"][0]["counts"]["unchanged"] == 1

    project.sql("UPDATE plans SET price = 59 WHERE plan_id = 2")
    plan = project.json("plan", "plans")["syncs"][0]
    assert (plan["counts"]["update"], plan["counts"]["add"]) == (1, 0)
    changed = [ROWS[0], {**ROWS[1], "price": 59}, ROWS[2]]
    result = project.run_json("plans")
    assert result["exit_code"] == 0 and result["syncs"][0]["counts"]["sent"] == 1
    assert calls(project, before) == [
        ("GET", "/v1/collections", None),
        ("PUT", f"/v1/collections/{created['id']}", {"data": changed}),
    ]
    replaced = collections(project)
    assert list(replaced) == ["plans"] and replaced["plans"]["id"] == created["id"]
    assert replaced["plans"]["data"] == changed


def test_an_existing_collection_of_that_name_is_replaced_not_duplicated(project: Project) -> None:
    code, _ = project.cli(
        "request", "POST", "/v1/collections", "--data", '{"name": "plans", "data": [{"old": 1}]}'
    )
    assert code == 0
    existing = collections(project)["plans"]["id"]
    plans_table(project, ROWS[:2])
    project.write_sync("plans", SYNC)
    assert project.run_json("plans")["exit_code"] == 0
    assert [(r["method"], r["path"]) for r in track_requests(project.emulator)[1:]] == [
        ("GET", "/v1/collections"),
        ("PUT", f"/v1/collections/{existing}"),
    ]
    assert collections(project)["plans"]["data"] == ROWS[:2]


def test_an_empty_result_stops_the_run_unless_removals_are_allowed(project: Project) -> None:
    plans_table(project, ROWS)
    project.write_sync("plans", SYNC)
    project.run_json("plans")
    plans_table(project, [])
    plan = project.json("plan", "plans")["syncs"][0]
    assert plan["guard"]["would_trip"] is True and "no rows" in plan["guard"]["reason"]
    before = project.run_stopped_by_guard("plans")
    assert collections(project)["plans"]["data"] == ROWS

    allowed = project.run_json("plans", "--allow-removals")
    assert allowed["exit_code"] == 0 and allowed["syncs"][0]["counts"]["sent"] == 1
    assert [r["body"] for r in track_requests(project.emulator)[before:]] == [None, {"data": []}]
    assert collections(project)["plans"]["data"] == []


def test_a_row_over_10_kb_is_rejected_locally_and_retried_once_fixed(project: Project) -> None:
    project.sql("CREATE TABLE plans (plan_id INTEGER, blob VARCHAR)")
    # {"plan_id":1,"blob":"…"} is 23 bytes of compact JSON around the text.
    project.sql("INSERT INTO plans VALUES (1, repeat('x', 10000 - 23)), (2, repeat('y', 10))")
    project.write_sync(
        "plans", "object: collection\ncollection: plans\nquery: SELECT * FROM plans ORDER BY 1\n"
    )
    at_limit = project.run_json("plans")
    assert at_limit["exit_code"] == 0  # exactly 10,000 bytes is allowed
    assert len(collections(project)["plans"]["data"][0]["blob"]) == 10000 - 23

    project.sql("UPDATE plans SET blob = blob || 'é' WHERE plan_id = 1")  # 2 more bytes of UTF-8
    before = len(track_requests(project.emulator))
    over = project.run_json("plans")
    assert over["exit_code"] == 6
    assert over["syncs"][0]["counts"]["rejected"] == 1
    assert len(track_requests(project.emulator)) == before  # never sent
    errors = project.json("errors", "plans")["errors"]
    assert [(e["key"], e["kind"]) for e in errors] == [("plans", "rejected")]
    assert "row 1 is 10,002 bytes" in errors[0]["reason"]
    assert collections(project)["plans"]["data"][0]["blob"].endswith("x")

    project.sql("UPDATE plans SET blob = 'short' WHERE plan_id = 1")
    fixed = project.run_json("plans")
    assert fixed["exit_code"] == 0 and fixed["syncs"][0]["counts"]["sent"] == 1
    assert collections(project)["plans"]["data"][0] == {"plan_id": 1, "blob": "short"}
    assert project.json("errors", "plans")["errors"] == []
