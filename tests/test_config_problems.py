"""The YAML contract's problems: each at its file and line with a hint, and secrets never shown."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from support import load_project
from support.config_files import PEOPLE, PROJECT, make_project, only_problem, problems_of

from engine.errors import ConfigError

# --- problems, each at its file and line --------------------------------------------------

WORKSPACES_ONLY = PROJECT.split("workspaces:")[1]


@pytest.mark.parametrize(
    ("sync", "line", "message", "hint"),
    [
        ("object: person\nquery: q\ntable: t\n", 3, "exactly one of query, table", "query_file:"),
        ("object: person\n", 1, "exactly one of query, table", "query:"),
        ("object: person\nquery: q\nsource: wh\n", 3, "unknown source 'wh'", "warehouse"),
        ("object: person\nquery: q\nworkspace: sandbx\n", 3, "unknown workspace", "'sandbox'"),
        (
            "object: person\nquery: q\nbehavior: replace\n",
            3,
            "behavior 'replace' is not allowed",
            "upsert, update_only, mirror",
        ),
        (
            "object: person\nquery: q\nfields:\n  name: n\n  _update: u\n",
            5,
            "'_update' is a reserved attribute",
            "another attribute name",
        ),
        (
            "object: person\nquery: q\nfields:\n  cio_id: c\n",
            4,
            "'cio_id' is a reserved attribute",
            "",
        ),
        (
            "object: person\nidentifier: email\nquery: q\nfields:\n  email: e\n",
            5,
            "'email' is a reserved attribute",
            "",
        ),
        (
            "object: object\nobject_type_id: 1\nkey: k\nquery: q\nfields: {objectId: o}\n",
            5,
            "'objectId' is a reserved attribute",
            "",
        ),
        (
            "object: relationship\nobject_type_id: 1\nobject_key: k\nperson: {column: u}\n"
            "query: q\nfields: {relationship: r}\n",
            6,
            "'relationship' is a reserved attribute",
            "",
        ),
        ("object: person\nquery: q\nfields: {" + "a" * 151 + ": c}\n", 3, "1 to 150 bytes", ""),
        (
            "object: person\nquery: q\n\nfields: {"
            + ", ".join(f"a{i}: c" for i in range(301))
            + "}\n",
            4,
            "301 fields",
            "",
        ),
        (
            "object: manual_segment\nsegment_id: 3\nquery: q\nfields: {a: b}\n",
            4,
            "takes no fields",
            "remove fields",
        ),
        (
            "object: person\nquery: q\nguard: {max_removals: 5}\n",
            3,
            "guard applies to mirror",
            "behavior: mirror",
        ),
        (
            "object: person\nbehavior: mirror\nquery: q\nguard: {max_removals: 120%}\n",
            4,
            "max_removals",
            "percentage",
        ),
        (
            "object: event\nperson: {column: u}\nkey: k\nquery: q\n",
            1,
            "exactly one of event_name and event_name_column",
            "event_name_column:",
        ),
        (
            "object: event\nperson: {column: u}\nkey: k\nquery: q\nevent_name: a\n"
            "event_name_column: b\n",
            5,
            "exactly one of event_name",
            "",
        ),
        ("object: manual_segment\nquery: q\n", 1, "exactly one of segment_id and segment", ""),
        ("object: manual_segment\nquery: q\nsegment: a\nsegment_id: 4\n", 1, "exactly one of", ""),
        (
            "object: person\nquery: q\nidentifer: email\n",
            3,
            "unknown key 'identifer' for a person sync",
            "did you mean 'identifier'?",
        ),
        (
            "object: device\nquery: q\nkey: t\nplatform: p\nperson:\n  column: u\n  colum: u\n",
            7,
            "unknown key 'colum' in person",
            "did you mean 'column'?",
        ),
        (
            "object: device\nquery: q\nkey: t\nplatform: p\n",
            1,
            "missing key 'person'",
            "identifier",
        ),
        (
            "object: device\nquery: q\nkey: t\nplatform: p\nperson:\n  identifier: id\n",
            5,
            "missing key 'person.column'",
            "column",
        ),
        ("object: person\nquery: q\nnulls: keep\n", 3, "nulls", "one of"),
        ("object: object\nobject_type_id: 0\nkey: k\nquery: q\n", 2, "object_type_id", ""),
        ("object: persons\nquery: q\n", 1, "unknown object 'persons'", "'person'"),
        ("query: q\n", 1, "missing key 'object'", "manual_segment"),
        ("object: person\nquery: q\nschedule: every day\n", 3, "not a cron expression", "minute"),
        ("object: person\nquery: q\nname: my people\n", 3, "name", "plain word"),
        ("object: person\nquery: q\nsql: SELECT 1\n", 3, "unknown key 'sql'", ""),
        (
            "object: event\nperson: {column: u}\nkey: k\nevent_name: e\nquery: q\n"
            "event_type: page\nevent_type_column: t\n",
            6,
            "event_type or event_type_column",
            "",
        ),
    ],
)
def test_sync_problem(tmp_path: Path, sync: str, line: int, message: str, hint: str) -> None:
    problem = only_problem(make_project(tmp_path, s=sync))
    assert (problem.file, problem.line) == ("syncs/s.yml", line)
    assert message in problem.message
    assert hint in problem.hint and problem.hint


@pytest.mark.parametrize(
    ("workspace", "line", "message"),
    [
        ("  prod:\n    track_api_key: k\n", 7, "workspace 'prod' has no site_id"),
        ("  prod:\n    site_id: s\n", 7, "workspace 'prod' has no track_api_key"),
        (
            "  prod:\n    site_id: ''\n    track_api_key: k\n",
            8,
            "site_id of workspace 'prod' is empty",
        ),
        ("  prod:\n    emulator: true\n    rate_limit: 0\n", 9, "workspaces.prod.rate_limit"),
        ("  prod:\n    emulator: true\n    region: asia\n", 9, "workspaces.prod.region"),
        ("  prod:\n    emulator: true\n    rate_limt: 10\n", 9, "unknown key 'rate_limt'"),
        ("  prod:\n    emulator: true\n    max_batch_ops: 20000\n", 9, "max_batch_ops"),
        ("  prod:\n    emulator: true\n    track_url: track.example\n", 9, "track_url"),
    ],
)
def test_workspace_problem(tmp_path: Path, workspace: str, line: int, message: str) -> None:
    root = make_project(tmp_path, PROJECT + workspace + "defaults: {workspace: sandbox}\n")
    problem = only_problem(root)
    assert (problem.file, problem.line) == ("syncs/project.yml", line)
    assert message in problem.message and problem.hint


def test_workspace_hint_says_how_to_give_credentials(tmp_path: Path) -> None:
    root = make_project(
        tmp_path, PROJECT + "  prod: {region: us}\ndefaults: {workspace: sandbox}\n"
    )
    hints = [p.hint for p in problems_of(root)]
    assert any("${CIO_SITE_ID}" in hint and "emulator: true" in hint for hint in hints)


def test_project_level_problems(tmp_path: Path) -> None:
    project = """\
        sources:
          warehouse:
            url: not a url
        workspaces:
          sandbox:
            emulator: true
        defaults:
          source: nowhere
        statee: x
        """
    problems = problems_of(make_project(tmp_path, project, people=PEOPLE))
    assert [(p.line, p.message) for p in problems] == [
        (3, "sources.warehouse.url: not a SQLAlchemy URL"),
        (8, "defaults.source 'nowhere' is not defined"),
        (9, "unknown key 'statee' in project.yml"),
    ]
    assert problems[2].hint == "did you mean 'state'?"


def test_duplicate_sync_names_across_files(tmp_path: Path) -> None:
    root = make_project(tmp_path, a=PEOPLE, b="# people again\nname: a\n" + PEOPLE)
    problem = only_problem(root)
    assert (problem.file, problem.line) == ("syncs/b.yml", 2)
    assert "already used by syncs/a.yml" in problem.message


def test_problems_of_every_file_at_once(tmp_path: Path) -> None:
    project = (
        PROJECT
        + "  prod:\n    emulator: true\n    concurrency: -1\ndefaults: {workspace: sandbox}\n"
    )
    root = make_project(
        tmp_path,
        project,
        a="object: person\nquery: q\nbehavior: send\nnulls: never\n",
        b="object: event\nquery: q\nperson: {column: u}\nkey: k\n",
        c="object: nothing\n",
    )
    located = [(p.file, p.line) for p in problems_of(root)]
    assert located == [
        ("syncs/project.yml", 9),
        ("syncs/a.yml", 3),
        ("syncs/a.yml", 4),
        ("syncs/b.yml", 1),
        ("syncs/c.yml", 1),
    ]


def test_bad_yaml_reports_its_line(tmp_path: Path) -> None:
    root = make_project(tmp_path, people="object: person\nquery: q\nfields:\n  a: b\n c: d\n")
    problems = problems_of(root)
    assert [(p.file, p.line) for p in problems] == [("syncs/people.yml", 5)]
    assert problems[0].message.startswith("invalid YAML") and problems[0].hint


def test_the_specs_unquoted_memory_url_loads(tmp_path: Path) -> None:
    project = PROJECT.replace('"duckdb:///:memory:"', "duckdb:///:memory:  # RAM")
    project += "  prod:\n    emulator: true\n    track_url: http://localhost:8787/:\n"
    project += "defaults:\n  workspace: sandbox\n"
    loaded = load_project(make_project(tmp_path, project, people=PEOPLE))
    assert loaded.sources["warehouse"].url == "duckdb:///:memory:"
    assert loaded.workspaces["prod"].track_url == "http://localhost:8787/:"


def test_bad_yaml_in_project_file(tmp_path: Path) -> None:
    problems = problems_of(make_project(tmp_path, "sources: [\n", people=PEOPLE))
    assert problems[0].file == "syncs/project.yml" and problems[0].line == 2


def test_duplicate_yaml_key(tmp_path: Path) -> None:
    problem = only_problem(make_project(tmp_path, people=PEOPLE + "query: SELECT 2\n"))
    assert (problem.line, problem.message) == (3, "duplicate key 'query'")
    assert "line 2" in problem.hint


def test_sync_file_that_is_not_a_mapping(tmp_path: Path) -> None:
    problem = only_problem(make_project(tmp_path, people="- object: person\n"))
    assert problem.message == "a sync file must be a mapping of keys"


def test_yaml_anchors_and_merge_keys(tmp_path: Path) -> None:
    project = PROJECT + "  base: &base\n    emulator: true\n    rate_limit: 20\n"
    project += "  other:\n    <<: *base\n    rate_limit: 30\ndefaults: {workspace: base}\n"
    loaded = load_project(make_project(tmp_path, project, people=PEOPLE))
    assert loaded.workspaces["other"].rate_limit == 30 and loaded.workspaces["other"].emulator


# --- secrets ------------------------------------------------------------------------------


def test_secrets_never_appear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACK_KEY", "tr4ck-s3cret")
    monkeypatch.setenv("PG_PASSWORD", "pg-s3cret")
    project = """\
        state: postgresql+psycopg://state:pg-s3cret@db/state
        sources:
          pg:
            url: postgresql+psycopg://u:${PG_PASSWORD}@db/analytics
          broken:
            url: "pg-s3cret://:::"
        workspaces:
          prod:
            site_id: site
            track_api_key: ${TRACK_KEY}
            app_api_key: app-s3cret
            rate_limit: -5
        defaults: {source: pg}
        """
    root = make_project(tmp_path, project, people=PEOPLE)
    with pytest.raises(ConfigError) as caught:
        load_project(root)
    assert "s3cret" not in str(caught.value)
    (root / "syncs" / "project.yml").write_text(
        textwrap.dedent(project)
        .replace("  broken:\n", "  x:\n")
        .replace("rate_limit: -5", "")
        .replace('url: "pg-s3cret://:::"', "url: duckdb:///:memory:")
    )
    loaded = load_project(root, [])
    assert "s3cret" not in repr(loaded) and "s3cret" not in str(loaded)
    assert loaded.sources["pg"].url.endswith(":pg-s3cret@db/analytics")
