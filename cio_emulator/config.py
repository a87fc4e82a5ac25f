"""The emulator's settings: credentials, persistence and the faults it starts with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class EmulatorConfig:
    """How one emulated workspace behaves.

    `db_path` None keeps data in memory; a path persists it in a DuckDB file (write-through).
    `rate_limit` is requests admitted in any sliding second before 429 (None = unlimited);
    `retry_after` is sent as `Retry-After` with a 429 when set. `fail_rate` is the probability
    of a random 500/502/503, `latency_ms` is added to every /api and /v1 request, and `seed`
    makes the random faults and generated ids reproducible. `log_bodies` adds each logged
    request's query parameters and JSON body to the request log (for tests that check request
    shapes; off by default, since it keeps every body in memory).
    """

    site_id: str = "emulator-site"
    track_api_key: str = "emulator-track-key"
    app_api_key: str = "emulator-app-key"
    db_path: Path | None = None
    rate_limit: int | None = None
    retry_after: float | None = None
    fail_rate: float = 0.0
    latency_ms: int = 0
    seed: int | None = None
    log_bodies: bool = False
