"""The running emulator: config, workspace, journal, faults and request log in one object."""

from __future__ import annotations

import random
from typing import Any

import orjson

from cio_emulator.apply import apply_ops
from cio_emulator.config import EmulatorConfig
from cio_emulator.faults import Faults
from cio_emulator.persist import Journal
from cio_emulator.state import Record, Workspace


class Emulator:
    """One emulated workspace. Every change goes through `commit` (applied, then journaled)."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.faults = Faults.from_config(config)
        self.requests: list[Record] = []
        self.journal = Journal(config.db_path) if config.db_path is not None else None
        environment_id = self.rng.randint(100_000, 999_999)
        self.workspace = (
            self.journal.load(environment_id)
            if self.journal is not None
            else Workspace(environment_id=environment_id)
        )

    def commit(self, ops: list[Record], now: float) -> None:
        """Apply `ops` in order and, with a database, journal them before returning."""
        if not ops:
            return
        encoded = orjson.dumps(ops) if self.journal is not None else b""
        apply_ops(self.workspace, ops, now)
        if self.journal is not None:
            self.journal.append(now, encoded)

    def log(self, entry: Record) -> None:
        """Append one entry to the request log."""
        self.requests.append(entry)

    def reset(self) -> None:
        """Clear the data (keeping the environment id), the request log and the faults."""
        self.workspace = Workspace(environment_id=self.workspace.environment_id)
        self.requests.clear()
        self.faults = Faults()
        if self.journal is not None:
            self.journal.compact(self.workspace)

    def close(self) -> None:
        """Compact the database (if any) and close it."""
        if self.journal is not None:
            self.journal.compact(self.workspace)
            self.journal.close()
            self.journal = None

    def describe_faults(self) -> dict[str, Any]:
        """The current fault settings."""
        return self.faults.describe()
