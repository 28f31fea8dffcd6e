"""Broker and result backend URLs: parsing, and masking passwords for logs and banners."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from .exceptions import ConfigurationError


@dataclass(frozen=True, slots=True)
class ParsedUrl:
    """A URL split into the parts brokers and backends need."""

    scheme: str
    host: str
    rest: str
    options: dict[str, str]
    original: str


def parse(url: str, *, setting: str) -> ParsedUrl:
    """Split ``url``; ``setting`` names where it came from, for the error message."""
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(
            f"{setting} = {url!r} is not a URL; use e.g. 'db://default' or 'memory://'.")
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]  # keep case: database aliases are case-sensitive
    return ParsedUrl(scheme=parts.scheme.lower(), host=host,
                     rest=parts.path.lstrip("/"),
                     options=dict(parse_qsl(parts.query, keep_blank_values=True)),
                     original=url)


def mask(url: str) -> str:
    """The URL with any password replaced by ``****``, safe to print and log."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:****@{netloc}"))
