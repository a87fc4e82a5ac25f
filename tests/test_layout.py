"""The rules of the house, read from the code's own imports (README: How it works)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_LINES = 700


def _modules(package: str) -> Iterator[Path]:
    yield from sorted((REPO / package).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at any depth of the file (lazy imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def _importers(package: str, prefix: str) -> dict[str, set[str]]:
    """Files of `package` importing a module under `prefix`, with those modules."""
    found = {}
    for path in _modules(package):
        hits = {m for m in _imports(path) if m == prefix or m.startswith(prefix + ".")}
        if hits:
            found[path.relative_to(REPO).as_posix()] = hits
    return found


def test_the_engine_reaches_connectors_through_its_composition_point_only() -> None:
    assert set(_importers("engine", "connectors")) == {"engine/compose.py"}


def test_connectors_import_only_the_engines_contract() -> None:
    allowed = {"engine.destination", "engine.errors", "engine.config"}
    used = set().union(*_importers("connectors", "engine").values())
    assert used <= allowed, used - allowed


def test_the_emulator_stands_alone() -> None:
    assert _importers("cio_emulator", "engine") == {}
    assert _importers("cio_emulator", "connectors") == {}


def test_no_source_file_is_over_700_lines() -> None:
    packages = ("engine", "connectors", "cio_emulator", "tests")
    sizes = {
        path.relative_to(REPO).as_posix(): len(path.read_text().splitlines())
        for package in packages
        for path in _modules(package)
    }
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}
