"""The functions of the row work (`engine.sqlstage`), spelled for each database (SPEC §7.1).

SPEC §2.2's rules need a few things SQL spells differently in every database: a value's JSON
text, an md5 in hex, an instant's count of microseconds since 1970, whole-number division,
finiteness of a double. Each is a small construct here, and `SPELLINGS` says how each database
writes it: DuckDB's is the default (DuckDB state stores run it), PostgreSQL's runs in the tests,
Snowflake's and BigQuery's are compiled in the tests, without a connection. A database missing
from a row takes the default.

A spelling is a SQLAlchemy expression over the construct's arguments, which the dialect's own
compiler then writes out: quoting, bound values and operators stay its job (BigQuery's compiler
writes `a % b` as `MOD(a, b)`, for instance). Anything a spelling depends on is an argument of
the construct: the statement cache keys on a statement's shape, not on its values, and must
never serve one statement's SQL for another.

The JSON text of a double is each database's own (`1e20` is `100000000000000000000.0` in
DuckDB, `1e+20` in PostgreSQL): the values are the same, the fingerprints are not, so a state
store's fingerprint scheme belongs to its dialect (`engine.migrations.FINGERPRINT_SCHEMES`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import reduce
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

Expr = sa.ColumnElement[Any]
Spelling = Callable[..., Expr]
_EPOCH = "1970-01-01"


class _Construct(FunctionElement[Any]):
    """A function of the row work; `SPELLINGS` writes it per dialect. Its cache key is its
    class and its arguments (each subclass says so: `inherit_cache`)."""


class json_text(_Construct):
    """The JSON text of a text (a quoted, escaped string) or of a finite double (a number)."""

    name = "json_text"
    inherit_cache = True
    type = sa.String()


class md5_hex(_Construct):
    """The md5 of a text's UTF-8 bytes, as 32 lowercase hex digits."""

    name = "md5_hex"
    inherit_cache = True
    type = sa.String()


class epoch_micros(_Construct):
    """An instant's microseconds since 1970-01-01 UTC, a naive timestamp taken as UTC (BIGINT)."""

    name = "epoch_micros"
    inherit_cache = True
    type = sa.BigInteger()


class epoch_nanos(_Construct):
    """An instant's nanoseconds since 1970-01-01 UTC, a naive timestamp taken as UTC (BIGINT)."""

    name = "epoch_nanos"
    inherit_cache = True
    type = sa.BigInteger()


class int_div(_Construct):
    """The quotient of two integers, truncated toward zero, as an integer."""

    name = "int_div"
    inherit_cache = True
    type = sa.BigInteger()


class is_finite(_Construct):
    """True for a double that is neither NaN nor infinite."""

    name = "is_finite"
    inherit_cache = True
    type = sa.Boolean()


class days_since_epoch(_Construct):
    """A date's days since 1970-01-01 (negative before), as BIGINT."""

    name = "days_since_epoch"
    inherit_cache = True
    type = sa.BigInteger()


class json_normalised(_Construct):
    """Canonical JSON text (`engine.records.canonical`) as the database's payloads spell it."""

    name = "json_normalised"
    inherit_cache = True
    type = sa.String()


class whole_number(_Construct):
    """An exact number that is whole (a decimal, a wide integer) as a 38-digit whole number."""

    name = "whole_number"
    inherit_cache = True
    type = sa.Numeric(38, 0)


class double_to_whole(_Construct):
    """The whole number an integral double is, exactly (not rounded to 15 digits)."""

    name = "double_to_whole"
    inherit_cache = True
    type = sa.Numeric(38, 0)


class concat_text(_Construct):
    """Texts, none NULL, joined (any number of them)."""

    name = "concat_text"
    inherit_cache = True
    type = sa.String()


