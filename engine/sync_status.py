"""A sync's lifecycle status in words, and the rules about it that need no database.

`engine.lifecycle` reads and changes the statuses in the state store; they live apart from it
so that `sync list` can show them without importing SQLAlchemy (`engine.statefile`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.config import Sync

ACTIVE, DISABLED, RETIRING, RETIRED, ORPHANED = (
    "active",
    "disabled",
    "retiring",
    "retired",
    "orphaned",
)


def configured(sync: Sync) -> str:
    """The status the file gives: active, or disabled by `enabled: false`."""
    return ACTIVE if sync.enabled else DISABLED


def shown(sync: Sync, stored: str | None) -> str:
    """The status to show: retiring and retired as stored, else as the file says now."""
    return stored if stored in (RETIRING, RETIRED) else configured(sync)


def orphaned(
    known: Iterable[str], delivered: Iterable[str], ran: Iterable[str], retired: Iterable[str]
) -> list[str]:
    """Syncs with a snapshot (`delivered`) or run history (`ran`) but no file (not `known`); a
    retired one is not an orphan unless it still holds a snapshot."""
    return sorted((set(delivered) | (set(ran) - set(retired))) - set(known))
