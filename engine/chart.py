"""The run-history chart of `sync serve`: records sent per run as bars, each run's duration as a
line over them. This module lays the runs out in SVG coordinates; `templates/chart.svg.j2` draws
them, inline in the page (no script, no build step, nothing fetched).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

WIDTH, HEIGHT = 760, 240
LEFT, RIGHT, TOP, BOTTOM = 56, 56, 28, 30  # margins: the axes' labels and the legend
MAX_BAR_WIDTH = 28.0
MIN_BAR_HEIGHT = 2.0
STEPS = (1.0, 2.0, 2.5, 5.0, 10.0)  # an axis' top: one of these times a power of ten


@dataclass(frozen=True)
class Bar:
    """One run: its bar of records sent, where it links, and its tooltip."""

    x: float
    y: float
    width: float
    height: float
    run: str
    status: str
    title: str


@dataclass(frozen=True)
class Point:
    """One run's duration on the line."""

    x: float
    y: float
    title: str


@dataclass(frozen=True)
class Chart:
    bars: list[Bar]
    points: list[Point]
    sent_max: int  # the left axis' top
    seconds_max: float  # the right axis' top
    first: str  # when the oldest and the newest run shown started
    last: str
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = WIDTH - RIGHT
    top: int = TOP
    bottom: int = HEIGHT - BOTTOM

    @property
    def line(self) -> str:
        """The duration line as SVG `points`."""
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)

    @property
    def middle(self) -> float:
        return (self.top + self.bottom) / 2


def history_chart(runs: Sequence[Mapping[str, Any]]) -> Chart | None:
    """The chart of `runs`, oldest first; each needs `id`, `status`, `sent`, `duration_s` (None
    when unknown: an interrupted run) and `started` (text). None when there are no runs."""
    if not runs:
        return None
    sent_max = int(nice_ceiling(max(run["sent"] for run in runs)))
    durations = [run["duration_s"] for run in runs if run["duration_s"] is not None]
    seconds_max = nice_ceiling(max(durations, default=0.0))
    slot = (WIDTH - LEFT - RIGHT) / len(runs)
    bars, points = [], []
    for i, run in enumerate(runs):
        middle = LEFT + slot * (i + 0.5)
        bars.append(_bar(run, middle, min(slot * 0.7, MAX_BAR_WIDTH), sent_max))
        if run["duration_s"] is not None:
            y = _y(run["duration_s"], seconds_max)
            points.append(Point(middle, y, f"{run['started']}: {seconds_text(run['duration_s'])}"))
    return Chart(bars, points, sent_max, seconds_max, runs[0]["started"], runs[-1]["started"])


def _bar(run: Mapping[str, Any], middle: float, width: float, sent_max: int) -> Bar:
    y = min(
        _y(run["sent"], sent_max), HEIGHT - BOTTOM - MIN_BAR_HEIGHT
    )  # 0 sent: a stub to point at
    duration = "" if run["duration_s"] is None else f", {seconds_text(run['duration_s'])}"
    title = f"{run['started']}: {run['status']}, {run['sent']:,} sent{duration}"
    return Bar(middle - width / 2, y, width, HEIGHT - BOTTOM - y, run["id"], run["status"], title)


def _y(value: float, top: float) -> float:
    """Where `value` stands on an axis from 0 (the plot's bottom) to `top`."""
    plot = HEIGHT - BOTTOM - TOP
    return HEIGHT - BOTTOM - plot * (value / top if top else 0.0)


def nice_ceiling(value: float) -> float:
    """The least of 1, 2, 2.5 and 5 times a power of ten that is at least `value` (1 for 0)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))  # power <= value < 10 * power
    return next(step * power for step in STEPS if step * power >= value * (1 - 1e-9))


def seconds_text(value: float) -> str:
    return f"{value:.2f} s" if value < 100 else f"{value:,.0f} s"
