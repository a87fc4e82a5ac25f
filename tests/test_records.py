"""Golden values for fingerprints and normalisation (SPEC §2.2 Values, §4.9), and event ids.

The md5 strings below were computed once and hard-coded: a change of encoding resends every
record of every sync, so it must fail here and be made on purpose.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from ulid import ULID

from connectors.customerio.operations import event_id
from engine import records

PLUS_ONE = dt.timezone(dt.timedelta(hours=1))
MINUS_FIVE = dt.timezone(dt.timedelta(hours=-5))

GOLDEN = [
    ({}, b"{}", "99914b932bd37a50b983c5e7c90ae93b"),
    (
        {"a": {"n": 1, "neg": -42, "big": 2**53}, "r": {}},
        b'{"a":{"big":9007199254740992,"n":1,"neg":-42},"r":{}}',
        "34516394c399d6f1254b24b2e2eaedc3",
    ),
    (
        {"a": {"x": 1.5, "y": -0.25, "z": 1e-7}, "r": {}},
        b'{"a":{"x":1.5,"y":-0.25,"z":1e-7},"r":{}}',
        "8bbf9508cf16ec0dc86bb99f612a0ed6",
    ),
    (
        {"a": {"name": "Zoë Ünïcødé 日本 🎉"}, "r": {}},
        '{"a":{"name":"Zoë Ünïcødé 日本 🎉"},"r":{}}'.encode(),
        "c8411a07577625bd385b11b90715aa14",
    ),
    (
        {"a": {"prefs": {"b": [1, {"c": None}], "a": True}}, "r": {"person": "u1"}},
        b'{"a":{"prefs":{"a":true,"b":[1,{"c":null}]}},"r":{"person":"u1"}}',
        "efaf5f9eeca437ff3b1bdc7b6b188a8b",
    ),
    (
        {"a": {"gone": None, "kept": "x"}, "r": {}},
        b'{"a":{"gone":null,"kept":"x"},"r":{}}',
        "f2b1bc8d47e9a9a5da8420e54c78d435",
    ),
]


@pytest.mark.parametrize(("payload", "encoded", "md5"), GOLDEN)
def test_canonical_encoding_and_fingerprint_are_pinned(
    payload: dict[str, Any], encoded: bytes, md5: str
) -> None:
    assert records.canonical(payload) == encoded  # compact, keys sorted, UTF-8 unescaped
    assert records.fingerprint(encoded) == md5
    assert hashlib.md5(encoded).hexdigest() == md5  # plain md5 of those bytes, nothing else


def test_key_order_does_not_change_the_fingerprint() -> None:
    one = {"a": {"x": 1, "y": {"q": 2, "p": 3}}, "r": {}}
    two = {"r": {}, "a": {"y": {"p": 3, "q": 2}, "x": 1}}
    assert records.fingerprint(records.canonical(one)) == records.fingerprint(
        records.canonical(two)
    )


def test_a_normalised_row_has_a_pinned_fingerprint() -> None:
    row = {
        "at": dt.datetime(2024, 1, 1, 1, 0, tzinfo=PLUS_ONE),
        "day": dt.date(2024, 1, 1),
        "price": Decimal("1.50"),
        "qty": Decimal("2"),
        "ratio": float("nan"),
        "blob": b"\x00\xff",
        "tags": ["a", {"when": dt.datetime(1970, 1, 1, 0, 0, 1)}],
    }
    attrs = {name: records.python_value(value) for name, value in row.items()}
    assert attrs == {
        "at": 1704067200,
        "day": 1704067200,
        "price": 1.5,
        "qty": 2,
        "ratio": None,
        "blob": "00ff",
        "tags": ["a", {"when": 1}],
    }
    encoded = records.canonical({"a": attrs, "r": {}})
    assert encoded == (
        b'{"a":{"at":1704067200,"blob":"00ff","day":1704067200,"price":1.5,"qty":2,'
        b'"ratio":null,"tags":["a",{"when":1}]},"r":{}}'
    )
    assert records.fingerprint(encoded) == "9ade76b69d21643db7f7259f212979c2"


# --- the Python path ---------------------------------------------------------------------------

PYTHON_VALUES = [
    (dt.datetime(2024, 1, 1, 1, 0, tzinfo=PLUS_ONE), 1704067200),  # converted, never relabelled
    (dt.datetime(2023, 12, 31, 19, 0, tzinfo=MINUS_FIVE), 1704067200),
    (dt.datetime(2024, 1, 1, 0, 0, 0, 999_999), 1704067200),  # naive: UTC; sub-seconds floored
    (dt.datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=dt.UTC), -1),  # floored, not truncated
    (dt.datetime(1969, 12, 31, 23, 59, 59, 500_000), -1),
    (dt.date(2024, 1, 1), 1704067200),
    (dt.date(1969, 12, 31), -86400),
    (Decimal("1.50"), 1.5),
    (Decimal("2"), 2),
    (Decimal("2.00"), 2),
    (Decimal("-0.25"), -0.25),
    (Decimal("NaN"), None),
    (float("nan"), None),
    (float("inf"), None),
    (1.25, 1.25),
    (True, True),
    (7, 7),
    ("tëxt", "tëxt"),
    (b"\x00\xffA", "00ff41"),
    (None, None),
    ({"k": Decimal("3.0"), 1: [dt.date(1970, 1, 2)]}, {"k": 3, "1": [86400]}),
    ((1, None, "x"), [1, None, "x"]),
]


@pytest.mark.parametrize(("value", "expected"), PYTHON_VALUES)
def test_python_values_follow_the_rules(value: Any, expected: Any) -> None:
    got = records.python_value(value)
    assert got == expected
    assert type(got) is type(expected)  # 2 and 2.0 encode differently, so fingerprint differently


# --- the Arrow path gives the same values --------------------------------------------------------


def _both(values: list[Any], kind: pa.DataType) -> tuple[list[Any], list[Any]]:
    arrow = records.arrow_column(pa.array(values, kind))
    python = [records.python_value(v) for v in values]
    return arrow, python


def _same_encoding(arrow: list[Any], python: list[Any]) -> None:
    assert records.canonical(arrow) == records.canonical(python)


ARROW_CASES = [
    pytest.param(
        [
            dt.datetime(2024, 1, 1, 1, 0, tzinfo=PLUS_ONE),
            dt.datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=dt.UTC),
            None,
        ],
        pa.timestamp("us", tz="Europe/Paris"),
        [1704067200, -1, None],
        id="timestamp-tz-us",
    ),
    pytest.param(
        [dt.datetime(2024, 1, 1, 0, 0, 0, 999_999), dt.datetime(1969, 12, 31, 23, 59, 59, 1)],
        pa.timestamp("ns"),
        [1704067200, -1],
        id="timestamp-naive-ns",
    ),
    pytest.param(
        [dt.datetime(1969, 12, 31, 23, 59, 58, 999_000), dt.datetime(1969, 12, 31, 23, 59, 59)],
        pa.timestamp("ms"),
        [-2, -1],
        id="timestamp-ms-pre-1970",
    ),
    pytest.param(
        [dt.datetime(2024, 1, 1, 0, 0, 0)],
        pa.timestamp("s", tz="UTC"),
        [1704067200],
        id="timestamp-s",
    ),
    pytest.param(
        [dt.date(2024, 1, 1), dt.date(1969, 12, 31), None],
        pa.date32(),
        [1704067200, -86400, None],
        id="date32",
    ),
    pytest.param(
        [dt.date(2024, 1, 1)],
        pa.date64(),
        [1704067200],
        id="date64",
    ),
    pytest.param(
        [Decimal("1.50"), Decimal("-0.25")],
        pa.decimal128(10, 2),
        [1.5, -0.25],
        id="decimal128-fraction",
    ),
    pytest.param(
        [Decimal("2"), None],
        pa.decimal128(10, 0),
        [2, None],
        id="decimal128-scale-0",
    ),
    pytest.param(
        [1.5, float("nan"), float("inf"), None],
        pa.float64(),
        [1.5, None, None, None],
        id="float-nan",
    ),
    pytest.param([b"\x00\xffA", None], pa.binary(), ["00ff41", None], id="binary"),
    pytest.param(
        [{"a": 1, "b": "x", "t": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)}, None],
        pa.struct([("a", pa.int64()), ("b", pa.string()), ("t", pa.timestamp("s", tz="UTC"))]),
        [{"a": 1, "b": "x", "t": 1704067200}, None],
        id="struct",
    ),
    pytest.param(
        [[1, 2], [], None],
        pa.list_(pa.int64()),
        [[1, 2], [], None],
        id="list",
    ),
    pytest.param(
        [[dt.date(1970, 1, 2)], None],
        pa.list_(pa.date32()),
        [[86400], None],
        id="list-of-dates",
    ),
    pytest.param([True, False, None], pa.bool_(), [True, False, None], id="bool"),
    pytest.param(["tëxt", None], pa.string(), ["tëxt", None], id="string"),
]


@pytest.mark.parametrize(("values", "kind", "expected"), ARROW_CASES)
def test_the_arrow_path_gives_the_python_paths_values(
    values: list[Any], kind: pa.DataType, expected: list[Any]
) -> None:
    arrow, python = _both(values, kind)
    assert arrow == expected
    assert python == expected
    _same_encoding(arrow, python)


def test_an_integral_value_of_a_fractional_decimal_column_is_an_int_on_both_paths() -> None:
    arrow, python = _both([Decimal("2.00"), Decimal("1.50")], pa.decimal128(10, 2))
    assert python == [2, 1.5]
    _same_encoding(arrow, python)


def test_a_null_in_a_fractional_decimal_column_is_none() -> None:
    arrow, python = _both([Decimal("1.50"), None], pa.decimal128(10, 2))
    assert arrow == python == [1.5, None]


def test_a_json_text_column_becomes_json_values() -> None:
    column = pa.array(['{"b": 1, "a": [true, null]}', None, "3"])
    assert records.arrow_column(column, is_json=True) == [{"a": [True, None], "b": 1}, None, 3]
    assert records.python_column(['{"b": 1}', None, {"c": Decimal("2")}], is_json=True) == [
        {"b": 1},
        None,
        {"c": 2},
    ]


# --- event ids (SPEC §2.2) ---------------------------------------------------------------------


def test_event_id_is_a_deterministic_ulid_of_the_timestamp_and_the_key() -> None:
    made = event_id("events", "e1", 1704067200)
    assert made == event_id("events", "e1", 1704067200)
    assert made == "01HK153X00QVV9VCWQZ4XD6J4A"  # golden: a change re-sends events under new ids
    assert len(made) == 26
    parsed = ULID.from_str(made)
    assert parsed.milliseconds == 1704067200 * 1000
    assert bytes(parsed)[6:] == hashlib.sha256(b"events\x00e1").digest()[:10]


def test_event_id_differs_by_sync_and_key_and_defaults_to_time_zero() -> None:
    base = event_id("events", "e1", 1704067200)
    assert event_id("other", "e1", 1704067200) != base
    assert event_id("events", "e2", 1704067200) != base
    assert event_id("events", "e1", 1704067201)[10:] == base[10:]  # same random part
    assert ULID.from_str(event_id("events", "e1", None)).milliseconds == 0
    assert event_id("events", "e1", None).startswith("0000000000")
