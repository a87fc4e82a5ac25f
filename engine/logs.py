"""What the engine tells operators on stderr: one line per event, as text or as JSON (SPEC §7.4).

An event is a standard `logging` record whose extras name it:

    log.info("sync 'people' done", extra=event("run.end", sync="people", run=run_id, sent=3))

`--log-format json` writes each record as one JSON object: `ts` (ISO 8601, UTC), `level`,
`event` (`log` for records that name none), `sync`, `run`, `message`, the event's fields, and
`hint` when there is one; a traceback, shown only at -vv, rides in `traceback`. Text mode writes
the same records as readable lines: `error: ... (hint: ...)`, `warning: ...`, and at -v `info: ...`.

This module imports only the standard library: the CLI sets logging up before anything else.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any

EVENT = "cio_event"  # the attribute of a record that holds its event (see `event`)


def event(name: str, *, sync: str | None = None, run: str | None = None, **fields: Any) -> Any:
    """The `extra=` of a logging call that records the event `name` with its fields."""
    return {EVENT: {"event": name, "sync": sync, "run": run, "fields": fields}}


def _parts(record: logging.LogRecord) -> dict[str, Any]:
    found: dict[str, Any] = getattr(record, EVENT, None) or {}
    return found


class JsonFormatter(logging.Formatter):
    """One JSON object per record."""

    def format(self, record: logging.LogRecord) -> str:
        parts = _parts(record)
        fields = dict(parts.get("fields") or {})
        document: dict[str, Any] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "event": parts.get("event") or "log",
            "sync": parts.get("sync"),
            "run": parts.get("run"),
            "message": record.getMessage(),
            **{k: v for k, v in fields.items() if k != "hint"},
        }
        if fields.get("hint"):
            document["hint"] = fields["hint"]
        if record.exc_info:
            document["traceback"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`error: message (hint: ...)`; a traceback under it only when the record carries one."""

    def format(self, record: logging.LogRecord) -> str:
        hint = (_parts(record).get("fields") or {}).get("hint")
        line = f"{record.levelname.lower()}: {record.getMessage()}"
        if hint:
            line += f" (hint: {hint})"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure(fmt: str, verbose: int, quiet: bool) -> None:
    """Log to stderr: warnings and errors by default (info too in JSON, for machines), info at
    -v, debug and tracebacks at -vv, errors only with -q."""
    if quiet:
        level = logging.ERROR
    elif verbose or fmt == "json":
        level = logging.DEBUG if verbose >= 2 else logging.INFO
    else:
        level = logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # the event loop's own chatter (selector choice, slow callbacks) only at -vvv
    logging.getLogger("asyncio").setLevel(logging.DEBUG if verbose >= 3 else logging.WARNING)
    # `run --due` says what it decided at the default verbosity too (-q hides it)
    logging.getLogger("cio_sync.schedule").setLevel(
        logging.NOTSET if quiet else min(level, logging.INFO)
    )


def tracebacks() -> bool:
    """Whether errors carry their traceback (-vv)."""
    return logging.getLogger().isEnabledFor(logging.DEBUG)
