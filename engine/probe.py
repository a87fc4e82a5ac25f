"""Talking to sources and workspaces outside a run: `validate --connect` and `sync request`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from engine.config import Project, Sync
from engine.destination import OpenDestination
from engine.errors import SyncError, UsageError
from engine.extract import layout_for


def probe_query(project: Project, sync: Sync) -> str | None:
    """Run the query for no rows and check its columns; a problem as text, or None."""
    source = project.sources[sync.source]
    engine = sa.create_engine(source.url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "duckdb":
                conn.exec_driver_sql("SET file_search_path = ?", (str(project.root),))
            result = conn.execute(sa.text(f"SELECT * FROM ({sync.sql}) AS probe LIMIT 0"))
            layout_for(sync, list(result.keys()), project.workspace_of(sync))
    except SyncError as exc:
        return str(exc)
    except sa.exc.SQLAlchemyError as exc:
        return f"{sync.file}: sync '{sync.name}': the query failed: {exc.__class__.__name__}: {getattr(exc, 'orig', exc)}"
    finally:
        engine.dispose()
    return None


async def probe_workspace(name: str, open_destination: OpenDestination) -> str | None:
    """Check the workspace's credentials with its destination."""
    try:
        async with open_destination(name) as destination:
            problem = await destination.check_credentials()
    except SyncError as exc:
        return f"workspace '{name}': {exc}"
    return f"workspace '{name}': {problem}" if problem else None


async def probe(
    project: Project, syncs: Sequence[Sync], open_destination: OpenDestination
) -> list[str]:
    problems = [p for p in (probe_query(project, s) for s in syncs) if p]
    for workspace in sorted({s.workspace for s in syncs}):
        problem = await probe_workspace(workspace, open_destination)
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
