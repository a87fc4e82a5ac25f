"""The YAML contract of a sync project (SPEC §2) as frozen, typed models, and its loader.

`load_project(root)` reads `root/syncs/project.yml` and every other `syncs/*.yml|*.yaml` (one
sync a file, sorted by name), interpolates `${VAR}` in every string, resolves defaults and
relative paths, and raises a single `ConfigError` listing every problem it found, each with its
file, line and a hint. Models are pydantic v2, frozen, and forbid unknown keys.

Semantic checks that span several keys (exactly one of event_name / event_name_column, guard
only on mirror syncs, reserved attribute names, ...) live in each model's `issues()`. Building
a model directly raises on the first issue; the loader collects them all instead.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, Self, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from sqlalchemy.engine import make_url
from sqlalchemy.engine.default import DefaultDialect
from sqlalchemy.exc import ArgumentError

from engine.errors import ConfigError, Problem
from engine.yamlsource import Loc, UnsetVariable, YamlDocument, interpolate, read_yaml

DEFAULT_STATE_URL = "duckdb:///.sync/state.duckdb"
# Customer.io's limits, as in connectors/customerio/limits.py; not imported from there because
# the connectors package imports this module.
DEFAULT_RATE_LIMIT = 150
DEFAULT_APP_RATE_LIMIT = 10
MAX_ATTRIBUTE_NAME_BYTES = 150
MAX_ATTRIBUTES_PER_CALL = 300
TRACK_URLS = {"us": "https://track.customer.io", "eu": "https://track-eu.customer.io"}
APP_URLS = {"us": "https://api.customer.io", "eu": "https://api-eu.customer.io"}

# Attribute names a sync's `fields` may not use (specs/customerio-api.md §5.3). A person's
# `id`, `email` and `phone` are reserved only when they are the sync's own identifier: as
# attributes of a person identified otherwise they set that person's id, email or phone.
RESERVED_PERSON_ATTRIBUTES = frozenset(
    {
        "cio_id",
        "anonymous_id",
        "_created_in_customerio_at",
        "_last_emailed",
        "cio_subscription_preferences",
        "_cio_subscription_preferences_computed",
        "_update",
        "_timestamp",
        "cio_relationships",
    }
)
RESERVED_OBJECT_ATTRIBUTES = frozenset(
    {"cio_object_id", "object_id", "objectId", "relationship", "_relationship"}
)

PersonIdentifier = Literal["id", "email", "cio_id", "phone"]
_COLLECT = "collect_issues"
_SYNC_NAME = re.compile(r"[\w.-]+")


class Issue(NamedTuple):
    """A problem found by a model's own checks, located by a key path inside the model."""

    loc: Loc
    message: str
    hint: str


class Model(BaseModel):
    """Base of every configuration model: frozen, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class CheckedModel(Model):
    """A model with checks across keys; see the module docstring."""

    def issues(self) -> list[Issue]:
        """Every problem of this model that its field types cannot express."""
        return []

    @model_validator(mode="after")
    def _raise_first_issue(self, info: ValidationInfo) -> Self:
        if not (info.context or {}).get(_COLLECT):
            for issue in self.issues():
                raise _custom_error(issue.message, issue.hint)
        return self


def _custom_error(message: str, hint: str) -> PydanticCustomError:
    return PydanticCustomError("config", "{message}", {"message": message, "hint": hint})


# --- sources and workspaces ---------------------------------------------------------------


def display_url(url: str) -> str:
    """A SQLAlchemy URL with its password hidden, fit for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return "<a URL SQLAlchemy cannot parse>"


class Source(Model):
    """A database to read rows from: any SQLAlchemy URL."""

    url: str

    @field_validator("url")
    @classmethod
    def _parses(cls, url: str) -> str:
        try:
            make_url(url)
        except (ArgumentError, ValueError):
            raise _custom_error(
                "not a SQLAlchemy URL",
                "write dialect+driver://user:password@host/db, e.g. duckdb:///warehouse.duckdb "
                "or postgresql+psycopg://user:${PGPASSWORD}@host/db",
            ) from None
        return url

    def display_url(self) -> str:
        """The URL with its password hidden."""
        return display_url(self.url)

    def __repr_args__(self) -> Iterator[tuple[str, Any]]:
        yield "url", self.display_url()


