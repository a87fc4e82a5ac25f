"""A light syntax check of `schedule:` cron expressions (SPEC §2.2); `engine.schedule` runs them."""

from __future__ import annotations

import re

_CRON_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_CRON_FIELDS = (
    (0, 59, ()),
    (0, 23, ()),
    (1, 31, ()),
    (1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
    (0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)
_CRON_ITEM = re.compile(r"(\*|\w+(?:-\w+)?)(?:/(\d+))?")


def is_cron(expression: str) -> bool:
    """A light syntax check of a five-field cron expression (or an @macro)."""
    parts = expression.split()
    if len(parts) == 1 and parts[0].lower() in _CRON_MACROS:
        return True
    return len(parts) == 5 and all(
        _cron_field_ok(part, *spec) for part, spec in zip(parts, _CRON_FIELDS, strict=True)
    )


def _cron_field_ok(part: str, low: int, high: int, names: tuple[str, ...]) -> bool:
    return all(_cron_item_ok(item, low, high, names) for item in part.lower().split(","))


def _cron_item_ok(item: str, low: int, high: int, names: tuple[str, ...]) -> bool:
    match = _CRON_ITEM.fullmatch(item)
    if not match or match.group(2) == "0":
        return False
    if match.group(1) == "*":
        return True
    ends = match.group(1).split("-")
    values = [names.index(e) + low if e in names else int(e) if e.isdigit() else -1 for e in ends]
    return all(low <= v <= high for v in values) and values == sorted(values)

