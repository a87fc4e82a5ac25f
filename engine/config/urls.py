"""Database URLs read and shown as SQLAlchemy reads and shows them, without importing it.

Loading a project checks every URL it names (sources, `state:`), and messages show URLs with
their password hidden. Importing SQLAlchemy costs more than the rest of `sync validate` and
`sync list` together (issue 10), and neither connects to a source, so this module parses with
SQLAlchemy's own grammar (`sqlalchemy.engine.url.make_url`, 2.1) and renders as
`URL.render_as_string` does. A test holds both to SQLAlchemy's answers. Code that connects
hands the URL text to SQLAlchemy itself.
"""

from __future__ import annotations

import re
from typing import NamedTuple
from urllib.parse import parse_qsl, quote, quote_plus, unquote

_URL = re.compile(  # SQLAlchemy's pattern: a URL that does not match is refused
    r"""
        (?P<name>[\w\+]+)://
        (?:
            (?P<username>[^:/]*)
            (?::(?P<password>[^@]*))?
        @)?
        (?:
            (?:
                \[(?P<ipv6host>[^/\?]+)\] |
                (?P<ipv4host>[^/:\?]+)
            )?
            (?::(?P<port>[^/\?]*))?
        )?
        (?:/(?P<database>[^\?]*))?
        (?:\?(?P<query>.*))?
    """,
    re.X,
)
UNPARSABLE = "<a URL SQLAlchemy cannot parse>"


class DatabaseURL(NamedTuple):
    """A URL's parts, as SQLAlchemy's `URL` holds them (percent-escapes decoded)."""

    drivername: str
    username: str | None
    password: str | None
    host: str | None
    port: int | None
    database: str | None
    query: tuple[tuple[str, str], ...]  # in the order written; a key may repeat

    def backend(self) -> str:
        """The dialect: the drivername before any `+driver`."""
        return self.drivername.split("+")[0]

    def render(self) -> str:
        """The URL with its password as `***`."""
        text = self.drivername + "://"
        if self.username is not None:
            text += quote(self.username, safe=" +")
            text += ":***" if self.password is not None else ""
            text += "@"
        if self.host is not None:
            text += f"[{self.host}]" if ":" in self.host else self.host
        if self.port is not None:
            text += f":{self.port}"
        if self.database is not None:
            text += "/" + quote(self.database, safe=" +/")
        if self.query:
            pairs = sorted(self.query, key=lambda pair: pair[0])  # stable: values keep their order
            text += "?" + "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in pairs)
        return text


def parse_url(url: str) -> DatabaseURL:
    """`url`'s parts; ValueError where SQLAlchemy's `make_url` refuses it (no `dialect://`, a
    port that is not a number), TypeError when it is not text."""
    found = _URL.match(url)
    if found is None:
        raise ValueError("not a SQLAlchemy URL")
    parts = found.groupdict()
    port = parts["port"]
    return DatabaseURL(
        drivername=parts["name"],
        username=_unquoted(parts["username"]),
        password=_unquoted(parts["password"]),
        host=parts["ipv4host"] or parts["ipv6host"],
        port=None if port is None else int(port),
        database=_unquoted(parts["database"]),
        query=tuple(parse_qsl(parts["query"])) if parts["query"] is not None else (),
    )


def _unquoted(part: str | None) -> str | None:
    return None if part is None else unquote(part)


def display_url(url: str) -> str:
    """A SQLAlchemy URL with its password hidden, fit for messages and logs."""
    try:
        parsed = parse_url(url)
    except ValueError:
        return UNPARSABLE
    if parsed.password is None:  # nothing to hide: the URL as written reads best
        return url
    return parsed.render()
