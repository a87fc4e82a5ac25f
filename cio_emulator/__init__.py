"""A local Customer.io: Track v1, Track v2 and the App API endpoints the engine uses.

    handle = start_in_thread(EmulatorConfig(db_path=Path(".sync/emulator.duckdb")))
    ...  # point the client at handle.url; inspect GET {handle.url}/_emulator/people
    handle.stop()

Modules: `config` (EmulatorConfig), `app` (middlewares, create_app), `track_v1`, `track_v2`,
`app_api`, `control` (/_emulator inspection, faults, reset), `schema` (the OpenAPI document,
its patch list, validators), `checks` (documented limits), `apply` (the only code that
changes data), `state` (the workspace), `persist` (DuckDB journal), `faults`, `server`.

Choices where Customer.io's behaviour is UNCONFIRMED (each module's docstring has details):
- Oversized bodies answer 413 (/entity over 32,000 bytes, /batch over 500,000, a collection
  over 10,000,000); a collection row over 10,000 bytes answers 400.
- 401 bodies are `{"meta": {"error": "Unauthorized request"}}`; 429 and injected 5xx answer `{}`.
- `null` on a person attribute removes it (as documented for objects); `""` is kept.
- Track segment add/remove for an unknown segment id answers 200 and changes nothing; unknown
  people are ignored (not created).
- The rate limit counts only admitted requests; 429s do not extend the throttling.
- Event ids are remembered forever (de-duplication has no window).
"""

from __future__ import annotations

from cio_emulator.app import create_app
from cio_emulator.config import EmulatorConfig
from cio_emulator.persist import DatabaseError
from cio_emulator.server import EmulatorHandle, main, start_in_thread

__all__ = [
    "DatabaseError",
    "EmulatorConfig",
    "EmulatorHandle",
    "create_app",
    "main",
    "start_in_thread",
]
