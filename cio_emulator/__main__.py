"""`python -m cio_emulator`: serve the emulator (see `server.main`)."""

from __future__ import annotations

import sys

from cio_emulator.server import main

sys.exit(main())
