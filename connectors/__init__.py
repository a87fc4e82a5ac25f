"""Destinations. The registry maps a destination name to the class that delivers to it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.config import Workspace

EMULATOR_DB = ".sync/emulator.duckdb"  # where an `emulator: true` workspace keeps its data


def identity(workspace: Workspace, root: Path) -> str:
    """What a snapshot is bound to (SPEC §4.10): site id and region, or the emulator's database."""
    if workspace.emulator:
        return f"emulator:{(root / EMULATOR_DB).resolve()}"
    return f"customerio:{workspace.region}:{workspace.site_id}"


def destination_for(workspace: Workspace, root: Path) -> Any:
    """The destination object for a workspace (an async context manager with `deliver`)."""
    from connectors.customerio.destination import CustomerIODestination

    registry = {"customerio": CustomerIODestination}
    return registry["customerio"](workspace, root)
