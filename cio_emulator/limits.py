"""The limits Customer.io documents (specs/customerio-api.md §5.2), as this emulator enforces them.

The emulator keeps its own copy instead of importing the client's: it stands in for Customer.io,
so a wrong number in the client must show up as a disagreement with the emulator, not be copied
into it. `tests/emulator/test_emulator_limits.py` compares the two. KB means 1000 bytes.
"""

from __future__ import annotations

MAX_ID_BYTES = 150  # person id, object_id
MAX_ATTRIBUTE_NAME_BYTES = 150
MAX_ATTRIBUTE_VALUE_BYTES = 1000
MAX_ATTRIBUTES_PER_CALL = 300  # unique attributes per identify call
MAX_EVENT_NAME_BYTES = 100
MAX_EVENT_DATA_BYTES = 100_000
MAX_ENTITY_BYTES = 32_000  # v2 /entity, and each operation inside a /batch
MAX_BATCH_BYTES = 500_000  # v2 /batch request body
MAX_SEGMENT_IDS_PER_CALL = 1000  # Track segment add/remove
MAX_COLLECTION_BYTES = 10_000_000
MAX_COLLECTION_ROW_BYTES = 10_000
MAX_MEMBERSHIP_PAGE = 30_000  # App API segment membership page size
