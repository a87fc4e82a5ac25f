"""Injected faults for /api and /v1 requests: scripted answers, drops, 429s, 5xx, latency.

For each request, in this order: added latency; the next scripted step (when `script_paths`
is unset or prefixes the path); a dropped connection with probability `drop_rate`; the rate
limit; a random 500/502/503 with probability `fail_rate`.

Rate limit: a request is answered 429 when `rate_limit` requests were already admitted in the
last second (a sliding window). Only admitted requests are counted (a 429 does not extend the
throttling), so a client that paces itself under the limit is never throttled. With
`retry_after` set, the 429 carries `Retry-After: <retry_after>`.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from cio_emulator.config import EmulatorConfig

DROP = "drop"
FAIL_STATUSES = (500, 502, 503)


class FaultSpecError(ValueError):
    """A faults document that cannot be applied."""


@dataclass
class Verdict:
    """What the faults decided for one request: pass, answer `status`, or drop."""

    action: str = "pass"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Faults:
    """The current fault settings and the rate limiter's window."""

    rate_limit: int | None = None
    retry_after: float | None = None
    fail_rate: float = 0.0
    latency_ms: int = 0
    drop_rate: float = 0.0
    script: deque[dict[str, Any]] = field(default_factory=deque)
    script_paths: str | None = None
    admitted: deque[float] = field(default_factory=deque)

    @classmethod
    def from_config(cls, config: EmulatorConfig) -> Faults:
        """The faults a config starts with."""
        return cls(
            rate_limit=config.rate_limit,
            retry_after=config.retry_after,
            fail_rate=config.fail_rate,
            latency_ms=config.latency_ms,
        )

    def describe(self) -> dict[str, Any]:
        """The settings as `GET /_emulator/faults` shows them."""
        return {
            "rate_limit": self.rate_limit,
            "retry_after": self.retry_after,
            "fail_rate": self.fail_rate,
            "latency_ms": self.latency_ms,
            "drop_rate": self.drop_rate,
            "script": [dict(s) for s in self.script],
            "script_paths": self.script_paths,
        }

    def update(self, spec: Any) -> None:
        """Apply any subset of the `POST /_emulator/faults` document (validated first)."""
        if not isinstance(spec, dict):
            raise FaultSpecError("the faults document must be a JSON object")
        values = {name: _parse(name, spec[name]) for name in spec}
        for name, value in values.items():
            setattr(self, name, value)
        if "rate_limit" in values:
            self.admitted.clear()

    def decide(self, path: str, now: float, rng: random.Random) -> Verdict:
        """The fault for a request arriving at `now` (admitted requests are counted)."""
        if self.script and (self.script_paths is None or path.startswith(self.script_paths)):
            return self._scripted()
        if self.drop_rate and rng.random() < self.drop_rate:
            return Verdict(DROP)
        if self.rate_limit is not None and self._throttled(now):
            headers = (
                {} if self.retry_after is None else {"Retry-After": _seconds(self.retry_after)}
            )
            return Verdict("status", 429, headers)
        if self.fail_rate and rng.random() < self.fail_rate:
            return Verdict("status", rng.choice(FAIL_STATUSES))
        return Verdict()

    def _scripted(self) -> Verdict:
        step = self.script[0]
        step["count"] -= 1
        if step["count"] <= 0:
            self.script.popleft()
        if step.get("action") == DROP:
            return Verdict(DROP)
        return Verdict("status", int(step["status"]))

    def _throttled(self, now: float) -> bool:
        window = self.admitted
        while window and window[0] <= now - 1.0:
            window.popleft()
        if len(window) >= self.rate_limit:  # type: ignore[operator]
            return True
        window.append(now)
        return False


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _number(name: str, value: Any, low: float, high: float | None, nullable: bool) -> Any:
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FaultSpecError(f"{name} must be a number")
    if value < low or (high is not None and value > high):
        raise FaultSpecError(
            f"{name} must be between {low} and {high if high is not None else 'any'}"
        )
    return value


def _script(value: Any) -> deque[dict[str, Any]]:
    if not isinstance(value, list):
        raise FaultSpecError("script must be a list of {count, status} or {count, action: drop}")
    steps: deque[dict[str, Any]] = deque()
    for step in value:
        count = step.get("count", 1) if isinstance(step, dict) else None
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise FaultSpecError("each script step needs a positive integer count")
        if step.get("action") == DROP:
            steps.append({"count": count, "action": DROP})
        elif isinstance(step.get("status"), int) and 100 <= step["status"] <= 599:
            steps.append({"count": count, "status": step["status"]})
        else:
            raise FaultSpecError("each script step needs a status (100-599) or action: drop")
    return steps


def _script_paths(value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise FaultSpecError("script_paths must be a path prefix or null")
    return value


_PARSERS: dict[str, Any] = {
    "rate_limit": lambda v: _number("rate_limit", v, 1, None, True),
    "retry_after": lambda v: _number("retry_after", v, 0, None, True),
    "fail_rate": lambda v: _number("fail_rate", v, 0, 1, False),
    "drop_rate": lambda v: _number("drop_rate", v, 0, 1, False),
    "latency_ms": lambda v: int(_number("latency_ms", v, 0, None, False)),
    "script": _script,
    "script_paths": _script_paths,
}


def _parse(name: str, value: Any) -> Any:
    parser = _PARSERS.get(name)
    if parser is None:
        raise FaultSpecError(f"unknown fault setting {name!r}; known: {sorted(_PARSERS)}")
    return parser(value)
