"""The building blocks of a project's configuration: base models, sources and the small parts of a
sync (a person reference, a guard, an event filter).

Models are pydantic v2, frozen, and forbid unknown keys. Checks that span several keys live in a
model's `issues()`: building a model directly raises on the first issue; the loader
(`engine.config.loader`) collects them all instead.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from fractions import Fraction
from typing import Any, Literal, NamedTuple, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    NonNegativeFloat,
    PositiveInt,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from engine.config.urls import display_url, parse_url
from engine.yamlsource import Loc

DEFAULT_STATE_URL = "duckdb:///.sync/state.duckdb"
PersonIdentifier = Literal["id", "email", "cio_id", "phone"]
COLLECT = "collect_issues"  # validation context key: collect issues instead of raising


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
        if not (info.context or {}).get(COLLECT):
            for issue in self.issues():
                raise custom_error(issue.message, issue.hint)
        return self


def custom_error(message: str, hint: str) -> PydanticCustomError:
    """A validation error carrying a hint for the loader's report."""
    return PydanticCustomError("config", "{message}", {"message": message, "hint": hint})


# --- sources and workspaces ---------------------------------------------------------------


class Source(Model):
    """A database to read rows from: any SQLAlchemy URL."""

    url: str

    @field_validator("url")
    @classmethod
    def _parses(cls, url: str) -> str:
        try:
            parse_url(url)
        except ValueError:
            raise custom_error(
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


class Defaults(Model):
    source: str | None = None
    workspace: str | None = None


# --- parts of a sync ----------------------------------------------------------------------


class PersonRef(Model):
    """Which column identifies the person a device, event or relationship belongs to."""

    identifier: PersonIdentifier = "id"
    column: str

    def email_columns(self) -> frozenset[str]:
        """The column, when it holds emails (compared as lower(trim(value)))."""
        return frozenset({self.column}) if self.identifier == "email" else frozenset()


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
        raise custom_error("must be an integer >= 0 or a percentage from 0% to 100%", hint)

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


_DURATION = re.compile(r"(\d+)\s*(s|m|h|d|w)")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_duration(text: str) -> dt.timedelta:
    """`90s`, `30m`, `2h`, `7d`, `1w` as a timedelta; ValueError otherwise."""
    match = _DURATION.fullmatch(text.strip().lower())
    if not match:
        raise ValueError(text)
    return dt.timedelta(seconds=int(match.group(1)) * _SECONDS[match.group(2)])


class Incremental(Model):
    """Incremental reads (SPEC §7.2): only rows whose cursor passed the acknowledged mark."""

    cursor: str
    lookback: str | int = 0  # a duration (2h) for a time cursor, a number for a numeric one
    full_every: str | None = None  # a duration (7d): a full read at least this often

    @field_validator("lookback", "full_every", mode="before")
    @classmethod
    def _duration(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None or (isinstance(value, int) and not isinstance(value, bool)):
            if isinstance(value, int) and value < 0:
                raise custom_error("must not be negative", "write 0, a number or a duration")
            return value
        if isinstance(value, str):
            try:
                parse_duration(value)
            except ValueError:
                raise custom_error(
                    f"{info.field_name}: not a duration",
                    "write a number and a unit: 90s, 30m, 2h, 7d or 1w",
                ) from None
            return value
        raise custom_error(f"{info.field_name}: not a duration", "write e.g. 2h or 7d")

    def lookback_delta(self) -> dt.timedelta:
        """The look-back as a time span (a numeric look-back counts seconds)."""
        if isinstance(self.lookback, str):
            return parse_duration(self.lookback)
        return dt.timedelta(seconds=self.lookback)

    def full_every_delta(self) -> dt.timedelta | None:
        return None if self.full_every is None else parse_duration(self.full_every)


class Verify(Model):
    """`verify:` on a sync: after each run that delivered something, read `sample` delivered
    records back from the destination (after `delay_s`) and report those missing or different."""

    sample: PositiveInt = 100
    delay_s: NonNegativeFloat = 0.0


class Filter(Model):
    """Event syncs: only rows whose event name is listed are sent."""

    event_names: tuple[str, ...] | None = None

    @field_validator("event_names", mode="before")
    @classmethod
    def _one_name(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else value
