"""Source values → the canonical values the engine compares, fingerprints and delivers (SPEC §2.2).

Rules: timestamps and dates become integer Unix seconds (timezone-aware values converted to UTC,
naive values taken as UTC, sub-seconds floored); decimals become numbers (integral ones ints);
integers beyond 64 bits (HUGEINT, NUMERIC(38)) become their decimal text; JSON, struct and list
columns become JSON values, a MAP a JSON object; intervals become ISO 8601 durations (`P1M2DT3S`);
booleans stay booleans; NaN and infinities become NULL; bytes become lowercase hex; times and
anything else become their string.

A record's fingerprint is the md5 of its canonical encoding: compact JSON with keys sorted, as
`orjson` writes it (SPEC §4.9). `tests/test_records.py` pins golden values, so a change of
encoding is a visible, deliberate act — it would resend every record of every sync.

Columns arrive either as Arrow arrays (DuckDB sources: normalised vectorised, which matters for
timestamps, whose Python conversion costs ~10 µs a value) or as Python lists (other sources).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

JSON = Any  # a JSON-compatible value: None, bool, int, float, str, list, dict
ENCODING_VERSION = 2  # bump with any change to these rules: it re-encodes every row once
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_UNITS = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def canonical(value: JSON) -> bytes:
    """The canonical encoding: compact JSON, object keys sorted."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def fingerprint(encoded: bytes) -> str:
    return hashlib.md5(encoded, usedforsecurity=False).hexdigest()


