"""Hints for configuration problems: what to write when a key is missing or a value has the
wrong type, and pydantic's errors turned into located issues."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

from engine.config.models import Issue
from engine.yamlsource import Loc

_MISSING_HINTS = {
    "person": "add person: {identifier: id, column: <column>}",
    "column": "add column: <the column holding the person's identifier>",
    "key": "add key: <the column identifying each record>",
    "platform": "add platform: <the column holding ios or android>",
    "collection": "add collection: <the collection's name>",
    "object_type_id": "add object_type_id: <the object type's number>",
    "object_key": "add object_key: <the column holding the object's id>",
    "url": "add url: <a SQLAlchemy URL>",
    "cursor": "add cursor: <a column that grows when a row changes, e.g. updated_at>",
}
_TYPE_HINTS = {
    "int_parsing": "write a whole number",
    "int_type": "write a whole number",
    "int_from_float": "write a whole number",
    "float_parsing": "write a number",
    "bool_parsing": "write true or false",
    "bool_type": "write true or false",
    "string_type": "write text (quote it if YAML reads it as a number, date or boolean)",
    "literal_error": "use one of the values listed",
    "dict_type": "write a mapping of keys",
    "model_type": "write a mapping of keys",
    "tuple_type": "write a list",
    "greater_than": "raise the value",
    "greater_than_equal": "raise the value",
    "less_than_equal": "lower the value",
}


def key_hint(key: str, allowed: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    return f"did you mean '{close[0]}'?" if close else f"valid keys: {', '.join(allowed)}"


def issue_from_error(prefix: Loc, error: Any) -> Issue:
    """A pydantic error as an issue: what is wrong, at which key, and what to write."""
    loc = tuple(part for part in error["loc"] if part != "[key]")
    dotted = ".".join(str(part) for part in (*prefix, *loc))
    kind = error["type"]
    if kind == "missing":
        last = str(loc[-1]) if loc else ""
        return Issue(loc, f"missing key '{dotted}'", _MISSING_HINTS.get(last, f"add {last}:"))
    if kind == "extra_forbidden":
        return Issue(loc, f"unknown key '{dotted}'", "remove it")
    message = f"{dotted}: {error['msg']}" if dotted else error["msg"]
    hint = (error.get("ctx") or {}).get("hint") or _TYPE_HINTS.get(kind, "correct the value")
    return Issue(loc, message, hint)
