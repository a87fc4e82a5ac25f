"""Every documented limit at its boundary: exactly at the limit passes, one byte over fails."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from emulator_client import Api, api_fixture, identify, server_fixture  # noqa: F401 (fixtures)

from cio_emulator.limits import (
    MAX_ATTRIBUTE_NAME_BYTES,
    MAX_ATTRIBUTE_VALUE_BYTES,
    MAX_ATTRIBUTES_PER_CALL,
    MAX_BATCH_BYTES,
    MAX_COLLECTION_BYTES,
    MAX_COLLECTION_ROW_BYTES,
    MAX_ENTITY_BYTES,
    MAX_EVENT_DATA_BYTES,
    MAX_EVENT_NAME_BYTES,
    MAX_ID_BYTES,
    MAX_SEGMENT_IDS_PER_CALL,
)

EURO = "€"  # 3 bytes of UTF-8: sizes are bytes, not characters


def text(size: int) -> str:
    """A string of exactly `size` UTF-8 bytes that is mostly multi-byte."""
    return EURO * (size // 3) + "x" * (size % 3)


def event(name: str, data: Any = None) -> dict[str, Any]:
    op = {"type": "person", "identifiers": {"id": "1"}, "action": "event", "name": name}
    return op if data is None else {**op, "attributes": data}


def padded_op(size: int) -> dict[str, Any]:
    """An identify op whose compact JSON is exactly `size` bytes (filler in 900-byte values)."""
    op = identify("1")
    filler, index = size - len(orjson.dumps(op)), 0
    while filler > 0:
        key = f"k{index}"
        overhead = len(orjson.dumps({key: ""})) - 2 + (1 if index else 0)
        chunk = min(900, filler - overhead)
        op["attributes"][key] = "v" * chunk
        filler -= chunk + overhead
        index += 1
    assert len(orjson.dumps(op)) == size
    return op


def statuses(api: Api, at: dict[str, Any], over: dict[str, Any]) -> tuple[int, int]:
    return api.batch(at).status, api.batch(over).status


@pytest.mark.parametrize(
    ("at", "over"),
    [
        (identify(text(MAX_ID_BYTES)), identify(text(MAX_ID_BYTES + 1))),
        (
            identify("1", **{text(MAX_ATTRIBUTE_NAME_BYTES): 1}),
            identify("1", **{text(MAX_ATTRIBUTE_NAME_BYTES + 1): 1}),
        ),
        (
            identify("1", a=text(MAX_ATTRIBUTE_VALUE_BYTES)),
            identify("1", a=text(MAX_ATTRIBUTE_VALUE_BYTES + 1)),
        ),
        (
            identify("1", **{f"a{i}": i for i in range(MAX_ATTRIBUTES_PER_CALL)}),
            identify("1", **{f"a{i}": i for i in range(MAX_ATTRIBUTES_PER_CALL + 1)}),
        ),
        (event(text(MAX_EVENT_NAME_BYTES)), event(text(MAX_EVENT_NAME_BYTES + 1))),
        (
            {
                "type": "object",
                "identifiers": {"object_type_id": "1", "object_id": text(MAX_ID_BYTES)},
                "action": "identify",
            },
            {
                "type": "object",
                "identifiers": {"object_type_id": "1", "object_id": text(MAX_ID_BYTES + 1)},
                "action": "identify",
            },
        ),
    ],
    ids=["id", "attribute-name", "attribute-value", "attribute-count", "event-name", "object-id"],
)
def test_v2_op_limits(api: Api, at: dict[str, Any], over: dict[str, Any]) -> None:
    assert statuses(api, at, over) == (200, 207)
    assert api.view("requests")[-1]["errors"][0]["batch_index"] == 0


def test_event_data_limit(api: Api) -> None:
    base = len(orjson.dumps({"d": ""}))
    at = {"d": "x" * (MAX_EVENT_DATA_BYTES - base)}
    over = {"d": "x" * (MAX_EVENT_DATA_BYTES - base + 1)}
    # The data limit (100,000) is above the op limit (32,000), so check it on v1.
    assert api.post("/api/v1/customers/1/events", {"name": "e", "data": at}).status == 200
    assert api.post("/api/v1/customers/1/events", {"name": "e", "data": over}).status == 400


def test_v1_attribute_value_limit_message(api: Api) -> None:
    ok = api.put("/api/v1/customers/1", {"a": text(MAX_ATTRIBUTE_VALUE_BYTES)})
    bad = api.put("/api/v1/customers/1", {"X": text(MAX_ATTRIBUTE_VALUE_BYTES + 1)})
    assert ok.status == 200 and bad.status == 400
    assert bad.body == {
        "meta": {"errors": ["value for attribute 'X' cannot be longer than 1000 bytes"]}
    }


def test_v1_id_limit(api: Api) -> None:
    assert api.put(f"/api/v1/customers/{'a' * MAX_ID_BYTES}", {}).status == 200
    assert api.put(f"/api/v1/customers/{'a' * (MAX_ID_BYTES + 1)}", {}).status == 400


def test_op_size_inside_batch(api: Api) -> None:
    reply = api.batch(identify("0"), padded_op(MAX_ENTITY_BYTES), padded_op(MAX_ENTITY_BYTES + 1))
    assert reply.status == 207
    assert [(e["batch_index"], e["reason"]) for e in reply.body["errors"]] == [(2, "too_large")]


def test_entity_body_limit(api: Api) -> None:
    at = orjson.dumps(padded_op(MAX_ENTITY_BYTES))
    over = orjson.dumps(padded_op(MAX_ENTITY_BYTES + 1))
    assert api.post("/api/v2/entity", raw=at).status == 200
    assert api.post("/api/v2/entity", raw=over).status == 413


def _batch_body(size: int) -> bytes:
    ops, total = [], len(b'{"batch":[]}')
    while total < size - 20_000:
        op = padded_op(20_000)
        ops.append(op)
        total += 20_000 + (1 if len(ops) > 1 else 0)
    last = size - total - 1
    ops.append(padded_op(last))
    body = orjson.dumps({"batch": ops})
    assert len(body) == size
    return body


def test_batch_body_limit(api: Api) -> None:
    assert api.post("/api/v2/batch", raw=_batch_body(MAX_BATCH_BYTES)).status == 200
    reply = api.post("/api/v2/batch", raw=_batch_body(MAX_BATCH_BYTES + 1))
    assert reply.status == 413 and reply.body["errors"][0]["reason"] == "too_large"


def test_segment_ids_limit(api: Api) -> None:
    seg = api.post("/v1/segments", {"segment": {"name": "s"}}).body["segment"]["id"]
    path = f"/api/v1/segments/{seg}/add_customers"
    assert api.post(path, {"ids": [str(i) for i in range(MAX_SEGMENT_IDS_PER_CALL)]}).status == 200
    over = {"ids": [str(i) for i in range(MAX_SEGMENT_IDS_PER_CALL + 1)]}
    assert api.post(path, over).status == 400


def _row(size: int) -> dict[str, str]:
    row = {"v": ""}
    row["v"] = "x" * (size - len(orjson.dumps(row)))
    return row


def test_collection_row_limit(api: Api) -> None:
    ok = api.post("/v1/collections", {"name": "c", "data": [_row(MAX_COLLECTION_ROW_BYTES)]})
    assert ok.status == 200
    over = api.post("/v1/collections", {"name": "c", "data": [_row(MAX_COLLECTION_ROW_BYTES + 1)]})
    assert over.status == 400


def test_collection_total_limit(api: Api) -> None:
    row = _row(MAX_COLLECTION_ROW_BYTES)
    rows = MAX_COLLECTION_BYTES // (MAX_COLLECTION_ROW_BYTES + 1)
    data = [row] * rows
    rest = MAX_COLLECTION_BYTES - len(orjson.dumps(data)) - 1
    data.append(_row(rest))
    assert len(orjson.dumps(data)) == MAX_COLLECTION_BYTES
    assert api.post("/v1/collections", {"name": "c", "data": data}).status == 200
    data[-1] = _row(rest + 1)
    assert api.post("/v1/collections", {"name": "c", "data": data}).status == 413
