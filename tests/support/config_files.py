"""Writing project files for the configuration tests, and reading the problems they cause."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from engine.errors import ConfigError, Problem
from support import load_project

PROJECT = """\
sources:
  warehouse:
    url: "duckdb:///:memory:"
workspaces:
  sandbox:
    emulator: true
"""

PEOPLE = """\
object: person
query: SELECT * FROM people
"""


def make_project(root: Path, project: str = PROJECT, **syncs: str) -> Path:
    """Write `syncs/project.yml` and one `syncs/<name>.yml` per keyword under `root`."""
    (root / "syncs").mkdir(parents=True, exist_ok=True)
    (root / "syncs" / "project.yml").write_text(textwrap.dedent(project))
    for name, text in syncs.items():
        (root / "syncs" / f"{name}.yml").write_text(textwrap.dedent(text))
    return root


def problems_of(root: Path, selected: list[str] | None = None) -> list[Problem]:
    with pytest.raises(ConfigError) as caught:
        load_project(root, selected)
    return caught.value.problems


def only_problem(root: Path, selected: list[str] | None = None) -> Problem:
    problems = problems_of(root, selected)
    assert len(problems) == 1, problems
    return problems[0]
