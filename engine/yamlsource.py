"""Reading a YAML file into plain data that remembers where every key was written.

`read_yaml` composes the file with PyYAML's composer (the C one when available), builds the
Python values itself, and records the line of every mapping key and sequence item under its
path, so that a validation error located at ("person", "column") can be reported at the line
of `column:`. Every string value is interpolated on the way (`${VAR}`, `${VAR:-default}`,
`$${` for a literal `${`); references to unset variables are recorded rather than raised,
because an unset variable is only an error for the syncs that a command selects.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from engine.errors import Problem

Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_STR_TAG = "tag:yaml.org,2002:str"

Loc = tuple[str | int, ...]
"""A path into a document: mapping keys and sequence indexes, as pydantic reports them."""

_REFERENCE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{")
_UNSET_HINT = "export {name} or give a default with ${{{name}:-...}}"


@dataclass(frozen=True)
class UnsetVariable:
    """A `${NAME}` reference to a variable that is not set, and where it was written."""

    name: str
    file: str
    line: int | None
    loc: Loc

    def problem(self) -> Problem:
        """The problem to report when a selected sync depends on this reference."""
        message = f"environment variable {self.name} is not set"
        return Problem(self.file, self.line, message, _UNSET_HINT.format(name=self.name))


@dataclass(frozen=True)
class Interpolated:
    """A string after interpolation, with the offsets of what could not be resolved."""

    text: str
    unset: tuple[tuple[str, int], ...] = ()
    malformed: tuple[int, ...] = ()


def interpolate(text: str, environ: Mapping[str, str]) -> Interpolated:
    """Replace `${VAR}` and `${VAR:-default}` from `environ`; `$${` writes a literal `${`.

    As in the shell, `${VAR:-default}` takes the default when VAR is unset or empty. An unset
    variable without a default becomes the empty string and is listed in `unset`; a `${` that
    does not start a valid reference is left as written and listed in `malformed`.
    """
    if "${" not in text:
        return Interpolated(text)
    parts: list[str] = []
    unset: list[tuple[str, int]] = []
    malformed: list[int] = []
    end = 0
    for match in _REFERENCE.finditer(text):
        parts.append(text[end : match.start()])
        end = match.end()
        name, default = match.group(1), match.group(2)
        if match.group(0) == "$${":
            parts.append("${")
        elif name is None:
            malformed.append(match.start())
            parts.append(match.group(0))
        else:
            value = environ.get(name)
            if default is not None and not value:
                value = default
            if value is None:
                unset.append((name, match.start()))
            parts.append(value or "")
    parts.append(text[end:])
    return Interpolated("".join(parts), tuple(unset), tuple(malformed))


@dataclass
class YamlDocument:
    """One parsed file: its data, the line of every key, and what went wrong reading it."""

    file: str
    path: Path
    data: Any = None
    lines: dict[Loc, int] = field(default_factory=dict)
    unset: list[UnsetVariable] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    first_line: int | None = None
    parsed: bool = False

    def line_of(self, loc: Sequence[str | int]) -> int | None:
        """The line of the key at `loc`, else of its nearest enclosing key, else of the file."""
        path = tuple(loc)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.first_line

    def problem(self, loc: Sequence[str | int], message: str, hint: str = "") -> Problem:
        """A problem located at the key `loc` of this document."""
        return Problem(self.file, self.line_of(loc), message, hint)

    def unset_under(self, prefix: Loc) -> list[UnsetVariable]:
        """The unset-variable references written at `prefix` or inside it."""
        return [ref for ref in self.unset if ref.loc[: len(prefix)] == prefix]


def read_yaml(path: Path, file: str, environ: Mapping[str, str]) -> YamlDocument:
    """Parse the YAML file at `path` (reported as `file`); problems are collected, not raised."""
    doc = YamlDocument(file, path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        doc.problems.append(
            Problem(
                file,
                None,
                f"cannot read the file: {_reason(exc)}",
                "make it a readable UTF-8 text file",
            )
        )
        return doc
    try:
        loader, node = _compose(text)
    except yaml.YAMLError as exc:
        doc.problems.append(_syntax_problem(file, exc))
        return doc
    try:
        doc.parsed = True
        if node is not None:
            doc.first_line = _first_line(node)
            doc.data = _Builder(loader, doc, environ).build(node, ())
    except yaml.YAMLError as exc:
        doc.problems.append(_syntax_problem(file, exc))
    finally:
        loader.dispose()
    return doc


_TRAILING_COLON = re.compile(
    r"(?P<head>\s*(?:-\s+)?[^\s#'\"{}\[\]][^#]*?:\s+)(?P<value>[^\s'\"#{}\[\]&*!|>%@`][^\s#]*:)"
    r"(?P<tail>\s*(?:#.*)?)"
)


def _compose(text: str) -> tuple[yaml.SafeLoader, Node | None]:
    """Compose `text`, quoting plain values that end with a colon (SPEC §2.1 writes
    `url: duckdb:///:memory:`, which YAML reads as a misplaced mapping)."""
    for _ in range(100):
        loader = Loader(text)
        try:
            return loader, loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            loader.dispose()
            repaired = _quote_trailing_colon(text, exc)
            if repaired is None:
                raise
            text = repaired
    raise yaml.YAMLError("too many values ending with a colon")


def _quote_trailing_colon(text: str, exc: yaml.MarkedYAMLError) -> str | None:
    """`text` with the value ending in ':' on the error's line single-quoted, or None."""
    mark = exc.problem_mark
    if mark is None or "mapping values are not allowed" not in (exc.problem or ""):
        return None
    lines = text.splitlines(keepends=True)
    if mark.line >= len(lines):
        return None
    body = lines[mark.line].rstrip("\r\n")
    match = _TRAILING_COLON.fullmatch(body)
    if match is None:
        return None
    value = match["value"].replace("'", "''")
    ending = lines[mark.line][len(body) :]
    lines[mark.line] = f"{match['head']}'{value}'{match['tail']}{ending}"
    return "".join(lines)


