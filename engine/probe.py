"""Talking to sources and workspaces outside a run: `validate --connect` and `sync request`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa

from engine import sources
from engine.config import Project, Sync, display_url
from engine.destination import OpenDestination
from engine.errors import SyncError, UsageError
from engine.extract import layout_for


class Finding(NamedTuple):
    """What one probe found: what it reached, or the error it met."""

    subject: str  # "source 'warehouse'", "sync 'people'", "workspace 'prod'"
    reached: str = ""
    error: SyncError | None = None


def probe_source(project: Project, name: str) -> Finding:
    """Open the source and run nothing."""
    url = project.sources[name].url
    try:
        with sources.connect(name, url):
            return Finding(f"source '{name}'", f"connected to {display_url(url)}")
    except SyncError as exc:
        return Finding(f"source '{name}'", error=exc)


def probe_query(project: Project, sync: Sync) -> Finding:
    """Run the sync's query for no rows and check its columns."""
    subject = f"sync '{sync.name}'"
    try:
        with sources.connect(sync.source, project.sources[sync.source].url) as conn:
            if conn.dialect.name == "duckdb":
                conn.exec_driver_sql("SET file_search_path = ?", (str(project.root),))
            with sources.query_errors(sync):
                result = conn.execute(sa.text(f"SELECT * FROM (\n{sync.sql}\n) AS probe LIMIT 0"))
            columns = list(result.keys())
            layout_for(sync, columns, project.workspace_of(sync))
    except SyncError as exc:
        return Finding(subject, error=exc)
    return Finding(subject, f"the query returns {len(columns)} column(s): {', '.join(columns)}")


async def probe_workspace(name: str, open_destination: OpenDestination) -> Finding:
    """Check the workspace's credentials with its destination."""
    try:
        async with open_destination(name) as destination:
            reached = await destination.check_credentials()
    except SyncError as exc:
        return Finding(f"workspace '{name}'", error=exc)
    return Finding(f"workspace '{name}'", reached)


async def probe(
    project: Project, syncs: Sequence[Sync], open_destination: OpenDestination
) -> list[Finding]:
    """Every source, query and workspace the syncs use, in that order."""
    names = sorted({s.source for s in syncs})
    found = [probe_source(project, name) for name in names]
    unreachable = {f.subject for f in found if f.error is not None}
    found += [probe_query(project, s) for s in syncs if f"source '{s.source}'" not in unreachable]
    for workspace in sorted({s.workspace for s in syncs}):
        found.append(await probe_workspace(workspace, open_destination))
    return found


def _workspace_name(project: Project, explicit: str | None) -> str:
    if explicit:
        if explicit not in project.workspaces:
            raise UsageError(f"no workspace '{explicit}'; known: {', '.join(project.workspaces)}")
        return explicit
    used = {sync.workspace for sync in project.syncs.values()}
    if len(project.workspaces) == 1 or len(used) == 1:
        return next(iter(used or project.workspaces))
    raise UsageError("several workspaces: name one with --workspace")


async def raw_request(
    project: Project,
    open_destination: OpenDestination,
    workspace: str | None,
    method: str,
    path: str,
    body: Any,
    params: dict[str, str],
) -> tuple[int, Any]:
    """One authorized call through the workspace's destination."""
    name = _workspace_name(project, workspace)
    async with open_destination(name) as destination:
        return await destination.request(method, path, body, params)
