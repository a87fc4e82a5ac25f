"""One run's record: its status and numbers, as `run --json` prints them and history keeps them.

`RunRecord` is the one place a run's counters are named: the runner fills it, the destination
counts its requests into it (it is the run's `DeliveryStats`), the ledger writes its fields as the
history row's columns, and the CLI prints it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from engine.destination import DeliveryStats
from engine.errors import EXIT_OK

COUNTS = ("planned", "sent", "rejected", "invalid", "skipped")  # SPEC §3: a run's "counts"
DELIVERY = ("requests", "retries", "throttled")  # what a destination counts (DeliveryStats)
NUMBERS = COUNTS + DELIVERY  # every counter of a run, as history stores them
# A finished run's status words: "ok", each error class's `status` (engine.errors), "invalid"
# for a run whose only problems were invalid rows (engine.runner), and "interrupted" for a run
# whose process ended mid-run (engine.ledger). A test holds them equal.
STATUSES = (
    "ok",
    "rejected",
    "invalid",
    "drift",
    "guard",
    "locked",
    "failed",
    "auth",
    "config",
    "source",
    "interrupted",
)


@dataclass
class RunRecord(DeliveryStats):
    """A run's status and counters; the delivery's counters are inherited from `DeliveryStats`."""

    status: str = "ok"
    exit_code: int = EXIT_OK
    planned: int = 0
    sent: int = 0
    rejected: int = 0
    invalid: int = 0
    skipped: int = 0
    message: str | None = None
    rows_read: int | None = None  # rows the query returned
    mode: str = "full"  # full | incremental (SPEC §7.2)
    cursor_from: str | None = None  # an incremental read's lower bound (exclusive)
    cursor_to: str | None = None  # the largest cursor value read

    def counts(self) -> dict[str, int]:
        """SPEC §3's `counts` of a run."""
        return {name: getattr(self, name) for name in COUNTS}

    def delivery(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in DELIVERY}

    def columns(self) -> dict[str, Any]:
        """The run history row's columns."""
        return dataclasses.asdict(self)