def key_text(value: JSON) -> str | None:
    """A normalised key value as the string Customer.io compares (SPEC §2.2); None stays None."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dict, list)):
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    return str(value)


def email_key(value: str | None) -> str | None:
    return None if value is None else value.strip().lower()


# --- Python values ---------------------------------------------------------------------------


def _datetime_seconds(value: dt.datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return math.floor((value - _EPOCH).total_seconds())


def json_int(value: int) -> JSON:
    """An integer as JSON carries it: itself within 64 bits (signed), its decimal text beyond."""
    return value if _INT64_MIN <= value <= _INT64_MAX else str(value)


def iso_duration(months: int, days: int, nanoseconds: int) -> str:
    """An interval as an ISO 8601 duration (`P1M2DT3.5S`; `-P1D` when wholly negative)."""
    if min(months, days, nanoseconds) < 0 and max(months, days, nanoseconds) <= 0:
        return "-" + iso_duration(-months, -days, -nanoseconds)
    whole, fraction = divmod(nanoseconds, 1_000_000_000)
    seconds = f"{whole}.{fraction:09d}".rstrip("0").rstrip(".") if fraction else str(whole)
    date = (f"{months}M" if months else "") + (f"{days}D" if days else "")
    time = f"T{seconds}S" if nanoseconds else ""
    return f"P{date}{time}" if date or time else "PT0S"


def _timedelta_text(value: dt.timedelta) -> str:
    micros = value // dt.timedelta(microseconds=1)
    sign = -1 if micros < 0 else 1
    days, rest = divmod(abs(micros), 86_400_000_000)
    return iso_duration(0, sign * days, sign * rest * 1000)


def _decimal_number(value: Decimal) -> JSON:
    if not value.is_finite():
        return None
    return json_int(int(value)) if value == value.to_integral_value() else float(value)


def _float_number(value: float) -> JSON:
    return value if math.isfinite(value) else None


_PY_RULES: tuple[tuple[type | tuple[type, ...], Callable[[Any], JSON]], ...] = (
    (bool, lambda v: v),
    (str, lambda v: v),
    (int, json_int),
    (float, _float_number),
    (Decimal, _decimal_number),
    (dt.datetime, _datetime_seconds),
    (dt.date, lambda v: _datetime_seconds(dt.datetime(v.year, v.month, v.day))),
    (dt.timedelta, _timedelta_text),
    ((bytes, bytearray, memoryview), lambda v: bytes(v).hex()),
    (dict, lambda v: {str(k): python_value(x) for k, x in v.items()}),
    ((list, tuple), lambda v: [python_value(x) for x in v]),
    (uuid.UUID, str),
)


def python_value(value: Any) -> JSON:
    """Normalise one Python value from a DB-API driver."""
    if value is None:
        return None
    for kind, rule in _PY_RULES:
        if isinstance(value, kind):
            return rule(value)
    return str(value)


# --- Arrow columns ---------------------------------------------------------------------------


def _floor_seconds(ints: pa.Array, unit: int) -> pa.Array:
    if unit == 1:
        return ints
    # floor division for instants before 1970 too: pc.divide truncates toward zero
    shifted = pc.if_else(pc.less(ints, 0), pc.subtract(ints, unit - 1), ints)
    return pc.divide(shifted, unit)


def _timestamp_seconds(array: pa.Array) -> list[JSON]:
    unit = _UNITS[array.type.unit]
    seconds: list[JSON] = _floor_seconds(array.cast(pa.int64()), unit).to_pylist()
    return seconds


def _date_seconds(array: pa.Array) -> list[JSON]:
    days = array.cast(pa.date32()).cast(pa.int32()).cast(pa.int64())
    seconds: list[JSON] = pc.multiply(days, 86_400).to_pylist()
    return seconds


def _decimal_numbers(array: pa.Array) -> list[JSON]:
    """As `_decimal_number` does value by value: integral values are ints, others floats."""
    if array.type.scale <= 0:
        return [None if v is None else json_int(int(v)) for v in array.to_pylist()]
    return [
        None if v is None else json_int(int(v)) if v.is_integer() else v
        for v in array.cast(pa.float64()).to_pylist()
    ]


def _floats(array: pa.Array) -> list[JSON]:
    return [None if v is None or not math.isfinite(v) else v for v in array.to_pylist()]


def _nested(array: pa.Array) -> list[JSON]:
    kind = array.type
    return [None if v is None else _typed(v, kind) for v in array.to_pylist()]


def _typed(value: Any, kind: pa.DataType) -> JSON:
    """A nested Arrow value by its type: a MAP is a JSON object (keys as text), a STRUCT an
    object, a LIST an array; their items by the same rules as columns."""
    if value is None:
        return None
    if pa.types.is_map(kind):
        return {str(python_value(k)): _typed(v, kind.item_type) for k, v in value}
    if pa.types.is_struct(kind):
        return {f.name: _typed(value.get(f.name), f.type) for f in kind}
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return [_typed(item, kind.value_type) for item in value]
    if pa.types.is_dictionary(kind):
        return _typed(value, kind.value_type)
    if pa.types.is_interval(kind):
        return iso_duration(value.months, value.days, value.nanoseconds)
    if isinstance(value, float):
        return _float_number(value)
    return python_value(value)


def _intervals(array: pa.Array) -> list[JSON]:
    return [
        None if v is None else iso_duration(v.months, v.days, v.nanoseconds)
        for v in array.to_pylist()
    ]


def _wide_ints(array: pa.Array) -> list[JSON]:
    return [None if v is None else json_int(v) for v in array.to_pylist()]


def _binary(array: pa.Array) -> list[JSON]:
    return [None if v is None else v.hex() for v in array.to_pylist()]


def _arrow_rule(kind: pa.DataType) -> Callable[[pa.Array], list[JSON]]:
    rules: tuple[tuple[Callable[[pa.DataType], bool], Callable[[pa.Array], list[JSON]]], ...] = (
        (pa.types.is_timestamp, _timestamp_seconds),
        (pa.types.is_date, _date_seconds),
        (pa.types.is_decimal, _decimal_numbers),
        (pa.types.is_floating, _floats),
        (lambda t: pa.types.is_nested(t) or pa.types.is_dictionary(t), _nested),
        (lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t), _binary),
        (pa.types.is_interval, _intervals),
        (pa.types.is_duration, lambda a: [python_value(v) for v in a.to_pylist()]),
        (pa.types.is_uint64, _wide_ints),
        (pa.types.is_time, _stringify),
    )
    return next((rule for test, rule in rules if test(kind)), _plain)


def _plain(array: pa.Array) -> list[JSON]:
    values: list[JSON] = array.to_pylist()
    return values


def _stringify(array: pa.Array) -> list[JSON]:
    return [None if v is None else str(v) for v in array.to_pylist()]


def _json_texts(values: list[JSON]) -> list[JSON]:
    return [None if v is None else orjson.loads(v) for v in values]


def arrow_column(array: pa.Array | pa.ChunkedArray, is_json: bool = False) -> list[JSON]:
    """Normalise one Arrow column; `is_json` parses a column the source declared as JSON text."""
    values = _arrow_rule(array.type)(array)
    return _json_texts(values) if is_json else values


def python_column(values: Sequence[Any], is_json: bool = False) -> list[JSON]:
    if is_json:
        return [orjson.loads(v) if isinstance(v, (str, bytes)) else python_value(v) for v in values]
    return [python_value(v) for v in values]
