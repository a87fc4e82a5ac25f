"""`python -m connectors.customerio.emulator`: serve the emulator (see `server.main`)."""

from __future__ import annotations

import sys

from connectors.customerio.emulator.server import main

sys.exit(main())