def _reason(exc: Exception) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__


def _first_line(node: Node) -> int:
    """The line of the first key of a mapping, else of the node itself."""
    if isinstance(node, MappingNode) and node.value:
        return int(node.value[0][0].start_mark.line) + 1
    return int(node.start_mark.line) + 1


def _syntax_problem(file: str, exc: yaml.YAMLError) -> Problem:
    """A YAML error as a problem; only yaml's own words, never the text it quotes."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = mark.line + 1 if mark is not None else None
    words = [getattr(exc, "context", None), getattr(exc, "problem", None)]
    detail = ", ".join(w for w in words if w) or type(exc).__name__
    hint = "check the indentation and quoting on this line and the one above"
    return Problem(file, line, f"invalid YAML: {detail}", hint)


class _Builder:
    """Builds Python values from composed nodes, recording lines and interpolating strings."""

    def __init__(self, loader: yaml.SafeLoader, doc: YamlDocument, environ: Mapping[str, str]):
        self.loader = loader
        self.doc = doc
        self.environ = environ
        self.active: set[int] = set()

    def build(self, node: Node, loc: Loc) -> Any:
        if id(node) in self.active:
            raise yaml.constructor.ConstructorError(
                None, None, "a recursive alias refers to itself", node.start_mark
            )
        self.active.add(id(node))
        try:
            if isinstance(node, MappingNode):
                return self._mapping(node, loc)
            if isinstance(node, SequenceNode):
                return self._sequence(node, loc)
            return self._scalar(node, loc)
        finally:
            self.active.discard(id(node))

    def _mapping(self, node: MappingNode, loc: Loc) -> dict[Any, Any]:
        self._report_duplicates(node)
        self.loader.flatten_mapping(node)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self._key(key_node)
            self.doc.lines[(*loc, key)] = int(key_node.start_mark.line) + 1
            result[key] = self.build(value_node, (*loc, key))
        return result

    def _sequence(self, node: SequenceNode, loc: Loc) -> list[Any]:
        items = []
        for index, item in enumerate(node.value):
            self.doc.lines[(*loc, index)] = int(item.start_mark.line) + 1
            items.append(self.build(item, (*loc, index)))
        return items

    def _scalar(self, node: Node, loc: Loc) -> Any:
        value = node.value if node.tag == _STR_TAG else self.loader.construct_object(node)
        if not isinstance(value, str):
            return value
        result = interpolate(value, self.environ)
        for name, offset in result.unset:
            line = _line_in_scalar(node, value, offset)
            self.doc.unset.append(UnsetVariable(name, self.doc.file, line, loc))
        for offset in result.malformed:
            line = _line_in_scalar(node, value, offset)
            self.doc.problems.append(
                Problem(
                    self.doc.file,
                    line,
                    "'${' does not start a ${NAME} or ${NAME:-default} reference",
                    "write $${ for a literal ${",
                )
            )
        return result.text

    def _key(self, node: Node) -> str | int:
        if not isinstance(node, ScalarNode):
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", node.start_mark
            )
        key = node.value if node.tag == _STR_TAG else self.loader.construct_object(node)
        return key if isinstance(key, str | int) else str(node.value)

    def _report_duplicates(self, node: MappingNode) -> None:
        seen: dict[str, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            line = int(key_node.start_mark.line) + 1
            if key_node.value in seen:
                self.doc.problems.append(
                    Problem(
                        self.doc.file,
                        line,
                        f"duplicate key '{key_node.value}'",
                        f"remove one of the two: it is also set on line {seen[key_node.value]}",
                    )
                )
            seen.setdefault(key_node.value, line)


def _line_in_scalar(node: Node, value: str, offset: int) -> int:
    """The line of `offset` inside a scalar: exact for literal blocks (`|`), else its first line."""
    start = int(node.start_mark.line) + 1
    if isinstance(node, ScalarNode) and node.style == "|":
        return start + 1 + value.count("\n", 0, offset)
    return start
