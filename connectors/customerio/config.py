"""A Customer.io workspace as project.yml declares it (SPEC §2.1): credentials, region and hosts,
pacing, and the attribute names Customer.io reserves (specs/customerio-api.md §5.3)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import Field, NonNegativeInt, PositiveFloat, PositiveInt, SecretStr, field_validator

from connectors.customerio import limits
from engine.config import (
    EventSync,
    Issue,
    ObjectSync,
    PersonSync,
    RelationshipSync,
    SyncBase,
    WorkspaceSettings,
    custom_error,
)

EMULATOR_DB = ".sync/emulator.duckdb"  # where an `emulator: true` workspace keeps its data
TRACK_URLS = {"us": "https://track.customer.io", "eu": "https://track-eu.customer.io"}
APP_URLS = {"us": "https://api.customer.io", "eu": "https://api-eu.customer.io"}

# A person's `id`, `email` and `phone` are reserved only when they are the sync's own identifier:
# as attributes of a person identified otherwise they set that person's id, email or phone.
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


class CustomerIOWorkspace(WorkspaceSettings):
    """A Customer.io workspace (or the embedded emulator) and how to pace requests to it."""

    destination_name: ClassVar[str] = "Customer.io"
    max_attribute_name_bytes: ClassVar[int | None] = limits.MAX_ATTRIBUTE_NAME_BYTES
    max_attributes: ClassVar[int | None] = limits.MAX_ATTRIBUTES_PER_CALL

    emulator: bool = False
    site_id: str | None = None
    track_api_key: SecretStr | None = None
    app_api_key: SecretStr | None = None
    region: Literal["us", "eu"] = "us"
    track_url: str | None = None
    app_url: str | None = None
    rate_limit: PositiveInt = limits.DEFAULT_RATE_LIMIT
    app_rate_limit: PositiveInt = limits.DEFAULT_APP_RATE_LIMIT
    concurrency: PositiveInt = 8
    timeout_s: PositiveFloat = 30
    max_retries: NonNegativeInt = 8
    max_batch_ops: Annotated[int, Field(ge=1, le=10_000)] = 1000

    @field_validator("track_url", "app_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None and not re.match(r"https?://[^/\s]+", url):
            raise custom_error("not an http(s) URL", "write it like https://track.customer.io")
        return url.rstrip("/") if url else url

    def resolved_track_url(self) -> str:
        """The Track API base URL: `track_url`, else the region's."""
        return self.track_url or TRACK_URLS[self.region]

    def resolved_app_url(self) -> str:
        """The App API base URL: `app_url`, else the region's."""
        return self.app_url or APP_URLS[self.region]

    def identity(self, root: Path) -> str:
        """Site id and region, or the emulator's database (SPEC §4.10)."""
        if self.emulator:
            return f"emulator:{(root / EMULATOR_DB).resolve()}"
        return f"customerio:{self.region}:{self.site_id}"

    def reserved_attributes(self, sync: SyncBase) -> frozenset[str]:
        if isinstance(sync, PersonSync):
            return RESERVED_PERSON_ATTRIBUTES | {sync.identifier}
        if isinstance(sync, (ObjectSync, RelationshipSync)):
            return RESERVED_OBJECT_ATTRIBUTES
        return frozenset()

    def unverifiable(self, sync: SyncBase) -> str | None:
        """Events and relationships: the App API reads neither back (customerio-api.md §4)."""
        if isinstance(sync, EventSync):
            return (
                "Customer.io's App API reads no event back by its id, so events cannot be verified"
            )
        if isinstance(sync, RelationshipSync):
            return (
                "Customer.io's App API has no read of a person's relationships, so "
                "relationships cannot be verified"
            )
        return None

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

