"""Customer.io's answers, read in one place: bodies, the error shapes of each API
(specs/customerio-api.md §6: v2 `errors[]`, v1 `meta.errors[]`, `meta.error`, plain text) and a
2xx batch answer's `errors[].batch_index` entries mapped onto the records of the request."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from engine.destination import Outcome

MAX_REASON_CHARS = 500


def parse_body(raw: bytes) -> Any:
    """A body as JSON, as text when it is not JSON, None when empty."""
    if not raw.strip():
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode("utf-8", errors="replace")


def clip(text: str) -> str:
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"


def error_reason(error: Any) -> str:
    """ "<field>: <message>" (or message, or reason) of one entry of an `errors` array."""
    if not isinstance(error, dict):
        return clip(str(error))
    message = error.get("message") or error.get("reason") or "refused"
    return clip(f"{error['field']}: {message}" if error.get("field") else str(message))


def body_reasons(body: Any) -> list[str]:
    """Reasons in Customer.io's error shapes: errors[], meta.errors[], meta.error, text."""
    if isinstance(body, str):
        return [body.strip().splitlines()[0]] if body.strip() else []
    if not isinstance(body, dict):
        return []
    meta = body["meta"] if isinstance(body.get("meta"), dict) else {}
    errors = body.get("errors") or meta.get("errors") or meta.get("error") or body.get("message")
    entries = errors if isinstance(errors, list) else [errors] if errors else []
    return [error_reason(entry) for entry in entries]


def answer_reason(status: int, body: Any) -> str:
    """An answer's status and reasons, for a rejected record."""
    return clip(f"HTTP {status}: {message(body)}")


def message(body: Any) -> str:
    """The reasons an answer gives, joined, or "no reason given"."""
    reasons = body_reasons(body)
    return clip("; ".join(reasons)) if reasons else "no reason given"


def _batch_index(error: Any, size: int) -> int | None:
    index = error.get("batch_index") if isinstance(error, dict) else None
    valid = isinstance(index, int) and not isinstance(index, bool) and 0 <= index < size
    return index if valid else None


def acknowledge(chunk: Sequence[tuple[int, bytes]], body: Any) -> Outcome:
    """Map a 2xx answer onto the chunk: `errors[].batch_index` rejected, the rest acked."""
    errors = body.get("errors") if isinstance(body, dict) else None
    if not errors:
        refs: list[int] | None = getattr(chunk, "refs", None)  # a packed body knows its refs
        return Outcome(refs if refs is not None else [ref for ref, _ in chunk], [])
    reasons: dict[int, list[str]] = {}
    for error in errors if isinstance(errors, list) else [errors]:
        index = _batch_index(error, len(chunk))
        if index is None:
            return _unattributed(chunk, error)
        reasons.setdefault(index, []).append(error_reason(error))
    acked = [ref for i, (ref, _) in enumerate(chunk) if i not in reasons]
    return Outcome(acked, [(chunk[i][0], "; ".join(r)) for i, r in sorted(reasons.items())])


def _unattributed(chunk: Sequence[tuple[int, bytes]], error: Any) -> Outcome:
    reason = clip(
        f"Customer.io reported an error naming no operation of this request "
        f"({error_reason(error)}), so none of its {len(chunk)} operations was acknowledged"
    )
    return Outcome([], [(ref, reason) for ref, _ in chunk])
