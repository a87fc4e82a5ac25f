"""The YAML contract (SPEC §2): loading, defaults, interpolation, and every problem reported."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from support import load_project
from support.config_files import PEOPLE, PROJECT, make_project, only_problem, problems_of

from connectors.customerio.config import CustomerIOWorkspace
from engine.config import (
    CollectionSync,
    DeviceSync,
    EventSync,
    Guard,
    ManualSegmentSync,
    ObjectSync,
    PersonSync,
    Project,
    RelationshipSync,
    find_project_root,
    is_cron,
    quote_table,
)
from engine.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


# --- a valid project ----------------------------------------------------------------------

FULL_PROJECT = """\
state: duckdb:///.sync/state.duckdb
sources:
  warehouse:
    url: duckdb:///warehouse.duckdb
  pg:
    url: postgresql+psycopg://sync:pw@db.internal:5432/analytics
workspaces:
  sandbox:
    emulator: true
  prod:
    site_id: site-1
    track_api_key: track-key
    app_api_key: app-key
    region: eu
    rate_limit: 100
    max_batch_ops: 500
defaults:
  workspace: sandbox
  source: warehouse
"""

FULL_SYNCS = {
    "people": """\
        description: Everyone who signed up
        object: person
        behavior: mirror
        on_remove: suppress
        identifier: email
        key: email_address
        query: SELECT * FROM people
        fields: {first_name: first_name, plan: plan_name}
        nulls: skip
        schedule: "*/15 * * * *"
        guard: {max_removals: 50}
        """,
    "devices": """\
        object: device
        behavior: mirror
        person: {identifier: id, column: user_id}
        key: token
        platform: os
        last_used: seen_at
        table: devices
        """,
    "events": """\
        object: event
        person: {column: user_id}
        key: [user_id, event_id]
        event_name_column: name
        event_type_column: kind
        timestamp: happened_at
        filter: {event_names: [signed_up, upgraded]}
        query: SELECT * FROM events
        source: pg
        workspace: prod
        """,
    "plans": """\
        object: collection
        collection: plans
        query: SELECT * FROM plans
        """,
    "vips": """\
        object: manual_segment
        behavior: mirror
        segment: VIPs
        identifier: email
        query: SELECT email FROM vips
        """,
    "accounts": """\
        object: object
        behavior: mirror
        object_type_id: 1
        key: account_id
        query: SELECT * FROM accounts
        """,
    "memberships": """\
        object: relationship
        object_type_id: 1
        object_key: account_id
        person: {identifier: email, column: email}
        fields: {role: role}
        query: SELECT * FROM memberships
        enabled: false
        """,
}


@pytest.fixture
def full_project(tmp_path: Path) -> Project:
    return load_project(make_project(tmp_path, FULL_PROJECT, **FULL_SYNCS))


def test_every_object_type_loads(full_project: Project) -> None:
    kinds = {name: type(sync) for name, sync in full_project.syncs.items()}
    assert kinds == {
        "accounts": ObjectSync,
        "devices": DeviceSync,
        "events": EventSync,
        "memberships": RelationshipSync,
        "people": PersonSync,
        "plans": CollectionSync,
        "vips": ManualSegmentSync,
    }
    assert list(full_project.syncs) == sorted(full_project.syncs)  # file order


def test_person_sync_keys(full_project: Project) -> None:
    people = full_project.syncs["people"]
    assert isinstance(people, PersonSync)
    assert (people.identifier, people.key, people.on_remove) == (
        "email",
        "email_address",
        "suppress",
    )
    assert people.is_mirror and people.guard.limit(1000) == 50
    assert people.key_columns() == ("email_address",)
    assert people.named_columns() == ("email_address", "first_name", "plan_name")
    assert (people.nulls, people.schedule, people.description) == (
        "skip",
        "*/15 * * * *",
        "Everyone who signed up",
    )
    assert (people.file, people.line) == ("syncs/people.yml", 1)


def test_device_event_and_relationship_columns(full_project: Project) -> None:
    devices, events = full_project.syncs["devices"], full_project.syncs["events"]
    memberships = full_project.syncs["memberships"]
    assert devices.key_columns() == ("user_id", "token")
    assert devices.reserved_columns() == ("user_id", "token", "os", "seen_at")
    assert devices.sql == "SELECT * FROM devices"
    assert events.key_columns() == ("user_id", "event_id")
    assert events.reserved_columns() == ("user_id", "event_id", "name", "kind", "happened_at")
    assert isinstance(events, EventSync) and events.filter.event_names == ("signed_up", "upgraded")
    assert memberships.key_columns() == ("email", "account_id")
    assert memberships.named_columns() == ("email", "account_id", "role")
    assert memberships.enabled is False


def test_collection_segment_and_object(full_project: Project) -> None:
    plans, vips = full_project.syncs["plans"], full_project.syncs["vips"]
    accounts = full_project.syncs["accounts"]
    assert plans.key_columns() == () and plans.reserved_columns() == ()
    assert isinstance(vips, ManualSegmentSync)
    assert (vips.segment, vips.segment_id, vips.key) == ("VIPs", None, "email")
    assert isinstance(accounts, ObjectSync) and accounts.key_columns() == ("account_id",)


def test_sources_workspaces_and_references(full_project: Project) -> None:
    events = full_project.syncs["events"]
    assert (events.source, events.workspace) == ("pg", "prod")
    prod = full_project.workspace_of(events)
    assert prod.resolved_track_url() == "https://track-eu.customer.io"
    assert prod.resolved_app_url() == "https://api-eu.customer.io"
    assert (prod.rate_limit, prod.max_batch_ops, prod.concurrency) == (100, 500, 8)
    assert full_project.source_of(events).display_url().startswith("postgresql+psycopg://sync:***@")
    sandbox = full_project.workspaces["sandbox"]
    assert sandbox.resolved_track_url() == "https://track.customer.io"


def test_select_keeps_the_given_order(full_project: Project) -> None:
    assert [s.name for s in full_project.select(["vips", "people"])] == ["vips", "people"]


def test_select_unknown_name_lists_the_known_ones(full_project: Project) -> None:
    with pytest.raises(ConfigError) as caught:
        full_project.select(["peple"])
    assert "did you mean 'people'?" in caught.value.problems[0].hint
    assert "accounts" in caught.value.problems[0].hint


def test_unknown_selected_name_is_a_problem(tmp_path: Path) -> None:
    problem = only_problem(make_project(tmp_path, people=PEOPLE), ["nobody"])
    assert problem.message == "no sync named 'nobody'" and "people" in problem.hint


# --- defaults -----------------------------------------------------------------------------


def test_defaults_from_the_file_and_the_only_source_and_workspace(tmp_path: Path) -> None:
    people = load_project(make_project(tmp_path, people=PEOPLE)).syncs["people"]
    assert isinstance(people, PersonSync)
    assert (people.name, people.source, people.workspace) == ("people", "warehouse", "sandbox")
    assert (people.behavior, people.identifier, people.key) == ("upsert", "id", "id")
    assert (people.fields, people.nulls, people.enabled) == (None, "clear", True)
    assert people.guard.max_removals == "20%"


def test_defaults_section_picks_among_several(tmp_path: Path) -> None:
    project = PROJECT + "  other:\n    emulator: true\ndefaults:\n  workspace: other\n"
    people = load_project(make_project(tmp_path, project, people=PEOPLE)).syncs["people"]
    assert people.workspace == "other"


def test_several_workspaces_without_a_default_is_a_problem(tmp_path: Path) -> None:
    project = PROJECT + "  other:\n    emulator: true\n"
    problem = only_problem(make_project(tmp_path, project, people=PEOPLE))
    assert (problem.file, problem.line, problem.message) == (
        "syncs/people.yml",
        1,
        "no workspace given",
    )
    assert "defaults.workspace" in problem.hint


@pytest.mark.parametrize(
    ("body", "behavior"),
    [
        ("object: device\nperson: {column: u}\nkey: t\nplatform: p\n", "upsert"),
        ("object: event\nperson: {column: u}\nkey: k\nevent_name: e\n", "send"),
        ("object: collection\ncollection: c\n", "replace"),
        ("object: manual_segment\nsegment_id: 7\n", "upsert"),
        ("object: object\nobject_type_id: 2\nkey: k\n", "upsert"),
        ("object: relationship\nobject_type_id: 2\nobject_key: k\nperson: {column: u}\n", "upsert"),
    ],
)
def test_behavior_defaults_to_the_first_listed(tmp_path: Path, body: str, behavior: str) -> None:
    project = load_project(make_project(tmp_path, s=body + "query: SELECT 1\n"))
    assert project.syncs["s"].behavior == behavior


def test_explicit_name_and_yaml_extension(tmp_path: Path) -> None:
    root = make_project(tmp_path)
    (root / "syncs" / "people.yaml").write_text("name: humans\n" + PEOPLE)
    assert list(load_project(root).syncs) == ["humans"]


def test_table_is_quoted_where_sql_needs_it() -> None:
    assert quote_table("analytics.people") == "analytics.people"
    assert quote_table('analytics."My Table"') == 'analytics."My Table"'
    assert quote_table("order") == '"order"'
    assert quote_table("Events") == '"Events"'


# --- interpolation ------------------------------------------------------------------------


def test_interpolation_in_every_string(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHEMA", "analytics")
    monkeypatch.setenv("EMPTY", "")
    monkeypatch.delenv("NOT_SET", raising=False)
    sync = """\
        object: person
        description: ${NOT_SET:-fallback}
        key: ${EMPTY:-user_id}
        query: SELECT '$${SCHEMA}' AS literal, * FROM ${SCHEMA}.people
        """
    people = load_project(make_project(tmp_path, people=sync)).syncs["people"]
    assert people.sql == "SELECT '${SCHEMA}' AS literal, * FROM analytics.people"
    assert (people.description, people.key_columns()) == ("fallback", ("user_id",))


def test_interpolated_numbers_and_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CIO_SITE_ID", "site-9")
    monkeypatch.setenv("CIO_TRACK_API_KEY", "s3cr3t-track")
    monkeypatch.setenv("RATE", "90")
    project = PROJECT + (
        "  prod:\n    site_id: ${CIO_SITE_ID}\n    track_api_key: ${CIO_TRACK_API_KEY}\n"
        "    rate_limit: ${RATE}\n"
    )
    sync = PEOPLE + "workspace: prod\n"
    prod = load_project(make_project(tmp_path, project, people=sync)).workspaces["prod"]
    assert prod.site_id == "site-9" and prod.rate_limit == 90
    assert prod.track_api_key is not None
    assert prod.track_api_key.get_secret_value() == "s3cr3t-track"


UNSET_PROJECT = """\
sources:
  warehouse:
    url: "duckdb:///:memory:"
  pg:
    url: postgresql+psycopg://u:${UNSET_PG_PASSWORD}@db/a
