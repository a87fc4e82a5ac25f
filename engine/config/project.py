"""A loaded project, where it lives, and the paths and names inside it."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from engine.config.models import DEFAULT_STATE_URL, Model, Source
from engine.config.syncs import Sync, SyncBase
from engine.config.urls import display_url
from engine.config.workspace import WorkspaceSettings
from engine.errors import ConfigError, Problem


class Project(Model):
    """A loaded project: its sources, workspaces and syncs, every default resolved."""

    root: Path
    state: str = DEFAULT_STATE_URL
    metrics_file: Path | None = None  # absolute: resolved against `root` by the loader
    sources: dict[str, Source] = {}
    workspaces: dict[str, WorkspaceSettings] = {}
    syncs: dict[str, Sync] = {}

    def select(self, names: Sequence[str]) -> list[Sync]:
        """The syncs named, in the order given; an unknown name raises ConfigError."""
        unknown = [name for name in names if name not in self.syncs]
        if unknown:
            raise ConfigError([unknown_sync(name, self.syncs) for name in unknown])
        return [self.syncs[name] for name in dict.fromkeys(names)]

    def source_of(self, sync: SyncBase) -> Source:
        """The source a sync reads from."""
        return self.sources[sync.source]

    def workspace_of(self, sync: SyncBase) -> WorkspaceSettings:
        """The workspace a sync sends to."""
        return self.workspaces[sync.workspace]

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, display_url(value) if name == "state" else value


def unknown_sync(name: str, known: Iterable[str]) -> Problem:
    return Problem("syncs", None, f"no sync named '{name}'", choices_hint(name, known, "syncs"))


def choices_hint(value: str, known: Iterable[str], what: str) -> str:
    known = sorted(known)
    if not known:
        return f"there are no {what}"
    close = difflib.get_close_matches(value, known, n=1)
    listing = ", ".join(known)
    return f"did you mean '{close[0]}'? ({what}: {listing})" if close else f"{what}: {listing}"


def quote_table(table: str) -> str:
    """A table name, dotted parts quoted where SQL needs it (`"My Table"`, reserved words)."""
    parts = re.findall(r'"(?:[^"]|"")*"|[^."]+', table.strip())
    return ".".join(p if p.startswith('"') else _quoted(p.strip()) for p in parts)


# SQLAlchemy's generic rule for when a name needs quotes (`IdentifierPreparer.quote` of its
# `DefaultDialect`), copied so that loading a project does not import SQLAlchemy; a test holds
# the copy to SQLAlchemy's answers
_RESERVED_WORDS = frozenset(
    (
        "all",
        "analyse",
        "analyze",
        "and",
        "any",
        "array",
        "as",
        "asc",
        "asymmetric",
        "authorization",
        "between",
        "binary",
        "both",
        "case",
        "cast",
        "check",
        "collate",
        "column",
        "constraint",
        "create",
        "cross",
        "current_date",
        "current_role",
        "current_time",
        "current_timestamp",
        "current_user",
        "default",
        "deferrable",
        "desc",
        "distinct",
        "do",
        "else",
        "end",
        "except",
        "false",
        "for",
        "foreign",
        "freeze",
        "from",
        "full",
        "grant",
        "group",
        "having",
        "ilike",
        "in",
        "initially",
        "inner",
        "intersect",
        "into",
        "is",
        "isnull",
        "join",
        "leading",
        "left",
        "like",
        "limit",
        "localtime",
        "localtimestamp",
        "natural",
        "new",
        "not",
        "notnull",
        "null",
        "off",
        "offset",
        "old",
        "on",
        "only",
        "or",
        "order",
        "outer",
        "overlaps",
        "placing",
        "primary",
        "references",
        "right",
        "select",
        "session_user",
        "set",
        "similar",
        "some",
        "symmetric",
        "table",
        "then",
        "to",
        "trailing",
        "true",
        "union",
        "unique",
        "user",
        "using",
        "verbose",
        "when",
        "where",
    )
)
_LEGAL_NAME = re.compile(r"^[A-Z0-9_$]+$", re.I)


def _quoted(name: str) -> str:
    """`name` in double quotes when it is empty, reserved, starts with a digit or `$`, holds
    other characters than letters, digits, `_` and `$`, or upper case; else as it is."""
    lower = name.lower()
    plain = (
        bool(name)
        and lower not in _RESERVED_WORDS
        and name[0] not in "0123456789$"
        and _LEGAL_NAME.match(name) is not None
        and lower == name
    )
    return name if plain else '"' + name.replace('"', '""') + '"'


_DUCKDB_URL = re.compile(r"(?P<scheme>duckdb(?:\+\w+)?:///)(?P<path>[^?#]*)(?P<rest>.*)", re.S)


def resolve_duckdb_url(url: str, root: Path) -> str:
    """A DuckDB URL whose relative database path is made absolute under `root`.

    In-memory and MotherDuck databases, absolute paths, other dialects and the query string
    are left as written.
    """
    match = _DUCKDB_URL.fullmatch(url)
    if not match:
        return url
    path = match["path"]
    if not path or path.startswith((":memory:", "md:", "motherduck:")):
        return url
    absolute = os.path.normpath(root / Path(path).expanduser())
    return f"{match['scheme']}{absolute}{match['rest']}"


def find_project_root(explicit: str | None = None) -> Path:
    """The project directory: `explicit` (--project), else $SYNC_PROJECT, else the cwd.

    Raises ConfigError when the directory holds no `syncs/`.
    """
    root = Path(explicit or os.environ.get("SYNC_PROJECT") or os.getcwd()).expanduser().resolve()
    if not (root / "syncs").is_dir():
        raise ConfigError(
            [
                Problem(
                    str(root),
                    None,
                    "no syncs/ directory here",
                    "run in a project directory, pass --project DIR, set "
                    "SYNC_PROJECT, or scaffold one with `sync init`",
                )
            ]
        )
    return root
