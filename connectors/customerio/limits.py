"""Customer.io's documented limits (specs/customerio-api.md §5). KB means 1000 bytes.

Sizes are bytes of UTF-8; whole operations are measured as compact JSON. The engine rejects a
record that breaks one of these before sending it; the emulator answers it as Customer.io does.
"""

from __future__ import annotations

from typing import Any

import orjson

MAX_ID_BYTES = 150  # person id, object_id
MAX_ATTRIBUTE_NAME_BYTES = 150
MAX_ATTRIBUTE_VALUE_BYTES = 1000
MAX_ATTRIBUTES_PER_CALL = 300
MAX_EVENT_NAME_BYTES = 100
MAX_EVENT_DATA_BYTES = 100_000
MAX_ENTITY_BYTES = 32_000  # one v2 operation, alone or inside a batch
MAX_BATCH_BYTES = 500_000  # one v2 /batch request body
MAX_SEGMENT_IDS_PER_CALL = 1000
MAX_COLLECTION_BYTES = 10_000_000
MAX_COLLECTION_ROW_BYTES = 10_000
MAX_MEMBERSHIP_PAGE = 30_000

DEFAULT_RATE_LIMIT = 150  # Track API request starts per second
DEFAULT_APP_RATE_LIMIT = 10  # App API request starts per second


def utf8_len(value: Any) -> int:
    """Bytes of a value as Customer.io measures it: UTF-8 text, or compact JSON when not a string."""
    if isinstance(value, str):
        return len(value.encode())
    return len(orjson.dumps(value))