class Workspace(CheckedModel):
    """A Customer.io workspace (or the embedded emulator) and how to pace requests to it."""

    name: str
    emulator: bool = False
    site_id: str | None = None
    track_api_key: SecretStr | None = None
    app_api_key: SecretStr | None = None
    region: Literal["us", "eu"] = "us"
    track_url: str | None = None
    app_url: str | None = None
    rate_limit: PositiveInt = DEFAULT_RATE_LIMIT
    app_rate_limit: PositiveInt = DEFAULT_APP_RATE_LIMIT
    concurrency: PositiveInt = 8
    timeout_s: PositiveFloat = 30
    max_retries: NonNegativeInt = 8
    max_batch_ops: Annotated[int, Field(ge=1, le=10_000)] = 1000

    @field_validator("track_url", "app_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None and not re.match(r"https?://[^/\s]+", url):
            raise _custom_error("not an http(s) URL", "write it like https://track.customer.io")
        return url.rstrip("/") if url else url

    def resolved_track_url(self) -> str:
        """The Track API base URL: `track_url`, else the region's."""
        return self.track_url or TRACK_URLS[self.region]

    def resolved_app_url(self) -> str:
        """The App API base URL: `app_url`, else the region's."""
        return self.app_url or APP_URLS[self.region]

    def issues(self) -> list[Issue]:
        if self.emulator:
            return []
        return [
            *self._credential_issue("site_id", self.site_id),
            *self._credential_issue("track_api_key", self._secret(self.track_api_key)),
        ]

    def _credential_issue(self, key: str, value: str | None) -> list[Issue]:
        hint = (
            f"set {key}: (e.g. {key}: ${{CIO_{key.upper()}}}), "
            "or emulator: true for the local emulator"
        )
        if value is None:
            return [Issue((), f"workspace '{self.name}' has no {key}", hint)]
        if not value.strip():
            return [Issue((key,), f"{key} of workspace '{self.name}' is empty", hint)]
        return []

    @staticmethod
    def _secret(value: SecretStr | None) -> str | None:
        return None if value is None else value.get_secret_value()


class _Defaults(Model):
    source: str | None = None
    workspace: str | None = None


# --- parts of a sync ----------------------------------------------------------------------


class PersonRef(Model):
    """Which column identifies the person a device, event or relationship belongs to."""

    identifier: PersonIdentifier = "id"
    column: str


class Guard(Model):
    """How many removals a mirror run may make: a count, or a percentage of the snapshot."""

    max_removals: int | str = "20%"

    @field_validator("max_removals", mode="before")
    @classmethod
    def _count_or_percentage(cls, value: Any) -> int | str:
        hint = 'write a count (e.g. 100) or a percentage of the snapshot (e.g. "20%")'
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        if isinstance(value, str):
            text = value.strip()
            if text.isdigit():
                return int(text)
            match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*%", text)
            if match and Fraction(match.group(1)) <= 100:
                return f"{match.group(1)}%"
        raise _custom_error("must be an integer >= 0 or a percentage from 0% to 100%", hint)

    def limit(self, snapshot_size: int) -> int:
        """The most removals allowed against a snapshot of `snapshot_size` keys."""
        if isinstance(self.max_removals, int):
            return self.max_removals
        share = Fraction(self.max_removals.rstrip("%")) * snapshot_size / 100
        return int(share)  # floor: removals > floor(x) exactly when removals > x

    def describe(self) -> str:
        """The guard in words, for plans and errors."""
        if isinstance(self.max_removals, int):
            return f"at most {self.max_removals} removals"
        return f"at most {self.max_removals} of the snapshot removed"


class Filter(Model):
    """Event syncs: only rows whose event name is listed are sent."""

    event_names: tuple[str, ...] | None = None

    @field_validator("event_names", mode="before")
    @classmethod
    def _one_name(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value


# --- syncs --------------------------------------------------------------------------------


def _unique(columns: Iterable[str | None]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(c for c in columns if c))


class SyncBase(CheckedModel):
    """Keys common to every sync (SPEC §2.2). Subclasses fix `object` and the behaviors."""

    name: str
    description: str = ""
    source: str
    workspace: str
    object: str
    behavior: str
    sql: str
    fields: dict[str, str] | None = None
    nulls: Literal["clear", "skip"] = "clear"
    enabled: bool = True
    schedule: str | None = None
    guard: Guard = Guard()
    file: str = ""
    line: int = 0

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if not _SYNC_NAME.fullmatch(name):
            raise _custom_error(
                "a name may hold only letters, digits, '_', '-' and '.'",
                "set name: to a plain word, or rename the file",
            )
        return name

    @field_validator("fields", mode="before")
    @classmethod
    def _list_of_columns(cls, value: Any) -> Any:
        """`fields: [a, b]` is short for `fields: {a: a, b: b}`."""
        if isinstance(value, list) and all(isinstance(c, str) for c in value):
            return {column: column for column in value}
        return value

    @field_validator("schedule")
    @classmethod
    def _cron(cls, schedule: str | None) -> str | None:
        if schedule is not None and not is_cron(schedule):
            raise _custom_error(
                "not a cron expression",
                "write five fields in UTC: minute hour day-of-month month day-of-week, "
                'e.g. "0 6 * * *" (quote it), or @hourly / @daily',
            )
        return schedule

    @property
    def is_mirror(self) -> bool:
        """Whether a run removes what left the source."""
        return self.behavior == "mirror"

    def key_columns(self) -> tuple[str, ...]:
        """The columns identifying a record, in order."""
        raise NotImplementedError

    def reserved_columns(self) -> tuple[str, ...]:
        """Every column the object's keys use; default `fields` are all the other columns."""
        return self.key_columns()

    def named_columns(self) -> tuple[str, ...]:
        """Every source column the sync names; each must be in the query's result."""
        return _unique([*self.reserved_columns(), *(self.fields or {}).values()])

    def reserved_attributes(self) -> frozenset[str]:
        """Attribute names `fields` may not use, for this object."""
        return frozenset()

    def issues(self) -> list[Issue]:
        return [*self._guard_issues(), *self._field_issues()]

    def _guard_issues(self) -> list[Issue]:
        if "guard" in self.model_fields_set and not self.is_mirror:
            return [
                Issue(
                    ("guard",),
                    f"guard applies to mirror syncs; this one is {self.behavior}",
                    "remove guard:, or set behavior: mirror",
                )
            ]
        return []

    def _field_issues(self) -> list[Issue]:
        fields = self.fields or {}
        issues = [
            issue
            for attr, column in fields.items()
            for issue in self._attribute_issues(attr, column)
        ]
        if len(fields) > MAX_ATTRIBUTES_PER_CALL:
            issues.append(
                Issue(
                    ("fields",),
                    f"{len(fields)} fields; Customer.io takes at most {MAX_ATTRIBUTES_PER_CALL}",
                    "drop the fields you do not need",
                )
            )
        return issues

    def _attribute_issues(self, attr: str, column: str) -> list[Issue]:
        loc = ("fields", attr)
        if attr in self.reserved_attributes():
            return [
                Issue(
                    loc,
                    f"'{attr}' is a reserved attribute of {_a(self.object)}",
                    "send the column under another attribute name",
                )
            ]
        if not attr or len(attr.encode()) > MAX_ATTRIBUTE_NAME_BYTES:
            return [
                Issue(
                    loc,
                    f"attribute names take 1 to {MAX_ATTRIBUTE_NAME_BYTES} bytes",
                    "use a shorter attribute name",
                )
            ]
        if not column:
            return [Issue(loc, f"field '{attr}' names no column", "write the source column")]
        return []


def _a(noun: str) -> str:
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"


def _default_key(data: Any) -> Any:
    """`key` defaults to the column named like the identifier."""
    if isinstance(data, dict) and "key" not in data:
        return {**data, "key": data.get("identifier", "id")}
    return data


class PersonSync(SyncBase):
    """People: identify (upsert), update only existing people, or mirror (delete/suppress)."""

    object: Literal["person"] = "person"
    behavior: Literal["upsert", "update_only", "mirror"] = "upsert"
    identifier: PersonIdentifier = "id"
    key: str
    on_remove: Literal["delete", "suppress"] = "delete"

    @model_validator(mode="before")
    @classmethod
    def _key_from_identifier(cls, data: Any) -> Any:
        return _default_key(data)

    def key_columns(self) -> tuple[str, ...]:
        return (self.key,)

    def reserved_attributes(self) -> frozenset[str]:
        return RESERVED_PERSON_ATTRIBUTES | {self.identifier}


class DeviceSync(SyncBase):
    """Devices of people: add (upsert) or mirror (delete those gone)."""

    object: Literal["device"] = "device"
    behavior: Literal["upsert", "mirror"] = "upsert"
    person: PersonRef
    key: str
    platform: str
    last_used: str | None = None

    def key_columns(self) -> tuple[str, ...]:
        return (self.person.column, self.key)

    def reserved_columns(self) -> tuple[str, ...]:
        return _unique([self.person.column, self.key, self.platform, self.last_used])


class EventSync(SyncBase):
    """Events, pages or screens: each row (by `key`) is sent once."""

    object: Literal["event"] = "event"
    behavior: Literal["send"] = "send"
    person: PersonRef
    key: tuple[str, ...]
    event_name: str | None = None
    event_name_column: str | None = None
    event_type: Literal["event", "page", "screen"] = "event"
    event_type_column: str | None = None
    timestamp: str | None = None
    filter: Filter = Filter()

    @field_validator("key", mode="before")
    @classmethod
    def _one_column(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value

    def key_columns(self) -> tuple[str, ...]:
        return self.key

    def reserved_columns(self) -> tuple[str, ...]:
        return _unique(
            [
                self.person.column,
                *self.key,
                self.event_name_column,
                self.event_type_column,
                self.timestamp,
            ]
        )

    def issues(self) -> list[Issue]:
        return [*super().issues(), *self._event_issues()]

    def _event_issues(self) -> Iterator[Issue]:
        if not self.key:
            yield Issue(("key",), "key lists no column", "name the column(s) unique per event")
        if (self.event_name is None) == (self.event_name_column is None):
            yield Issue(
                ("event_name",) if self.event_name else (),
                "give exactly one of event_name and event_name_column",
                "event_name: for one name for every row, event_name_column: to read it",
            )
        if self.event_type_column and "event_type" in self.model_fields_set:
            yield Issue(
                ("event_type",),
                "give event_type or event_type_column, not both",
                "remove one of them",
            )
        if self.filter.event_names == ():
            yield Issue(
                ("filter",),
                "filter.event_names is empty, so nothing would be sent",
                "list the event names to send, or remove filter:",
            )


class CollectionSync(SyncBase):
    """A collection replaced whole by the query's rows."""

    object: Literal["collection"] = "collection"
    behavior: Literal["replace"] = "replace"
    collection: str

    def key_columns(self) -> tuple[str, ...]:
        return ()


class ManualSegmentSync(SyncBase):
    """Members of a manual segment: add (upsert), or add and remove (mirror)."""

    object: Literal["manual_segment"] = "manual_segment"
    behavior: Literal["upsert", "mirror"] = "upsert"
    segment_id: PositiveInt | None = None
    segment: str | None = None
    identifier: Literal["id", "email", "cio_id"] = "id"
    key: str
    # Membership has no attributes: the query's other columns are not sent, nor compared, so a
    # change to them plans nothing. Giving `fields:` is an issue (below).
    fields: dict[str, str] | None = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _key_from_identifier(cls, data: Any) -> Any:
        return _default_key(data)

    def key_columns(self) -> tuple[str, ...]:
        return (self.key,)

    def issues(self) -> list[Issue]:
        issues = super().issues()
        if (self.segment_id is None) == (self.segment is None):
            issues.append(
                Issue(
                    (),
                    "give exactly one of segment_id and segment",
                    "segment_id: <number> for an existing segment, segment: <name> "
                    "to find or create it",
                )
            )
        if "fields" in self.model_fields_set:
            issues.append(
                Issue(
                    ("fields",),
                    "a manual_segment sync takes no fields",
                    "remove fields: (segment membership has no attributes)",
                )
            )
        return issues


class ObjectSync(SyncBase):
    """Custom objects of one type: identify (upsert) or mirror (delete those gone)."""

    object: Literal["object"] = "object"
    behavior: Literal["upsert", "mirror"] = "upsert"
    object_type_id: PositiveInt
    key: str

    def key_columns(self) -> tuple[str, ...]:
        return (self.key,)

    def reserved_attributes(self) -> frozenset[str]:
        return RESERVED_OBJECT_ATTRIBUTES


class RelationshipSync(SyncBase):
    """Person-object relationships, keyed by (person, object); `fields` are their attributes."""

    object: Literal["relationship"] = "relationship"
    behavior: Literal["upsert", "mirror"] = "upsert"
    object_type_id: PositiveInt
    object_key: str
    person: PersonRef

    def key_columns(self) -> tuple[str, ...]:
        return (self.person.column, self.object_key)

    def reserved_attributes(self) -> frozenset[str]:
        return RESERVED_OBJECT_ATTRIBUTES


Sync = Annotated[
    PersonSync
    | DeviceSync
    | EventSync
    | CollectionSync
    | ManualSegmentSync
    | ObjectSync
    | RelationshipSync,
    Field(discriminator="object"),
]
SYNC_MODELS: dict[str, type[SyncBase]] = {
    cls.model_fields["object"].default: cls
    for cls in (
        PersonSync,
        DeviceSync,
        EventSync,
        CollectionSync,
        ManualSegmentSync,
        ObjectSync,
        RelationshipSync,
    )
}


def behaviors(object_name: str) -> tuple[str, ...]:
    """The behaviors an object allows, the default first."""
    return get_args(SYNC_MODELS[object_name].model_fields["behavior"].annotation)


# --- the project --------------------------------------------------------------------------


class Project(Model):
    """A loaded project: its sources, workspaces and syncs, every default resolved."""

    root: Path
    state: str = DEFAULT_STATE_URL
    sources: dict[str, Source] = {}
    workspaces: dict[str, Workspace] = {}
    syncs: dict[str, Sync] = {}

    def select(self, names: Sequence[str]) -> list[Sync]:
        """The syncs named, in the order given; an unknown name raises ConfigError."""
        unknown = [name for name in names if name not in self.syncs]
        if unknown:
            raise ConfigError([_unknown_sync(name, self.syncs) for name in unknown])
        return [self.syncs[name] for name in dict.fromkeys(names)]

    def source_of(self, sync: SyncBase) -> Source:
        """The source a sync reads from."""
        return self.sources[sync.source]

    def workspace_of(self, sync: SyncBase) -> Workspace:
        """The workspace a sync sends to."""
        return self.workspaces[sync.workspace]

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, display_url(value) if name == "state" else value


def _unknown_sync(name: str, known: Iterable[str]) -> Problem:
    return Problem("syncs", None, f"no sync named '{name}'", _choices_hint(name, known, "syncs"))


def _choices_hint(value: str, known: Iterable[str], what: str) -> str:
    known = sorted(known)
    if not known:
        return f"there are no {what}"
    close = difflib.get_close_matches(value, known, n=1)
    listing = ", ".join(known)
    return f"did you mean '{close[0]}'? ({what}: {listing})" if close else f"{what}: {listing}"


# --- small helpers ------------------------------------------------------------------------

_CRON_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_CRON_FIELDS = (
    (0, 59, ()),
    (0, 23, ()),
    (1, 31, ()),
    (1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
    (0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)
_CRON_ITEM = re.compile(r"(\*|\w+(?:-\w+)?)(?:/(\d+))?")


def is_cron(expression: str) -> bool:
    """A light syntax check of a five-field cron expression (or an @macro)."""
    parts = expression.split()
    if len(parts) == 1 and parts[0].lower() in _CRON_MACROS:
        return True
    return len(parts) == 5 and all(
        _cron_field_ok(part, *spec) for part, spec in zip(parts, _CRON_FIELDS, strict=True)
    )


def _cron_field_ok(part: str, low: int, high: int, names: tuple[str, ...]) -> bool:
    return all(_cron_item_ok(item, low, high, names) for item in part.lower().split(","))


def _cron_item_ok(item: str, low: int, high: int, names: tuple[str, ...]) -> bool:
    match = _CRON_ITEM.fullmatch(item)
    if not match or match.group(2) == "0":
        return False
    if match.group(1) == "*":
        return True
    ends = match.group(1).split("-")
    values = [names.index(e) + low if e in names else int(e) if e.isdigit() else -1 for e in ends]
    return all(low <= v <= high for v in values) and values == sorted(values)


def quote_table(table: str) -> str:
    """A table name, dotted parts quoted where SQL needs it (`"My Table"`, reserved words)."""
    preparer = DefaultDialect().identifier_preparer
    parts = re.findall(r'"(?:[^"]|"")*"|[^."]+', table.strip())
    return ".".join(p if p.startswith('"') else preparer.quote(p.strip()) for p in parts)


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


# --- loading ------------------------------------------------------------------------------

_SQL_KEYS = ("query", "table", "query_file")
_NESTED_MODELS: dict[str, type[Model]] = {"person": PersonRef, "guard": Guard, "filter": Filter}
_PROJECT_KEYS = ("state", "sources", "workspaces", "defaults")
_MISSING_HINTS = {
    "person": "add person: {identifier: id, column: <column>}",
    "column": "add column: <the column holding the person's identifier>",
    "key": "add key: <the column identifying each record>",
    "platform": "add platform: <the column holding ios or android>",
    "collection": "add collection: <the collection's name>",
    "object_type_id": "add object_type_id: <the object type's number>",
    "object_key": "add object_key: <the column holding the object's id>",
    "url": "add url: <a SQLAlchemy URL>",
}
_TYPE_HINTS = {
    "int_parsing": "write a whole number",
    "int_type": "write a whole number",
    "int_from_float": "write a whole number",
    "float_parsing": "write a number",
    "bool_parsing": "write true or false",
    "bool_type": "write true or false",
    "string_type": "write text (quote it if YAML reads it as a number, date or boolean)",
    "literal_error": "use one of the values listed",
    "dict_type": "write a mapping of keys",
    "model_type": "write a mapping of keys",
    "tuple_type": "write a list",
    "greater_than": "raise the value",
    "greater_than_equal": "raise the value",
    "less_than_equal": "lower the value",
}


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


def load_project(root: Path | str, selected: Sequence[str] | None = None) -> Project:
    """Load the project at `root`: `syncs/project.yml` and one sync per other YAML file.

    `selected` names the syncs the command will use (None: all). Every problem of every file
    is collected; an unset `${VAR}` counts only when a selected sync uses it, directly or
    through its source or workspace. Raises ConfigError listing them all, each with its file
    (relative to `root`), line and hint.
    """
    return _ProjectLoader(Path(root), os.environ).load(selected)


class _Settings(NamedTuple):
    parsed: bool
    state: str
    sources: dict[str, Source]
    workspaces: dict[str, Workspace]
    source_names: frozenset[str]
    workspace_names: frozenset[str]
    defaults: _Defaults


class _SyncEntry(NamedTuple):
    name: str
    doc: YamlDocument
    model: SyncBase | None
    source: str
    workspace: str
    unset: list[UnsetVariable]


class _ProjectLoader:
    """One load of a project; gathers problems as it goes and raises them together."""

    def __init__(self, root: Path, environ: Mapping[str, str]) -> None:
        self.root = root.expanduser().resolve()
        self.environ = environ
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
            "sources": settings.sources,
            "workspaces": settings.workspaces,
            "syncs": syncs,
        }
        return Project.model_validate(fields, context={_COLLECT: True})

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
        paths = sorted((p for p in syncs_dir.iterdir() if _is_yaml_file(p)), key=lambda p: p.name)
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
        self, cls: type[Model], data: dict[str, Any], doc: YamlDocument, prefix: Loc
    ) -> Any:
        """`cls` built from `data`, or None; every error and issue recorded at its line."""
        try:
            model = cls.model_validate(data, context={_COLLECT: True})
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_input=False)
            self._issues(doc, prefix, (_issue_from_error(prefix, err) for err in errors))
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
                doc, (*loc, key), f"unknown key '{key}' {what}", _key_hint(str(key), allowed)
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

    def _workspace(self, doc: YamlDocument, name: str, value: Any) -> Workspace | None:
        loc = ("workspaces", name)
        allowed = set(Workspace.model_fields) - {"name"}
        body = self._body(doc, loc, value, allowed, f"for workspace '{name}'")
        if body is None:
            return None
        return self._validate(Workspace, {**body, "name": name}, doc, loc)

    def _defaults(
        self,
        doc: YamlDocument,
        data: dict[str, Any],
        source_names: frozenset[str],
        workspace_names: frozenset[str],
    ) -> _Defaults:
        body = self._body(
            doc, ("defaults",), data.get("defaults") or {}, _Defaults.model_fields, "in defaults"
        )
        model = self._validate(_Defaults, body or {}, doc, ("defaults",)) or _Defaults()
        for key, names in (("source", source_names), ("workspace", workspace_names)):
            value = getattr(model, key)
            if value is not None and value not in names:
                self._problem(
                    doc,
                    ("defaults", key),
                    f"defaults.{key} '{value}' is not defined",
                    _choices_hint(value, names, f"{key}s"),
                )
        return model

    def _state(self, doc: YamlDocument, data: dict[str, Any]) -> str:
        state = data.get("state", DEFAULT_STATE_URL)
        try:
            make_url(state)
        except (ArgumentError, ValueError, TypeError):
            self._problem(
                doc,
                ("state",),
                "state: not a SQLAlchemy URL",
                "write e.g. duckdb:///.sync/state.duckdb or postgresql+psycopg://...",
            )
            return DEFAULT_STATE_URL
        return resolve_duckdb_url(state, self.root)

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
                _choices_hint(str(kind), SYNC_MODELS, "objects"),
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
        body = self._body(doc, (), data, allowed, f"for {_a(kind)} sync") or {}
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
                f"behavior '{behavior}' is not allowed for {_a(kind)} sync",
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
            hint = _choices_hint(value, names, f"{key}s in project.yml")
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
        self.problems.extend(_unknown_sync(n, entries) for n in selected if n not in entries)
        return [entries[name] for name in dict.fromkeys(selected) if name in entries]

    def _report_unset(self, project_doc: YamlDocument, chosen: list[_SyncEntry]) -> None:
        """Unset variables used by the chosen syncs, their sources and workspaces, or globally."""
        refs = [r for r in project_doc.unset if r.loc[0] not in ("sources", "workspaces")]
        for entry in chosen:
            refs += entry.unset
            refs += project_doc.unset_under(("sources", entry.source))
            refs += project_doc.unset_under(("workspaces", entry.workspace))
        self.problems.extend(dict.fromkeys(ref.problem() for ref in refs))


def _is_yaml_file(path: Path) -> bool:
    return path.suffix in (".yml", ".yaml") and not path.name.startswith(".") and path.is_file()


def _reason(exc: Exception) -> str:
    return exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__


def _key_hint(key: str, allowed: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    return f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(allowed)}"


def _issue_from_error(prefix: Loc, error: Any) -> Issue:
    """A pydantic error as an issue: what is wrong, at which key, and what to write."""
    loc = tuple(part for part in error["loc"] if part != "[key]")
    dotted = ".".join(str(part) for part in (*prefix, *loc))
    kind = error["type"]
    if kind == "missing":
        last = str(loc[-1]) if loc else ""
        return Issue(loc, f"missing key '{dotted}'", _MISSING_HINTS.get(last, f"add {last}:"))
    if kind == "extra_forbidden":
        return Issue(loc, f"unknown key '{dotted}'", "remove it")
    message = f"{dotted}: {error['msg']}" if dotted else error["msg"]
    hint = (error.get("ctx") or {}).get("hint") or _TYPE_HINTS.get(kind, "correct the value")
    return Issue(loc, message, hint)
