"""The seven sync types of SPEC §2.2, each described in one place.

A sync type declares its traits (delivered whole or per record, append-only, delivered in the
first phase of `run --all`) and answers for its columns: which identify a record, which play a
role (a device's platform, an event's name...), which hold emails. The runner, the diff and
extraction ask the type; they do not branch on its name.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Annotated, Any, ClassVar, Literal, get_args

from pydantic import Field, PositiveInt, field_validator, model_validator

from engine.config.cron import cron_problem
from engine.config.models import (
    CheckedModel,
    Filter,
    Guard,
    Incremental,
    Issue,
    PersonIdentifier,
    PersonRef,
    Verify,
    custom_error,
)

_SYNC_NAME = re.compile(r"[\w.-]+")


def _unique(columns: Iterable[str | None]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(c for c in columns if c))


class SyncBase(CheckedModel):
    """Keys common to every sync (SPEC §2.2). Subclasses fix `object` and the behaviors."""

    whole: ClassVar[bool] = False  # the query's result is one record, replaced whole
    append_only: ClassVar[bool] = False  # a delivered record is never updated nor removed
    first_phase: ClassVar[bool] = False  # others refer to its records: `run --all` sends it first
    sends_attributes: ClassVar[bool] = True  # its columns become the destination's attributes

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
    incremental: Incremental | None = None
    verify: Verify | None = None
    file: str = ""
    line: int = 0

    @field_validator("name")
    @classmethod
    def _plain_name(cls, name: str) -> str:
        if not _SYNC_NAME.fullmatch(name):
            raise custom_error(
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
        problem = None if schedule is None else cron_problem(schedule)
        if problem:
            raise custom_error(
                f"not a cron expression: {problem}",
                "write five fields in UTC: minute hour day-of-month month day-of-week, each *, "
                'a number or name, a-b, */n, a-b/n or a list, e.g. "0 9 * * MON" (quote it); '
                "or @hourly, @daily, @weekly, @monthly, @yearly",
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
        cursor = self.incremental.cursor if self.incremental else None
        return _unique([*self.reserved_columns(), *(self.fields or {}).values(), cursor])

    def roles(self) -> dict[str, str | None]:
        """Columns that play a part other than attribute (role → column, None when unset)."""
        return {}

    def email_columns(self) -> frozenset[str]:
        """Key columns holding emails: compared as lower(trim(value)) (SPEC §2.2)."""
        return frozenset()

    def event_filter(self) -> frozenset[str] | None:
        """The only event names sent, or None for all (event syncs)."""
        return None

    def event_name_constant(self) -> str | None:
        """The one event name of every row (event syncs with `event_name:`)."""
        return None

    def removal_action(self) -> str | None:
        """What a removal does, when the type lets the sync choose (a person mirror's on_remove)."""
        return None

    def stable_column(self) -> str | None:
        """The column of an id that never changes, by which a changed identifier is recognised
        as the same record under a new key (a `rekey`); None when the sync names none."""
        return None

    def whole_key(self) -> str:
        """The one record's key of a type delivered whole."""
        raise NotImplementedError

    def issues(self) -> list[Issue]:
        return [*self._guard_issues(), *self._column_issues(), *self._incremental_issues()]

    def _incremental_issues(self) -> list[Issue]:
        if self.incremental is not None and self.whole:
            return [
                Issue(
                    ("incremental",),
                    f"{a_noun(self.object)} sync is replaced whole, so it cannot read incrementally",
                    "remove incremental:",
                )
            ]
        return []

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

    def _column_issues(self) -> list[Issue]:
        return [
            Issue(("fields", attr), f"field '{attr}' names no column", "write the source column")
            for attr, column in (self.fields or {}).items()
            if attr and not column
        ]


def a_noun(noun: str) -> str:
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"


class _KeyedByPerson(SyncBase):
    """A sync whose records are people, keyed by the column holding their identifier; `key`
    defaults to the column named like the identifier."""

    identifier: str = "id"
    key: str

    @model_validator(mode="before")
    @classmethod
    def _key_from_identifier(cls, data: Any) -> Any:
        if isinstance(data, dict) and "key" not in data:
            return {**data, "key": data.get("identifier", "id")}
        return data

    def key_columns(self) -> tuple[str, ...]:
        return (self.key,)

    def email_columns(self) -> frozenset[str]:
        return frozenset({self.key}) if self.identifier == "email" else frozenset()


class PersonSync(_KeyedByPerson):
    """People: identify (upsert), update only existing people, or mirror (delete/suppress)."""

    first_phase: ClassVar[bool] = True

    object: Literal["person"] = "person"
    behavior: Literal["upsert", "update_only", "mirror"] = "upsert"
    identifier: PersonIdentifier = "id"
    on_remove: Literal["delete", "suppress"] = "delete"
    stable_key: str | None = None  # a column that never changes: identifier changes merge

    def removal_action(self) -> str | None:
        return self.on_remove if self.is_mirror else None

    def stable_column(self) -> str | None:
        return self.stable_key

    def named_columns(self) -> tuple[str, ...]:
        return _unique([*super().named_columns(), self.stable_key])

    def roles(self) -> dict[str, str | None]:
        return {"stable": self.stable_key} if self.stable_key else {}

    def issues(self) -> list[Issue]:
        return [*super().issues(), *self._stable_issues()]

    def _stable_issues(self) -> Iterator[Issue]:
        if self.stable_key is None:
            return
        if self.behavior == "update_only":
            yield Issue(
                ("stable_key",),
                "stable_key needs a sync that creates people: a merge needs its primary (the "
                "new identifier) to exist, and update_only creates no one",
                "set behavior: upsert or mirror, or remove stable_key:",
            )
        if self.identifier == "phone":
            yield Issue(
                ("stable_key",),
                "Customer.io merges people by id, email or cio_id, not by phone",
                "key the sync by id, email or cio_id, or remove stable_key:",
            )
        if self.stable_key == self.key:
            yield Issue(
                ("stable_key",),
                f"stable_key is the key column '{self.key}': its value never changes, so a "
                "change of identifier could never be seen",
                "name the column of an id that never changes (e.g. the warehouse's user id)",
            )


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

    def roles(self) -> dict[str, str | None]:
        return {"platform": self.platform, "last_used": self.last_used}

    def email_columns(self) -> frozenset[str]:
        return self.person.email_columns()


class EventSync(SyncBase):
    """Events, pages or screens: each row (by `key`) is sent once."""

    append_only: ClassVar[bool] = True
    sends_attributes: ClassVar[bool] = False  # event data, under limits of its own

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

    def roles(self) -> dict[str, str | None]:
        return {
            "person": self.person.column,
            "event_name": self.event_name_column,
            "event_type": self.event_type_column,
            "timestamp": self.timestamp,
        }

    def email_columns(self) -> frozenset[str]:
        return self.person.email_columns()

    def event_filter(self) -> frozenset[str] | None:
        names = self.filter.event_names
        return frozenset(names) if names else None

    def event_name_constant(self) -> str | None:
        return self.event_name

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

    whole: ClassVar[bool] = True
    first_phase: ClassVar[bool] = True
    sends_attributes: ClassVar[bool] = False  # rows are the collection's contents

    object: Literal["collection"] = "collection"
    behavior: Literal["replace"] = "replace"
    collection: str

    def key_columns(self) -> tuple[str, ...]:
        return ()

    def whole_key(self) -> str:
        return self.collection


class ManualSegmentSync(_KeyedByPerson):
    """Members of a manual segment: add (upsert), or add and remove (mirror)."""

    sends_attributes: ClassVar[bool] = False  # membership has no attributes

    object: Literal["manual_segment"] = "manual_segment"
    behavior: Literal["upsert", "mirror"] = "upsert"
    segment_id: PositiveInt | None = None
    segment: str | None = None
    identifier: Literal["id", "email", "cio_id"] = "id"
    # Membership has no attributes: the query's other columns are not sent, nor compared, so a
    # change to them plans nothing. Giving `fields:` is an issue (below).
    fields: dict[str, str] | None = Field(default_factory=dict)

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

    first_phase: ClassVar[bool] = True

    object: Literal["object"] = "object"
    behavior: Literal["upsert", "mirror"] = "upsert"
    object_type_id: PositiveInt
    key: str

    def key_columns(self) -> tuple[str, ...]:
        return (self.key,)


class RelationshipSync(SyncBase):
    """Person-object relationships, keyed by (person, object); `fields` are their attributes."""

    object: Literal["relationship"] = "relationship"
    behavior: Literal["upsert", "mirror"] = "upsert"
    object_type_id: PositiveInt
    object_key: str
    person: PersonRef

    def key_columns(self) -> tuple[str, ...]:
        return (self.person.column, self.object_key)

    def email_columns(self) -> frozenset[str]:
        return self.person.email_columns()


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
