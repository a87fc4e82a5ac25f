"""Request pacing: at most `rate` request starts in any sliding window of `period` seconds.

A token bucket such as `aiolimiter.AsyncLimiter(150, 1)` admits a full bucket on top of the
steady rate (about 300 starts in one second were measured), and even `AsyncLimiter(1, 1/150)`
can admit 151 starts in a closed one-second window. Customer.io's window is not documented, so
the guarantee here is about *any* sliding window: the pacer keeps the start stamps of the last
period in a deque and lets a start through only when fewer than `rate` of them are younger than
`period + margin`. It also spaces starts at least `period / rate` apart, so a full budget is
spread over the window instead of leaving in one burst (a plain minimum interval does that
with less machinery than a second limiter would).

A client made with the workspace's shared budget (`engine.budget`, as every run's is) paces by
the budget's slots instead; this pacer serves a client made without one.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque


class SlidingWindowPacer:
    """Admit at most `rate` starts in any sliding window of `period` seconds.

    `margin` (seconds) is added to the window: it absorbs the jitter between the stamp taken
    here and the moment the server stamps the request's arrival. Waiters are served in arrival
    order (an `asyncio.Lock` is FIFO). One pacer is shared by every sync that uses the same
    workspace, so the budget is shared too.
    """

    def __init__(
        self, rate: int, period: float = 1.0, margin: float = 0.05, *, spread: bool = True
    ) -> None:
        if rate < 1:
            raise ValueError("rate must be at least 1 request start per period")
        if period <= 0 or margin < 0:
            raise ValueError("period must be positive and margin not negative")
        self.rate = rate
        self.period = period
        self.margin = margin
        self._interval = period / rate if spread else 0.0
        self._starts: deque[float] = deque()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        """Return when one more request may start; the start is stamped on return."""
        async with self._lock:
            while (delay := self._delay(time.monotonic())) > 0:
                await asyncio.sleep(delay)
            self._starts.append(time.monotonic())

    def _delay(self, now: float) -> float:
        """Seconds to wait before a start at `now` keeps the window and spacing rules."""
        window = self.period + self.margin
        while self._starts and now - self._starts[0] >= window:
            self._starts.popleft()
        if len(self._starts) >= self.rate:
            return self._starts[0] + window - now
        if self._starts and self._interval:
            return self._starts[-1] + self._interval - now
        return 0.0

    @property
    def recent_starts(self) -> tuple[float, ...]:
        """Monotonic stamps of the starts still inside the window (for tests and metrics)."""
        return tuple(self._starts)
