"""The YAML contract of a sync project (SPEC §2) as frozen, typed models, and its loader.

models     base models, sources, the small parts of a sync
syncs      the seven sync types, each with its traits and columns
workspace  the settings every destination's workspaces extend; attribute names they accept
project    a loaded project, its root and paths
loader     reading syncs/*.yml, every problem at once with file, line and hint
hints      what to write, for a missing key or a value of the wrong type
cron       `schedule:`: standard cron, checked, in the form croniter reads
urls       database URLs parsed and shown as SQLAlchemy does, without importing it
"""

from __future__ import annotations

from engine.config.cron import is_cron
from engine.config.loader import load_project
from engine.config.models import (
    DEFAULT_STATE_URL,
    CheckedModel,
    Filter,
    Guard,
    Incremental,
    Issue,
    Model,
    PersonIdentifier,
    PersonRef,
    Source,
    Verify,
    custom_error,
)
from engine.config.project import Project, find_project_root, quote_table, resolve_duckdb_url
from engine.config.syncs import (
    SYNC_MODELS,
    CollectionSync,
    DeviceSync,
    EventSync,
    ManualSegmentSync,
    ObjectSync,
    PersonSync,
    RelationshipSync,
    Sync,
    SyncBase,
    behaviors,
)
from engine.config.urls import display_url
from engine.config.workspace import WorkspaceSettings, attribute_issues, workspace_issues

__all__ = [
    "DEFAULT_STATE_URL",
    "SYNC_MODELS",
    "CheckedModel",
    "CollectionSync",
    "DeviceSync",
    "EventSync",
    "Filter",
    "Guard",
    "Incremental",
    "Issue",
    "ManualSegmentSync",
    "Model",
    "ObjectSync",
    "PersonIdentifier",
    "PersonRef",
    "PersonSync",
    "Project",
    "RelationshipSync",
    "Source",
    "Sync",
    "SyncBase",
    "Verify",
    "WorkspaceSettings",
    "attribute_issues",
    "behaviors",
    "custom_error",
    "display_url",
    "find_project_root",
    "is_cron",
    "load_project",
    "quote_table",
    "resolve_duckdb_url",
    "workspace_issues",
]
