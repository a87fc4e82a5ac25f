"""Talking to sources and workspaces outside a run: `validate --connect` and `sync request`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from connectors import destination_for
from engine.config import Project, Sync
from engine.errors import SyncError, UsageError
from engine.extract import layout_for, source_engine


def probe_query(project: Project, sync: Sync) -> str | None:
    """Run the query for no rows and check its columns; a problem as text, or None."""
    source = project.sources[sync.source]
    engine = source_engine(source.url)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "duckdb":
                conn.exec_driver_sql("SET file_search_path = ?", (str(project.root),))
            result = conn.execute(sa.text(f"SELECT * FROM ({sync.sql}) AS probe LIMIT 0"))
            layout_for(sync, list(result.keys()))
    except SyncError as exc:
        return str(exc)
    except sa.exc.SQLAlchemyError as exc:
        return f"{sync.file}: sync '{sync.name}': the query failed: {exc.__class__.__name__}: {getattr(exc, 'orig', exc)}"
    finally:
        engine.dispose()
    return None


async def probe_workspace(project: Project, name: str) -> str | None:
    """Check the workspace's Track credentials (GET /api/v1/accounts/region)."""
    try:
        async with destination_for(project.workspaces[name], project.root) as destination:
            answer = await destination.api.track("GET", "/api/v1/accounts/region")
            if answer.status >= 300:
                return f"workspace '{name}': the region check answered {answer.status}"
    except SyncError as exc:
        return f"workspace '{name}': {exc}"
    return None


async def probe(project: Project, syncs: Sequence[Sync]) -> list[str]:
    problems = [p for p in (probe_query(project, s) for s in syncs) if p]
    for workspace in sorted({s.workspace for s in syncs}):
        problem = await probe_workspace(project, workspace)
        if problem:
            problems.append(problem)
    return problems


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
    workspace: str | None,
    method: str,
    path: str,
    body: Any,
    params: dict[str, str],
) -> tuple[int, Any]:
    """One authorized call: /api/... to the Track API, /v1/... to the App API."""
    if not path.startswith(("/api/", "/v1/")):
        raise UsageError("PATH must start with /api/ (Track API) or /v1/ (App API)")
    name = _workspace_name(project, workspace)
    async with destination_for(project.workspaces[name], project.root) as destination:
        call = destination.api.track if path.startswith("/api/") else destination.api.app
        answer = await call(method, path, json=body, params=params or None)
        return answer.status, answer.body
