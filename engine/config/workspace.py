"""The settings of a workspace, as every destination extends them, and the attribute names a
sync may send there."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from engine.config.models import CheckedModel, Issue
from engine.config.syncs import SyncBase, a_noun


class WorkspaceSettings(CheckedModel):
    """A workspace of a destination, as an entry of `workspaces:` in project.yml declares it.

    Each destination subclasses it with its own keys (Customer.io's credentials, hosts and pacing
    live in `connectors.customerio.config`). The engine asks it only for its name, what a
    snapshot delivered to it is bound to, and which attribute names it accepts.
    """

    max_attribute_name_bytes: ClassVar[int | None] = None
    max_attributes: ClassVar[int | None] = None  # attributes one record may carry
    destination_name: ClassVar[str] = "the destination"  # for messages

    name: str

    def identity(self, root: Path) -> str:
        """What a snapshot delivered here is bound to (SPEC §4.10)."""
        raise NotImplementedError

    def reserved_attributes(self, sync: SyncBase) -> frozenset[str]:
        """Attribute names a sync's `fields` may not use when it delivers here."""
        return frozenset()

    def unverifiable(self, sync: SyncBase) -> str | None:
        """Why the destination cannot read this sync's records back (`verify`), or None."""
        return None


def workspace_issues(sync: SyncBase, workspace: WorkspaceSettings) -> list[Issue]:
    """What the workspace's destination refuses of a sync: its attribute names (below), and
    `verify:` on a sync whose records it cannot read back."""
    issues = attribute_issues(sync, workspace)
    reason = workspace.unverifiable(sync) if sync.verify is not None else None
    if reason:
        issues.append(Issue(("verify",), reason, "remove verify: from this sync"))
    return issues


def attribute_issues(sync: SyncBase, workspace: WorkspaceSettings) -> list[Issue]:
    """`fields` the workspace's destination refuses: reserved names, over-long names, too
    many attributes."""
    fields = sync.fields or {}
    issues = [issue for attr in fields for issue in _name_issues(sync, attr, workspace)]
    most = workspace.max_attributes
    if most is not None and len(fields) > most:
        issues.append(
            Issue(
                ("fields",),
                f"{len(fields)} fields; {workspace.destination_name} takes at most {most}",
                "drop the fields you do not need",
            )
        )
    return issues


def _name_issues(sync: SyncBase, attr: str, workspace: WorkspaceSettings) -> list[Issue]:
    loc = ("fields", attr)
    if attr in workspace.reserved_attributes(sync):
        return [
            Issue(
                loc,
                f"'{attr}' is a reserved attribute of {a_noun(sync.object)}",
                "send the column under another attribute name",
            )
        ]
    longest = workspace.max_attribute_name_bytes
    if not attr or (longest is not None and len(attr.encode()) > longest):
        return [
            Issue(
                loc,
                f"attribute names take 1 to {longest} bytes",
                "use a shorter attribute name",
            )
        ]
    return []