class _BigNumeric(sa.types.UserDefinedType[Any]):
    """BigQuery's 38-digit exact type (its NUMERIC keeps 29 digits before the point)."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "BIGNUMERIC"


# --- spellings ---------------------------------------------------------------------------------


def _date(text: str) -> Expr:
    return sa.cast(sa.literal(text), sa.Date)


def _doubles(*names: str) -> list[Expr]:
    return [sa.cast(sa.literal(name), sa.Double) for name in names]


def _joined(*parts: Expr) -> Expr:
    """`a || b || ...`: PostgreSQL's functions take at most 100 arguments; a payload of 300
    fields has over 600 parts."""
    return reduce(lambda left, right: left.concat(right), parts)


def _pg_double_to_whole(double: Expr) -> Expr:
    """PostgreSQL converts a double to NUMERIC through 15 significant digits, so a double beyond
    64 bits is rebuilt exactly from two exact integers: its multiple of 2^64 and the rest (a
    double that large is a multiple of 2^11, so the rest over 2^11 fits 53 bits)."""
    two_63, two_64, two_11 = _doubles(str(2**63), str(2**64), "2048")
    high = sa.func.floor(double / two_64)
    rest = sa.cast((double - high * two_64) / two_11, sa.BigInteger)
    exact = sa.cast(sa.cast(high, sa.BigInteger), sa.Numeric) * sa.literal(2**64, sa.Numeric())
    exact = exact + sa.cast(rest, sa.Numeric) * 2048
    small = sa.cast(sa.cast(double, sa.BigInteger), sa.Numeric)
    return sa.case((sa.func.abs(double) < two_63, small), else_=exact)


def _epoch_part(part: str) -> Callable[[Expr], Expr]:
    return lambda ts: sa.func.DATE_PART(sa.literal_column(part), ts)


def _pg_epoch(per_second: int) -> Callable[[Expr], Expr]:
    """EXTRACT(EPOCH ...) is an exact NUMERIC (PostgreSQL 14 on); a naive timestamp counts as UTC."""
    return lambda ts: sa.cast(sa.extract("epoch", ts) * per_second, sa.BigInteger)


def _bq_micros(ts: Expr) -> Expr:
    """UNIX_MICROS takes a TIMESTAMP; a DATETIME (naive) cast to one is taken as UTC."""
    return sa.func.UNIX_MICROS(sa.cast(ts, sa.TIMESTAMP))


SPELLINGS: dict[type[_Construct], dict[str, Spelling]] = {
    json_text: {
        "default": lambda x: sa.cast(sa.func.to_json(x), sa.String),
        "postgresql": lambda x: sa.cast(sa.func.to_json(x), sa.Text),
        "snowflake": lambda x: sa.func.TO_JSON(sa.func.TO_VARIANT(x)),
        "bigquery": lambda x: sa.func.TO_JSON_STRING(x),
    },
    md5_hex: {
        "default": lambda x: sa.func.md5(x),
        "snowflake": lambda x: sa.func.MD5(x),
        "bigquery": lambda x: sa.func.TO_HEX(sa.func.MD5(x)),
    },
    epoch_micros: {
        "default": lambda ts: sa.func.epoch_us(ts),
        "postgresql": _pg_epoch(1_000_000),
        "snowflake": _epoch_part("epoch_microsecond"),
        "bigquery": _bq_micros,
    },
    epoch_nanos: {
        "default": lambda ts: sa.func.epoch_ns(ts),
        "postgresql": _pg_epoch(1_000_000_000),  # its timestamps keep microseconds
        "snowflake": _epoch_part("epoch_nanosecond"),
        "bigquery": lambda ts: _bq_micros(ts) * 1000,  # its timestamps keep microseconds
    },
    int_div: {
        "default": lambda a, b: sa.func.divide(a, b),
        "postgresql": lambda a, b: sa.func.div(a, b),
        # `/` gives a decimal rounded to 6 places; a - MOD(a, b) divides exactly
        "snowflake": lambda a, b: sa.cast((a - a % b) / b, sa.BigInteger),
        "bigquery": lambda a, b: sa.func.DIV(a, b),
    },
    is_finite: {
        "default": lambda x: sa.func.isfinite(x),
        # both compare NaN equal to NaN, unlike IEEE 754
        "postgresql": lambda x: x.not_in(_doubles("NaN", "Infinity", "-Infinity")),
        "snowflake": lambda x: x.not_in(_doubles("NaN", "inf", "-inf")),
        "bigquery": lambda x: sa.and_(
            sa.not_(sa.func.IS_NAN(x, type_=sa.Boolean)),
            sa.not_(sa.func.IS_INF(x, type_=sa.Boolean)),
        ),
    },
    days_since_epoch: {
        "default": lambda d: sa.cast(sa.func.date_diff("day", _date(_EPOCH), d), sa.BigInteger),
        "postgresql": lambda d: sa.cast(d - _date(_EPOCH), sa.BigInteger),
        "snowflake": lambda d: sa.func.DATEDIFF(sa.literal_column("day"), _date(_EPOCH), d),
        "bigquery": lambda d: sa.func.UNIX_DATE(d),
    },
    # DuckDB re-spells the text with its own JSON writer, so that a stored payload read back
    # through json() gives the same bytes (the scheme json-sql-1); elsewhere the canonical text
    # is the payload's spelling as it is (PostgreSQL's jsonb would reorder keys by length).
    json_normalised: {
        "default": lambda t: sa.func.json(t),
        "postgresql": lambda t: t,
        "snowflake": lambda t: t,
        "bigquery": lambda t: t,
    },
    whole_number: {
        "default": lambda x: sa.cast(x, sa.Numeric(38, 0)),
        # NUMERIC(38, 0) refuses a HUGEINT's 39 digits; the number is whole already
        "postgresql": lambda x: sa.func.trunc(sa.cast(x, sa.Numeric)),
        "bigquery": lambda x: sa.cast(x, _BigNumeric()),
    },
    double_to_whole: {
        "default": lambda x: sa.cast(x, sa.Numeric(38, 0)),
        "postgresql": _pg_double_to_whole,
        "bigquery": lambda x: sa.cast(x, _BigNumeric()),
    },
    concat_text: {
        "default": lambda *parts: sa.func.concat(*parts),
        "postgresql": _joined,
        "snowflake": _joined,
        "bigquery": _joined,
    },
}


def _register(construct: type[_Construct], dialect: str, spelling: Spelling) -> None:
    def render(element: _Construct, compiler: SQLCompiler, **kw: Any) -> str:
        return compiler.process(spelling(*element.clauses), **kw)

    compiles(construct, *([] if dialect == "default" else [dialect]))(render)


for _construct, _spellings in SPELLINGS.items():
    for _dialect, _spelling in _spellings.items():
        _register(_construct, _dialect, _spelling)
