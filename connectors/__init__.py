"""Destinations. The registry maps a destination name to the class that delivers to it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.config import Workspace


def destination_for(workspace: Workspace, root: Path) -> Any:
    """The destination object for a workspace (an async context manager with `deliver`)."""
    from connectors.customerio.destination import CustomerIODestination

    registry = {"customerio": CustomerIODestination}
    return registry["customerio"](workspace, root)
