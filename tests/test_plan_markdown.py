"""`sync plan --format markdown` (SPEC §7.5): the plan as a review artifact, with counts, the
guard's verdict, samples with before/after, and the exact calls a run would make."""

from __future__ import annotations

import json
import re

from support import PEOPLE_SYNC, Project, people_table, track_requests

LOG_BODIES = True  # the emulator keeps request bodies: the plan's operations are compared with them

ROWS = [(f"u{i}", f"{i}@x.io", "free", i) for i in range(10)]


def changed_mirror(project: Project) -> None:
    """A delivered person mirror, then one row added, one changed and three removed."""
    people_table(project, ROWS)
    project.write_sync(
        "people", PEOPLE_SYNC.format(behavior="mirror") + "guard:\n  max_removals: 2\n"
    )
    assert project.run_json("people")["exit_code"] == 0
    project.sql("DELETE FROM people WHERE id IN ('u1', 'u2', 'u3')")
    project.sql("UPDATE people SET plan = 'pro|team' WHERE id = 'u4'")
    project.sql("INSERT INTO people VALUES ('u99', 'new@x.io', 'team', NULL)")


def markdown(project: Project, *names: str) -> str:
    code, output = project.cli("plan", *names, "--format", "markdown")
    assert code == 0, project.stderr
    return output


def section(text: str, heading: str) -> str:
    """The lines under a Markdown heading, to the next heading of any level."""
    start = text.index(heading + "\n") + len(heading) + 1
    following = re.search(r"^#{1,6} ", text[start:], re.M)
    return text[start : start + following.start()] if following else text[start:]


def shown_operations(text: str) -> list[dict]:
    """The operations of the plan's ```json blocks."""
    blocks = re.findall(r"```json\n(.*?)\n\s*```", text, re.S)
    return [json.loads(line) for block in blocks for line in block.splitlines()]


def test_the_markdown_plan_holds_counts_guard_and_before_after(duck_project: Project) -> None:
    project = duck_project
    changed_mirror(project)
    before = len(track_requests(project.emulator))
    text = markdown(project, "people")
    assert len(track_requests(project.emulator)) == before  # a plan sends nothing
    assert text.startswith("# cio-sync plan\n")
    people = section(text, "## `people`")
    assert "| add | update | remove | unchanged | invalid | skipped |" in people
    assert "| 1 | 1 | 3 | 6 | 0 | 0 |" in people
    assert "**Guard: would stop the run (exit 3).** 3 removals exceed" in people
    update = section(text, "#### update: 1 of 1")
    assert '| `u4` | `plan` | `"free"` | `"pro\\|team"` |' in update  # a pipe is escaped
    add = section(text, "#### add: 1 of 1")
    assert '| `u99` | `plan` |  | `"team"` |' in add
    removed = section(text, "#### remove (delete): 3 of 3")
    assert '| `u1` | `plan` | `"free"` |  |' in removed  # what was last delivered
    calls = section(text, "### Calls it would make")
    assert (
        "- 1 POST /api/v2/batch (Track API, at most 1,000 operations and 500,000 bytes a "
        "request) with 5 operations: 1 person identify (new), 1 person identify (changed "
        "attributes only), 3 person delete"
    ) in calls
    assert "_The guard would stop the run before any of these calls is made._" in calls


def test_the_operations_shown_are_the_ones_a_run_sends(duck_project: Project) -> None:
    project = duck_project
    changed_mirror(project)
    shown = shown_operations(markdown(project, "people"))
    before = len(track_requests(project.emulator))
    assert project.run_json("people", "--allow-removals")["exit_code"] == 0
    sent = [op for r in track_requests(project.emulator)[before:] for op in r["body"]["batch"]]
    key = lambda op: json.dumps(op, sort_keys=True)  # noqa: E731
    assert sorted(map(key, shown)) == sorted(map(key, sent))


def test_a_plan_within_its_guard_and_one_with_nothing_to_do(duck_project: Project) -> None:
    project = duck_project
    people_table(project, ROWS[:3])
    project.write_sync(
        "people", PEOPLE_SYNC.format(behavior="mirror") + "guard:\n  max_removals: 1\n"
    )
    project.run_json("people")
    project.sql("DELETE FROM people WHERE id = 'u2'")
    text = markdown(project, "people")
    assert "**Guard:** ok: 1 removal(s), at most 1 allowed." in text
    assert "| `people` | person | mirror | test | 0 | 0 | 1 | 2 | 0 | 0 | ok |" in text
    project.run_json("people")
    quiet = markdown(project, "people")
    assert "None: nothing changed." in quiet
    assert "No record changes." in quiet


def test_several_syncs_get_a_summary_row_each(duck_project: Project) -> None:
    project = duck_project
    people_table(project, ROWS[:2])
    project.write_sync("people", PEOPLE_SYNC.format(behavior="upsert"))
    project.write_sync(
        "vips",
        "object: manual_segment\nbehavior: mirror\nsegment: VIP\nkey: id\n"
        "query: SELECT id FROM people\n",
    )
    text = markdown(project, "people", "vips")
    assert "| `people` | person | upsert | test | 2 | 0 | 0 | 0 | 0 | 0 | does not apply |" in text
    assert "| `vips` | manual_segment | mirror | test | 2 | 0 | 0 | 0 | 0 | 0 | ok |" in text
    people = section(text, "### Calls it would make")  # the first: people's
    assert "2 person identify (new)" in people
    assert "**Guard:** does not apply: upsert removes nothing." in text
    segment = text[text.index("## `vips`") :]
    assert "1 GET /v1/segments (App API) to find the manual segment 'VIP'" in segment
    assert (
        "1 POST /api/v1/segments/{id}/add_customers?id_type=id (Track API, at most 1,000 ids "
        "a call) with 2 ids"
    ) in segment
    assert 'POST /api/v1/segments/{id}/add_customers?id_type=id {"ids":["u0","u1"]}' in segment


def test_json_carries_the_calls_and_json_flags_agree(duck_project: Project) -> None:
    project = duck_project
    people_table(project, ROWS[:2])
    project.write_sync("people", PEOPLE_SYNC.format(behavior="update_only"))
    by_flag = project.json("plan", "people")
    code, output = project.cli("plan", "people", "--format", "json")
    assert code == 0 and json.loads(output) == by_flag
    calls = by_flag["syncs"][0]["calls"]
    assert calls[0]["summary"].endswith(
        "with 2 operations: 2 person identify with _update: true (existing people only) (new)"
    )
    assert calls[0]["operations"][0] == json.dumps(
        {
            "type": "person",
            "action": "identify",
            "identifiers": {"id": "u0"},
            "attributes": {"email": "0@x.io", "plan": "free", "score": 0, "_update": True},
        },
        separators=(",", ":"),
    )
    code, _ = project.cli("plan", "people", "--json", "--format", "markdown")
    assert code == 2 and "not both" in project.stderr


def test_a_collection_plan_names_its_app_api_calls(duck_project: Project) -> None:
    project = duck_project
    project.write_sync(
        "plans",
        "object: collection\ncollection: plans\n"
        "query: SELECT * FROM (VALUES (1, 'Free'), (2, 'Pro')) t(plan_id, name)\n",
    )
    text = markdown(project, "plans")
    assert "**Guard:** ok: the query returned rows." in text
    assert (
        "- 1 GET /v1/collections (App API) to find the collection 'plans', then 1 PUT "
        "/v1/collections/{id} replacing its contents with 2 rows (1 POST /v1/collections when "
        "it does not exist)"
    ) in text
    assert 'PUT /v1/collections/{id} {"data":[{"name":"Free","plan_id":1},' in text
