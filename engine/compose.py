"""Where the engine meets its destinations: the only engine module that imports `connectors`.

The CLI loads projects and opens destinations through here, and hands the runner an opener
(`engine.destination.OpenDestination`), so that the rest of the engine knows destinations only
by the contract of `engine.destination`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import connectors
from engine import config
from engine.config import Project
from engine.destination import Destination, OpenDestination, RateBudget

if TYPE_CHECKING:
    from engine.state import StateStore


def load_project(root: Path | str, selected: Sequence[str] | None = None) -> Project:
    """The project at `root`, its workspaces read with the registered destination's settings."""
    model = connectors.REGISTRY[connectors.DEFAULT].settings
    return config.load_project(root, selected, workspace_model=model)


def opener(project: Project, store: StateStore | None = None) -> OpenDestination:
    """Opens the destination of one of the project's workspaces, by name. Its requests draw from
    the workspace's budget shared through `store` (every process on every host of a PostgreSQL
    store, the host's processes of a DuckDB file), or this process's when there is no store."""
    from engine.budget import Budgets, MemoryLedger, ledger_for  # the state store's modules

    budgets = Budgets(ledger_for(store) if store is not None else MemoryLedger())

    def open_workspace(name: str) -> Destination:
        workspace = project.workspaces[name]
        identity = workspace.identity(project.root)

        def budget_for(api: str, limit: int) -> RateBudget:
            return budgets.budget(identity, api, limit)

        return connectors.open_destination(workspace, project.root, budget_for)

    return open_workspace