workspaces:
  sandbox:
    emulator: true
  prod:
    site_id: ${UNSET_SITE}
    track_api_key: ${UNSET_KEY}
defaults:
  workspace: sandbox
  source: warehouse
"""


@pytest.fixture
def unset_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("UNSET_SITE", "UNSET_KEY", "UNSET_PG_PASSWORD", "UNSET_TABLE"):
        monkeypatch.delenv(name, raising=False)
    return make_project(
        tmp_path,
        UNSET_PROJECT,
        people=PEOPLE,
        to_prod=PEOPLE + "workspace: prod\n",
        from_pg=PEOPLE + "source: pg\n",
        own=PEOPLE.replace("people\n", "${UNSET_TABLE}\n"),
    )


def test_unset_variable_is_fine_when_no_selected_sync_uses_it(unset_root: Path) -> None:
    project = load_project(unset_root, ["people"])
    assert set(project.syncs) == {"people", "to_prod", "from_pg", "own"}


def test_unset_variable_of_a_selected_syncs_workspace(unset_root: Path) -> None:
    problems = problems_of(unset_root, ["to_prod"])
    assert [(p.file, p.line) for p in problems] == [
        ("syncs/project.yml", 10),
        ("syncs/project.yml", 11),
    ]
    assert problems[0].message == "environment variable UNSET_SITE is not set"
    assert problems[0].hint == "export UNSET_SITE or give a default with ${UNSET_SITE:-...}"


def test_unset_variable_of_a_selected_syncs_source(unset_root: Path) -> None:
    problem = only_problem(unset_root, ["from_pg"])
    assert (problem.line, problem.message) == (
        5,
        "environment variable UNSET_PG_PASSWORD is not set",
    )


def test_unset_variable_in_the_sync_itself(unset_root: Path) -> None:
    problem = only_problem(unset_root, ["own"])
    assert (problem.file, problem.line) == ("syncs/own.yml", 2)


def test_all_syncs_are_selected_by_default(unset_root: Path) -> None:
    names = {p.message.split()[2] for p in problems_of(unset_root)}
    assert names == {"UNSET_SITE", "UNSET_KEY", "UNSET_PG_PASSWORD", "UNSET_TABLE"}


def test_unset_variable_outside_sources_and_workspaces_always_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STATE_URL", raising=False)
    root = make_project(tmp_path, "state: ${STATE_URL}\n" + PROJECT, people=PEOPLE)
    assert only_problem(root, ["people"]).line == 1


def test_unset_variable_line_inside_a_block_query(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("UNSET_TABLE", raising=False)
    sync = "object: person\nquery: |\n  SELECT *\n  FROM ${UNSET_TABLE}\n"
    assert only_problem(make_project(tmp_path, people=sync)).line == 4


def test_malformed_reference(tmp_path: Path) -> None:
    problem = only_problem(make_project(tmp_path, people="object: person\nquery: SELECT '${'\n"))
    assert problem.line == 2 and "$${" in problem.hint


# --- paths --------------------------------------------------------------------------------


def test_relative_duckdb_paths_resolve_against_the_project(tmp_path: Path) -> None:
    project = """\
        state: duckdb:///state/db.duckdb
        sources:
          rel:
            url: duckdb:///data/wh.duckdb?access_mode=read_only&threads=4
          mem:
            url: "duckdb:///:memory:"
          abs:
            url: duckdb:////srv/wh.duckdb
          pg:
            url: postgresql+psycopg://u@h/db?sslmode=require
        workspaces:
          sandbox:
            emulator: true
        defaults:
          source: mem
        """
    loaded = load_project(make_project(tmp_path, project, people=PEOPLE))
    urls = {name: source.url for name, source in loaded.sources.items()}
    assert urls == {
        "rel": f"duckdb:///{tmp_path}/data/wh.duckdb?access_mode=read_only&threads=4",
        "mem": "duckdb:///:memory:",
        "abs": "duckdb:////srv/wh.duckdb",
        "pg": "postgresql+psycopg://u@h/db?sslmode=require",
    }
    assert loaded.state == f"duckdb:///{tmp_path}/state/db.duckdb"
    assert loaded.root == tmp_path.resolve()


def test_default_state_is_under_the_project(tmp_path: Path) -> None:
    loaded = load_project(make_project(tmp_path, people=PEOPLE))
    assert loaded.state == f"duckdb:///{tmp_path}/.sync/state.duckdb"


def test_query_file_is_read_relative_to_the_sync_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCHEMA", "crm")
    root = make_project(tmp_path, people="object: person\nquery_file: sql/people.sql\n")
    (root / "syncs" / "sql").mkdir()
    (root / "syncs" / "sql" / "people.sql").write_text("SELECT *\nFROM ${SCHEMA}.people\n")
    monkeypatch.chdir(tmp_path.parent)
    assert load_project(root).syncs["people"].sql == "SELECT *\nFROM crm.people\n"


def test_unset_variable_in_a_query_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UNSET_SCHEMA", raising=False)
    root = make_project(tmp_path, people="object: person\nquery_file: people.sql\n")
    (root / "syncs" / "people.sql").write_text("SELECT *\nFROM ${UNSET_SCHEMA}.people\n")
    problem = only_problem(root)
    assert (problem.file, problem.line) == ("syncs/people.sql", 2)


def test_missing_query_file(tmp_path: Path) -> None:
    problem = only_problem(
        make_project(tmp_path, people="object: person\n\nquery_file: nope.sql\n")
    )
    assert (problem.file, problem.line) == ("syncs/people.yml", 3)
    assert "nope.sql" in problem.message and "relative to syncs/" in problem.hint


def test_find_project_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_project(tmp_path / "proj")
    monkeypatch.delenv("SYNC_PROJECT", raising=False)
    monkeypatch.chdir(root)
    assert find_project_root(None) == root.resolve()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SYNC_PROJECT", str(root))
    assert find_project_root(None) == root.resolve()
    assert find_project_root(str(root)) == root.resolve()
    with pytest.raises(ConfigError, match="no syncs/"):
        find_project_root(str(tmp_path))


def test_missing_project_file(tmp_path: Path) -> None:
    (tmp_path / "syncs").mkdir()
    assert only_problem(tmp_path).file == "syncs/project.yml"


# --- model pieces -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("max_removals", "size", "limit", "words"),
    [
        (10, 5, 10, "at most 10 removals"),
        ("20%", 1000, 200, "at most 20% of the snapshot removed"),
        ("12.5%", 10, 1, "at most 12.5% of the snapshot removed"),
        ("0%", 1000, 0, "at most 0% of the snapshot removed"),
        ("7", 1, 7, "at most 7 removals"),
    ],
)
def test_guard(max_removals: int | str, size: int, limit: int, words: str) -> None:
    guard = Guard(max_removals=max_removals)
    assert (guard.limit(size), guard.describe()) == (limit, words)


@pytest.mark.parametrize("bad", [-1, "101%", "lots", True, 1.5])
def test_guard_rejects(bad: object) -> None:
    with pytest.raises(ValidationError):
        Guard(max_removals=bad)


@pytest.mark.parametrize(
    ("expression", "ok"),
    [
        ("0 6 * * *", True),
        ("*/15 9-17 * * mon-fri", True),
        ("0 0 1,15 jan,jul 0", True),
        ("@daily", True),
        ("0 6 * *", False),
        ("60 * * * *", False),
        ("* * * * 8", False),
        ("*/0 * * * *", False),
        ("5-1 * * * *", False),
    ],
)
def test_cron_syntax(expression: str, ok: bool) -> None:
    assert is_cron(expression) is ok


def test_direct_construction_raises_on_an_issue() -> None:
    base = {"name": "e", "source": "s", "workspace": "w", "sql": "q", "person": {"column": "u"}}
    with pytest.raises(ValidationError, match="exactly one of event_name"):
        EventSync.model_validate({**base, "key": "k"})
    with pytest.raises(ValidationError, match="has no site_id"):
        CustomerIOWorkspace(name="prod")
    assert CustomerIOWorkspace(name="sandbox", emulator=True).rate_limit == 150


def test_models_are_frozen(full_project: Project) -> None:
    with pytest.raises(ValidationError):
        full_project.syncs["people"].name = "x"  # type: ignore[misc]


# --- the repository's own example project -------------------------------------------------


@pytest.mark.skipif(
    not (REPO / "syncs" / "project.yml").exists(), reason="the example project is not written yet"
)
def test_repository_syncs_load() -> None:
    project = load_project(REPO)
    files = sorted(
        p.name
        for p in (REPO / "syncs").iterdir()
        if p.suffix in (".yml", ".yaml") and p.stem != "project"
    )
    assert len(project.syncs) == len(files)
