"""The sliding-window pacer: never more than `rate` starts in any window of `period`."""

from __future__ import annotations

import asyncio
import bisect
import itertools
import time

import pytest

from connectors.customerio.pacing import SlidingWindowPacer


def max_in_window(stamps: list[float], period: float) -> int:
    """The largest number of stamps inside any half-open window [t, t + period)."""
    ordered = sorted(stamps)
    return max(bisect.bisect_left(ordered, start + period) - i for i, start in enumerate(ordered))


async def acquire_all(pacer: SlidingWindowPacer, count: int) -> list[float]:
    stamps: list[float] = []

    async def one() -> None:
        await pacer.acquire()
        stamps.append(time.monotonic())

    await asyncio.gather(*(one() for _ in range(count)))
    return stamps


@pytest.mark.parametrize("spread", [True, False])
def test_many_concurrent_acquirers_never_exceed_the_cap_in_any_window(spread: bool) -> None:
    pacer = SlidingWindowPacer(20, period=0.1, margin=0.005, spread=spread)
    stamps = asyncio.run(acquire_all(pacer, 120))
    assert len(stamps) == 120
    assert max_in_window(stamps, 0.1) <= 20
    # The cap is also reached: 120 starts at 20 per 0.1 s need about 0.5 s, not much more.
    assert max(stamps) - min(stamps) < 1.5


def test_a_burst_is_not_admitted_on_top_of_the_steady_rate() -> None:
    """The failure mode of a token bucket: a full bucket plus the refill in one window."""
    pacer = SlidingWindowPacer(10, period=0.2, margin=0.0, spread=False)

    async def scenario() -> list[float]:
        await acquire_all(pacer, 10)
        await asyncio.sleep(0.1)  # a token bucket would have refilled half its budget here
        return await acquire_all(pacer, 10)

    start = time.monotonic()
    asyncio.run(scenario())
    assert time.monotonic() - start >= 0.2


def test_spread_spaces_starts_by_period_over_rate() -> None:
    pacer = SlidingWindowPacer(10, period=0.2, margin=0.0)
    stamps = sorted(asyncio.run(acquire_all(pacer, 5)))
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert min(gaps) >= 0.02 - 0.002


def test_waiters_are_served_in_arrival_order() -> None:
    pacer = SlidingWindowPacer(5, period=0.05, margin=0.0)
    order: list[int] = []

    async def one(i: int) -> None:
        await pacer.acquire()
        order.append(i)

    async def scenario() -> None:
        tasks = [asyncio.create_task(one(i)) for i in range(15)]
        await asyncio.gather(*tasks)

    asyncio.run(scenario())
    assert order == list(range(15))


def test_margin_widens_the_window() -> None:
    pacer = SlidingWindowPacer(3, period=0.1, margin=0.05, spread=False)
    stamps = sorted(asyncio.run(acquire_all(pacer, 6)))
    assert stamps[3] - stamps[0] >= 0.15 - 0.002
    assert len(pacer.recent_starts) == 3  # the first three left the window


@pytest.mark.parametrize(("rate", "period", "margin"), [(0, 1.0, 0.0), (1, 0.0, 0.0), (1, 1, -1)])
def test_invalid_settings_are_refused(rate: int, period: float, margin: float) -> None:
    with pytest.raises(ValueError):
        SlidingWindowPacer(rate, period, margin)
