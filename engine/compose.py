"""Where the engine meets its destinations: the only engine module that imports `connectors`.

The CLI loads projects and opens destinations through here, and hands the runner an opener
(`engine.destination.OpenDestination`), so that the rest of the engine knows destinations only
by the contract of `engine.destination`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import connectors
from engine import config
from engine.config import Project
from engine.destination import Destination, OpenDestination


def load_project(root: Path | str, selected: Sequence[str] | None = None) -> Project:
    """The project at `root`, its workspaces read with the registered destination's settings."""
    model = connectors.REGISTRY[connectors.DEFAULT].settings
    return config.load_project(root, selected, workspace_model=model)


def opener(project: Project) -> OpenDestination:
    """Opens the destination of one of the project's workspaces, by name."""

    def open_workspace(name: str) -> Destination:
        return connectors.open_destination(project.workspaces[name], project.root)

    return open_workspace
