"""Destinations, by name: the settings model of a workspace (the keys of its entry under
`workspaces:` in project.yml) and how to open a destination for it.

The engine reaches this package through `engine.compose` only. A destination's class is imported
when a destination is first opened, so commands that send nothing never load an HTTP client.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from connectors.customerio.config import CustomerIOWorkspace
from engine.config import WorkspaceSettings
from engine.destination import BudgetFor, Destination


class Registered(NamedTuple):
    """One destination: its workspace settings, and its opener (settings, project root, the
    workspace's shared request budgets)."""

    settings: type[WorkspaceSettings]
    open: Callable[[WorkspaceSettings, Path, BudgetFor | None], Destination]


def _customerio(workspace: WorkspaceSettings, root: Path, budget_for: BudgetFor | None) -> Destination:
    from connectors.customerio.destination import CustomerIODestination

    assert isinstance(workspace, CustomerIOWorkspace)
    return CustomerIODestination(workspace, root, budget_for)


REGISTRY: dict[str, Registered] = {"customerio": Registered(CustomerIOWorkspace, _customerio)}
DEFAULT = "customerio"  # the destination of every workspace (project.yml names no other)


def open_destination(
    workspace: WorkspaceSettings, root: Path, budget_for: BudgetFor | None = None
) -> Destination:
    """The destination for a workspace, not yet opened (`async with` opens it); its requests
    draw from `budget_for`'s shared budgets when given."""
    registered = next(r for r in REGISTRY.values() if isinstance(workspace, r.settings))
    return registered.open(workspace, root, budget_for)
