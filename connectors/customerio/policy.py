"""What the Customer.io client does with each answer, and how long it waits before a retry.

`STATUS_ACTIONS` classifies every response in one table; `backoff_delay` and `parse_retry_after`
time the retries the table asks for; `ClientSettings` holds the numbers both use. The client
(`connectors.customerio.client`) applies them; its docstring states the policy, and a test holds
that docstring to this table.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from connectors.customerio.limits import DEFAULT_APP_RATE_LIMIT, DEFAULT_RATE_LIMIT
from engine.errors import ConfigError


class Action(enum.Enum):
    """What the client does with an answer."""

    ACCEPT = "accept"  # acknowledged, except the items an `errors` array names (207 or 200)
    SPLIT = "split"  # the request was refused whole: halve it until the bad items are isolated
    REJECT = "reject"  # a one-item request: reject that item; several items: FAIL
    AUTH = "auth"  # credentials refused: stop launching, raise DestinationAuthError
    RETRY = "retry"  # transient: resend the same request after a backoff
    FAIL = "fail"  # not expected: stop launching, raise DestinationError


STATUS_ACTIONS: dict[int, Action] = {
    200: Action.ACCEPT,
    201: Action.ACCEPT,
    202: Action.ACCEPT,
    204: Action.ACCEPT,
    207: Action.ACCEPT,  # partial success: `errors[].batch_index` names the refused operations
    400: Action.SPLIT,
    413: Action.SPLIT,  # undocumented for Track; treated as "too large", like 400
    401: Action.AUTH,
    403: Action.AUTH,
    404: Action.FAIL,  # a POST endpoint that is not there: the URL is wrong, not the record
    405: Action.FAIL,
    408: Action.RETRY,
    429: Action.RETRY,
    500: Action.RETRY,
    502: Action.RETRY,
    503: Action.RETRY,
    504: Action.RETRY,
    522: Action.RETRY,
    524: Action.RETRY,
}
DEFAULT_ACTIONS: dict[int, Action] = {2: Action.ACCEPT, 4: Action.REJECT}  # by status class
"""Statuses missing from `STATUS_ACTIONS`: other 2xx accept, other 4xx reject, the rest FAIL."""


def action_for(status: int) -> Action:
    """The action `STATUS_ACTIONS` (or its default for the status class) gives `status`."""
    return STATUS_ACTIONS.get(status) or DEFAULT_ACTIONS.get(status // 100, Action.FAIL)


RETRIED_STATUSES = frozenset(s for s, a in STATUS_ACTIONS.items() if a is Action.RETRY)


@dataclass(frozen=True)
class ClientSettings:
    """Where and how fast to talk to one Customer.io workspace (URLs carry no /api or /v1)."""

    track_url: str
    app_url: str
    site_id: str
    track_api_key: str
    app_api_key: str | None = None
    rate_limit: int = DEFAULT_RATE_LIMIT  # Track request starts per sliding second
    app_rate_limit: int = DEFAULT_APP_RATE_LIMIT  # App request starts per sliding second
    concurrency: int = 8  # requests in flight, per API
    timeout_s: float = 30.0
    max_retries: int = 8
    max_batch_ops: int = 1000
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    retry_after_cap_s: float = 300.0

    def __post_init__(self) -> None:
        if min(self.rate_limit, self.app_rate_limit, self.concurrency, self.max_batch_ops) < 1:
            raise ConfigError(
                "rate_limit, app_rate_limit, concurrency and max_batch_ops must be at least 1"
            )
        if self.max_retries < 0 or self.timeout_s <= 0:
            raise ConfigError("max_retries must be 0 or more and timeout_s positive")


def backoff_delay(
    settings: ClientSettings, attempt: int, retry_after: float | None, rng: random.Random
) -> float:
    """Seconds to wait before retry number `attempt` (0-based); see `CustomerIOClient`."""
    ceiling = min(settings.backoff_cap_s, settings.backoff_base_s * 2**attempt)
    delay = rng.uniform(0, ceiling)
    if retry_after is None:
        return delay
    return max(min(retry_after, settings.retry_after_cap_s), delay)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """A Retry-After header in seconds (delta-seconds or HTTP-date); None when absent or bad."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
