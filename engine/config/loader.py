"""Loading a project: `syncs/project.yml` and one sync a file, every problem reported at once.

`load_project(root, workspace_model=...)` reads `root/syncs/project.yml` and every other
`syncs/*.yml|*.yaml` (one sync a file, sorted by name), interpolates `${VAR}` in every string,
resolves defaults and relative paths, and raises a single `ConfigError` listing every problem it
found, each with its file, line and a hint. Workspaces are read with the destination's settings
model (`engine.compose` passes the registered one).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from pydantic import ValidationError

from engine.config.hints import issue_from_error, key_hint
from engine.config.models import (
    COLLECT,
    DEFAULT_STATE_URL,
    CheckedModel,
    Defaults,
    Filter,
    Guard,
    Incremental,
    Issue,
    Model,
    PersonRef,
    Source,
)
from engine.config.project import (
    Project,
    choices_hint,
    quote_table,
    resolve_duckdb_url,
    unknown_sync,
)
from engine.config.syncs import SYNC_MODELS, SyncBase, a_noun, behaviors
from engine.config.urls import parse_url
from engine.config.workspace import WorkspaceSettings, workspace_issues
from engine.errors import ConfigError, Problem
from engine.yamlsource import Loc, UnsetVariable, YamlDocument, interpolate, read_yaml

M = TypeVar("M", bound=Model)

_SQL_KEYS = ("query", "table", "query_file")
_NESTED_MODELS: dict[str, type[Model]] = {
    "person": PersonRef,
    "guard": Guard,
    "filter": Filter,
    "incremental": Incremental,
}
_PROJECT_KEYS = ("state", "metrics_file", "sources", "workspaces", "defaults")


def load_project(
    root: Path | str,
    selected: Sequence[str] | None = None,
    *,
    workspace_model: type[WorkspaceSettings],
) -> Project:
    """Load the project at `root`: `syncs/project.yml` and one sync per other YAML file.

    `selected` names the syncs the command will use (None: all). Every problem of every file
    is collected; an unset `${VAR}` counts only when a selected sync uses it, directly or
    through its source or workspace. Raises ConfigError listing them all, each with its file
    (relative to `root`), line and hint. Each entry of `workspaces:` is read as a
    `workspace_model`.
    """
    return _ProjectLoader(Path(root), os.environ, workspace_model).load(selected)


class _Settings(NamedTuple):
    parsed: bool
    state: str
    metrics_file: Path | None
    sources: dict[str, Source]
    workspaces: dict[str, WorkspaceSettings]
    source_names: frozenset[str]
    workspace_names: frozenset[str]
    defaults: Defaults


class _SyncEntry(NamedTuple):
    name: str
    doc: YamlDocument
    model: SyncBase | None
    source: str
    workspace: str
    unset: list[UnsetVariable]


class _ProjectLoader:
    """One load of a project; gathers problems as it goes and raises them together."""

    def __init__(
        self, root: Path, environ: Mapping[str, str], workspace_model: type[WorkspaceSettings]
    ) -> None:
        self.root = root.expanduser().resolve()
        self.environ = environ
        self.workspace_model = workspace_model
        self.problems: list[Problem] = []
        self.file_order: list[str] = []

    def load(self, selected: Sequence[str] | None) -> Project:
        project_doc, sync_docs = self._read_files()
        settings = self._settings(project_doc)
        entries = self._index([self._sync(doc, settings) for doc in sync_docs])
        chosen = self._selection(selected, entries)
        self._report_unset(project_doc, chosen)
        self._raise_problems()
        syncs = {name: e.model for name, e in entries.items() if e.model is not None}
        fields = {
            "root": self.root,
            "state": settings.state,
            "metrics_file": settings.metrics_file,
            "sources": settings.sources,
            "workspaces": settings.workspaces,
            "syncs": syncs,
        }
        return Project.model_validate(fields, context={COLLECT: True})

    # files

    def _read_files(self) -> tuple[YamlDocument, list[YamlDocument]]:
        syncs_dir = self.root / "syncs"
        if not syncs_dir.is_dir():
            raise ConfigError(
                [
                    Problem(
                        str(self.root),
                        None,
                        "no syncs/ directory here",
                        "point --project or SYNC_PROJECT at a project",
                    )
                ]
            )
        named = sorted((p for p in syncs_dir.iterdir() if _is_yaml_name(p)), key=lambda p: p.name)
        paths = [p for p in named if self._is_readable_file(p)]
        project_paths = [p for p in paths if p.stem == "project"]
        self._check_project_file(project_paths)
        docs = [self._read(path) for path in paths]
        self.file_order.sort(key=lambda file: Path(file).stem != "project")
        return docs[paths.index(project_paths[0])], [d for d in docs if d.path.stem != "project"]

    def _check_project_file(self, paths: list[Path]) -> None:
        if not paths:
            raise ConfigError(
                [
                    Problem(
                        "syncs/project.yml",
                        None,
                        "syncs/project.yml is missing",
                        "create it with sources: and workspaces: (`sync init` writes one)",
                    )
                ]
            )
        if len(paths) > 1:
            self.problems.append(
                Problem(
                    "syncs/project.yaml",
                    None,
                    "both syncs/project.yml and syncs/project.yaml exist",
                    "keep one; syncs/project.yml is read",
                )
            )

    def _is_readable_file(self, path: Path) -> bool:
        """Whether `path` is a file; a directory, broken link or pipe named *.yml is a problem
        (reading a pipe would hang the command)."""
        why = _not_a_file(path)
        if why is not None:
            self.problems.append(
                Problem(
                    self._display(path),
                    None,
                    f"this {why}, so it cannot be read as a sync",
                    "remove it or rename it without .yml/.yaml",
                )
            )
        return why is None

    def _read(self, path: Path) -> YamlDocument:
        doc = read_yaml(path, self._display(path), self.environ)
        self.file_order.append(doc.file)
        self.problems.extend(doc.problems)
        return doc

    def _display(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    # problems

    def _problem(self, doc: YamlDocument, loc: Loc, message: str, hint: str) -> None:
        """Record a problem at `loc`, unless it stems from an unset variable there."""
        if not any(ref.loc == loc[: len(ref.loc)] for ref in doc.unset):
            self.problems.append(doc.problem(loc, message, hint))

    def _issues(self, doc: YamlDocument, prefix: Loc, issues: Iterable[Issue]) -> None:
        for issue in issues:
            self._problem(doc, (*prefix, *issue.loc), issue.message, issue.hint)

    def _raise_problems(self) -> None:
        if self.problems:
            rank = {file: index for index, file in enumerate(self.file_order)}
            ordered = sorted(
                self.problems, key=lambda p: (rank.get(p.file, len(rank)), p.line or 0)
            )
            raise ConfigError(list(dict.fromkeys(ordered)))

    def _validate(
        self, cls: type[M], data: dict[str, Any], doc: YamlDocument, prefix: Loc
    ) -> M | None:
        """`cls` built from `data`, or None; every error and issue recorded at its line."""
        try:
            model = cls.model_validate(data, context={COLLECT: True})
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_input=False)
            self._issues(doc, prefix, (issue_from_error(prefix, err) for err in errors))
            return None
        if isinstance(model, CheckedModel):
            self._issues(doc, prefix, model.issues())
        return model

    def _body(
        self, doc: YamlDocument, loc: Loc, value: Any, allowed: Iterable[str], what: str
    ) -> dict[str, Any] | None:
        """`value` as a mapping without its unknown keys (each reported), or None."""
        if not isinstance(value, dict):
            self._problem(
                doc,
                loc,
                f"expected a mapping of keys {what}",
                "write key: value pairs, one per line",
            )
            return None
        allowed = sorted(allowed)
        unknown = [key for key in value if key not in allowed]
        for key in unknown:
            self._problem(
                doc, (*loc, key), f"unknown key '{key}' {what}", key_hint(str(key), allowed)
            )
        return {key: item for key, item in value.items() if key not in unknown}

    # project.yml

    def _settings(self, doc: YamlDocument) -> _Settings:
        data = (
            self._body(
                doc, (), {} if doc.data is None else doc.data, _PROJECT_KEYS, "in project.yml"
            )
            or {}
        )
        sources, source_names = self._section(doc, data, "sources", self._source)
        workspaces, workspace_names = self._section(doc, data, "workspaces", self._workspace)
        defaults = self._defaults(doc, data, source_names, workspace_names)
        return _Settings(
            doc.parsed,
            self._state(doc, data),
            self._metrics_file(doc, data),
            sources,
            workspaces,
            source_names,
            workspace_names,
            defaults,
        )

    def _section(
        self, doc: YamlDocument, data: dict[str, Any], section: str, build: Any
    ) -> tuple[dict[str, Any], frozenset[str]]:
        raw = data.get(section) or {}
        if not isinstance(raw, dict):
            self._problem(
                doc,
                (section,),
                f"{section} must map names to settings",
                f"write {section}: then one indented name: per entry",
            )
            return {}, frozenset()
        models = {name: build(doc, name, value) for name, value in raw.items()}
        return {n: m for n, m in models.items() if m is not None}, frozenset(map(str, raw))

    def _source(self, doc: YamlDocument, name: str, value: Any) -> Source | None:
        loc = ("sources", name)
        body = self._body(doc, loc, value, Source.model_fields, f"for source '{name}'")
        if body is None:
            return None
        if isinstance(body.get("url"), str):
            body["url"] = resolve_duckdb_url(body["url"], self.root)
        return self._validate(Source, body, doc, loc)

    def _workspace(self, doc: YamlDocument, name: str, value: Any) -> WorkspaceSettings | None:
        loc = ("workspaces", name)
        allowed = set(self.workspace_model.model_fields) - {"name"}
        body = self._body(doc, loc, value, allowed, f"for workspace '{name}'")
        if body is None:
            return None
        return self._validate(self.workspace_model, {**body, "name": name}, doc, loc)

    def _defaults(
        self,
        doc: YamlDocument,
        data: dict[str, Any],
        source_names: frozenset[str],
        workspace_names: frozenset[str],
    ) -> Defaults:
        body = self._body(
            doc, ("defaults",), data.get("defaults") or {}, Defaults.model_fields, "in defaults"
        )
        model = self._validate(Defaults, body or {}, doc, ("defaults",)) or Defaults()
        for key, names in (("source", source_names), ("workspace", workspace_names)):
            value = getattr(model, key)
            if value is not None and value not in names:
                self._problem(
                    doc,
                    ("defaults", key),
                    f"defaults.{key} '{value}' is not defined",
                    choices_hint(value, names, f"{key}s"),
                )
        return model

    def _state(self, doc: YamlDocument, data: dict[str, Any]) -> str:
        state = data.get("state", DEFAULT_STATE_URL)
        try:
            parse_url(state)
        except (ValueError, TypeError):
            self._problem(
                doc,
                ("state",),
                "state: not a SQLAlchemy URL",
                "write e.g. duckdb:///.sync/state.duckdb or postgresql+psycopg://...",
            )
            return DEFAULT_STATE_URL
        return resolve_duckdb_url(state, self.root)

    def _metrics_file(self, doc: YamlDocument, data: dict[str, Any]) -> Path | None:
        value = data.get("metrics_file")
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            self._problem(
                doc,
                ("metrics_file",),
                "metrics_file: must be a file path",
                "write a path such as /var/lib/node_exporter/textfile/cio_sync.prom; "
                "a relative path is read from the project directory",
            )
            return None
        return Path(os.path.normpath(self.root / Path(value).expanduser()))

    # syncs

    def _sync(self, doc: YamlDocument, settings: _Settings) -> _SyncEntry:
        data = doc.data if isinstance(doc.data, dict) else {}
        name = str(data.get("name", doc.path.stem))
        entry = _SyncEntry(name, doc, None, "", "", list(doc.unset))
        if not doc.problems and not isinstance(doc.data, dict):
            self._problem(
                doc,
                (),
                "a sync file must be a mapping of keys",
                "start with object: person and query: SELECT ...",
            )
        cls = self._sync_class(doc, data) if data else None
        if cls is None:
            return entry
        body = self._sync_body(doc, data, cls)
        body["sql"] = self._sql(doc, body, entry.unset)
        source = self._reference(doc, body, "source", settings)
        workspace = self._reference(doc, body, "workspace", settings)
        body.update(
            name=name, source=source, workspace=workspace, file=doc.file, line=doc.first_line or 1
        )
        model = self._validate(cls, body, doc, ())
        target = settings.workspaces.get(workspace)
        if model is not None and target is not None:
            self._issues(doc, (), workspace_issues(model, target))
        return entry._replace(model=model, source=source, workspace=workspace)

    def _sync_class(self, doc: YamlDocument, data: dict[str, Any]) -> type[SyncBase] | None:
        kind = data.get("object")
        choices = ", ".join(SYNC_MODELS)
        if kind is None:
            self._problem(doc, (), "missing key 'object'", f"add object: (one of {choices})")
        elif not isinstance(kind, str) or kind not in SYNC_MODELS:
            self._problem(
                doc,
                ("object",),
                f"unknown object '{kind}'",
                choices_hint(str(kind), SYNC_MODELS, "objects"),
            )
        else:
            return SYNC_MODELS[kind]
        return None

    def _sync_body(
        self, doc: YamlDocument, data: dict[str, Any], cls: type[SyncBase]
    ) -> dict[str, Any]:
        """The sync's keys, unknown ones (also inside person/guard/filter) reported and dropped."""
        kind = cls.model_fields["object"].default
        allowed = (set(cls.model_fields) - {"sql", "file", "line"}) | set(_SQL_KEYS)
        body = self._body(doc, (), data, allowed, f"for {a_noun(kind)} sync") or {}
        for key, nested in _NESTED_MODELS.items():
            if isinstance(body.get(key), dict):
                body[key] = self._body(doc, (key,), body[key], nested.model_fields, f"in {key}")
        self._check_behavior(doc, body, kind)
        return body

    def _check_behavior(self, doc: YamlDocument, body: dict[str, Any], kind: str) -> None:
        allowed = behaviors(kind)
        behavior = body.get("behavior", allowed[0])
        if not isinstance(behavior, str) or behavior not in allowed:
            self._problem(
                doc,
                ("behavior",),
                f"behavior '{behavior}' is not allowed for {a_noun(kind)} sync",
                f"use one of: {', '.join(allowed)}",
            )
            del body["behavior"]

    def _sql(self, doc: YamlDocument, body: dict[str, Any], unset: list[UnsetVariable]) -> str:
        """The sync's SQL, from exactly one of query, table and query_file."""
        given = {key: body.pop(key) for key in _SQL_KEYS if key in body}
        if len(given) != 1:
            found = f" (found {' and '.join(given)})" if given else ""
            self._problem(
                doc,
                tuple(given)[1:2],
                f"give exactly one of query, table and query_file{found}",
                "query: for SQL text, table: for a whole table, "
                "query_file: for a .sql file next to the sync",
            )
            return ""
        key, value = next(iter(given.items()))
        if not isinstance(value, str) or not value.strip():
            self._problem(doc, (key,), f"{key} must be non-empty text", f"write the {key}")
            return ""
        if key == "table":
            return f"SELECT * FROM {quote_table(value)}"
        if key == "query_file":
            return self._query_file(doc, value, unset)
        return value

    def _query_file(self, doc: YamlDocument, value: str, unset: list[UnsetVariable]) -> str:
        path = doc.path.parent / Path(value).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            where = self._display(doc.path.parent)
            self._problem(
                doc,
                ("query_file",),
                f"cannot read query_file '{value}': {_reason(exc)}",
                f"the path is relative to {where}/",
            )
            return ""
        file = self._display(path)
        result = interpolate(text, self.environ)
        for name, offset in result.unset:
            line = text.count("\n", 0, offset) + 1
            unset.append(UnsetVariable(name, file, line, ("query_file",)))
        for offset in result.malformed:
            self.problems.append(
                Problem(
                    file,
                    text.count("\n", 0, offset) + 1,
                    "'${' does not start a ${NAME} or ${NAME:-default} reference",
                    "write $${ for a literal ${",
                )
            )
        return result.text

    def _reference(
        self, doc: YamlDocument, body: dict[str, Any], key: str, settings: _Settings
    ) -> Any:
        """The source or workspace a sync names, else the default, else the only one."""
        value = body.get(key)
        names: frozenset[str] = getattr(settings, f"{key}_names")
        default: str | None = getattr(settings.defaults, key)
        if not settings.parsed:
            return value or default or ""  # project.yml is unreadable: nothing to check against
        if value is None and default is None and len(names) == 1:
            return next(iter(names))
        if value is None and default is None:
            choices = f"add {key}: ({', '.join(sorted(names))})" if names else f"define {key}s"
            hint = f"{choices} or set defaults.{key} in project.yml"
            self._problem(doc, (), f"no {key} given", hint)
        elif value is not None and isinstance(value, str) and value not in names:
            hint = choices_hint(value, names, f"{key}s in project.yml")
            self._problem(doc, (key,), f"unknown {key} '{value}'", hint)
        return default or "" if value is None else value

    # the whole project

    def _index(self, entries: list[_SyncEntry]) -> dict[str, _SyncEntry]:
        """Syncs by name; a name used again is reported at the later file."""
        by_name: dict[str, _SyncEntry] = {}
        for entry in entries:
            first = by_name.setdefault(entry.name, entry)
            if first is not entry:
                self._problem(
                    entry.doc,
                    ("name",),
                    f"sync name '{entry.name}' is already used by {first.doc.file}",
                    "give one of them another name:",
                )
        return by_name

    def _selection(
        self, selected: Sequence[str] | None, entries: dict[str, _SyncEntry]
    ) -> list[_SyncEntry]:
        if selected is None:
            return list(entries.values())
        self.problems.extend(unknown_sync(n, entries) for n in selected if n not in entries)
        return [entries[name] for name in dict.fromkeys(selected) if name in entries]

    def _report_unset(self, project_doc: YamlDocument, chosen: list[_SyncEntry]) -> None:
        """Unset variables used by the chosen syncs, their sources and workspaces, or globally."""
        refs = [r for r in project_doc.unset if r.loc[0] not in ("sources", "workspaces")]
        for entry in chosen:
            refs += entry.unset
            refs += project_doc.unset_under(("sources", entry.source))
            refs += project_doc.unset_under(("workspaces", entry.workspace))
        self.problems.extend(dict.fromkeys(ref.problem() for ref in refs))


def _is_yaml_name(path: Path) -> bool:
    return path.suffix in (".yml", ".yaml") and not path.name.startswith(".")


def _not_a_file(path: Path) -> str | None:
    """Why `path` (named like a sync file) cannot be read as one, or None when it can."""
    if path.is_file():
        return None
    if path.is_symlink() and not path.exists():
        return "is a symbolic link to nothing"
    if path.is_dir():
        return "is a directory"
    return "is not a regular file (a pipe, socket or device)"


def _reason(exc: Exception) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
