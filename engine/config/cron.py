"""`schedule:` (SPEC §2.2, §7.4): standard cron in UTC, read here; `engine.schedule` runs it.

Standard means what cron(8) reads: five fields, minute hour day-of-month month day-of-week, each
a comma list of `*`, a number, a name (JAN-DEC, SUN-SAT, any case), a range `a-b`, or a step
`*/n` or `a-b/n`; Sunday is 0 or 7; or one of the macros @hourly, @daily, @midnight, @weekly,
@monthly, @yearly, @annually. When day-of-month and day-of-week are both restricted (anything
but a bare `*`), a day matches if either matches, as cron does.

croniter, which walks the calendar at run time, reads more than that (seconds, years, `L`, `W`,
`#`, `?`, `H`, `a/n`, ranges that wrap) and reads an equal range `5-5` as the whole cycle. So
this module refuses the extensions, and hands croniter its canonical form: every restricted
field spelled out as a list of numbers, which croniter reads as cron would.
"""

from __future__ import annotations

import re
from typing import NamedTuple

MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_ITEM = re.compile(
    r"(?:(?P<star>\*)|(?P<first>[0-9]+|[a-z]+)(?:-(?P<last>[0-9]+|[a-z]+))?)(?:/(?P<step>[0-9]+))?",
    re.IGNORECASE | re.ASCII,
)
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # February has a 29th, some years


class CronError(ValueError):
    """What is wrong with a `schedule:`, in words fit for the loader's message."""


class _Field(NamedTuple):
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()

    def values(self, part: str) -> frozenset[int]:
        """The values a field names (Sunday as 0), or CronError saying what is wrong."""
        try:
            found = frozenset(v for item in part.split(",") for v in self._item(item))
        except CronError as exc:
            where = f"{self.name} '{part}':" if "," in part else self.name
            raise CronError(f"{where} {exc}") from None
        return frozenset(v % 7 for v in found) if self.high == 7 else found

    def _item(self, item: str) -> range:
        match = _ITEM.fullmatch(item)
        if not match:
            raise CronError(f"'{item}' is not standard cron")
        first, last, step = match["first"], match["last"], match["step"]
        if first is not None and last is None and step is not None:
            raise CronError(f"'{item}' steps from one value: write {first}-{self.high}/{step}")
        low = self.low if first is None else self._value(first)
        high = self.high if first is None else self._value(last or first)
        if low > high:
            sunday = " (Sunday is 0 or 7)" if self.high == 7 else ""
            raise CronError(f"'{item}' runs backwards: write the low end first{sunday}")
        if step is not None and int(step) == 0:
            raise CronError(f"'{item}' has a step of 0")
        return range(low, high + 1, int(step or 1))

    def _value(self, word: str) -> int:
        if word.isdigit():
            number = int(word)
        elif word.lower() in self.names:
            number = self.names.index(word.lower()) + self.low
        else:
            named = f" or a name like {self.names[1].upper()}" if self.names else ""
            raise CronError(f"'{word}' is not a number{named}")
        if not self.low <= number <= self.high:
            raise CronError(f"'{word}' is outside {self.low}-{self.high}")
        return number


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day-of-month", 1, 31),
    _Field("month", 1, 12, _MONTHS),
    _Field("day-of-week", 0, 7, _WEEKDAYS),
)


def canonical_cron(expression: str) -> str:
    """Five fields, each `*` or the sorted list of the numbers it names (Sunday 0): the form
    croniter reads exactly as cron reads the expression. CronError when it is not standard cron."""
    parts = _fields(expression)
    values = [field.values(part) for field, part in zip(_FIELDS, parts, strict=True)]
    if parts[2] != "*" and parts[4] == "*":
        _check_some_month_has_the_day(parts[3], values[3], min(values[2]))
    return " ".join(
        "*" if part == "*" else ",".join(map(str, sorted(found)))
        for part, found in zip(parts, values, strict=True)
    )


def cron_problem(expression: str) -> str | None:
    """What keeps `expression` from being standard cron that runs, or None when it is."""
    try:
        canonical_cron(expression)
    except CronError as exc:
        return str(exc)
    return None


def is_cron(expression: str) -> bool:
    """Whether `expression` is standard five-field cron (or a macro) that runs at some time."""
    return cron_problem(expression) is None


def _fields(expression: str) -> list[str]:
    text = expression.strip()
    if text.startswith("@"):
        if text.lower() not in MACROS:
            raise CronError(f"'{text}' is not one of {', '.join(MACROS)}")
        text = MACROS[text.lower()]
    parts = text.split()
    if len(parts) != 5:
        extra = " (no seconds, no years)" if len(parts) > 5 else ""
        raise CronError(f"{len(parts)} field(s); cron has five{extra}")
    return parts


def _check_some_month_has_the_day(part: str, months: frozenset[int], day: int) -> None:
    if all(day > _MONTH_DAYS[month - 1] for month in months):
        raise CronError(f"it never runs: no month in '{part}' has day {day}")
