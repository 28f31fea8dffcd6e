"""Broker and result backend URLs: parsing, and masking passwords for logs, errors and pages.

Every place that prints or raises a URL shows :func:`mask` of it (or :func:`mask_text` of text
that may hold one): the password after ``user:`` (Redis: ``:password@``) and the values of
query options that name a secret (``?password=``, ``?token=``...) become ``****``, in each URL
of a ``;``-separated list too (kombu's failover and sentinel style).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .exceptions import ConfigurationError

#: What a hidden password or secret option reads as.
HIDDEN = "****"
#: Query options whose value is a secret (matched anywhere in the option name).
_SECRET_OPTION = re.compile(
    r"(?i)([?&][^=&#]*(?:pass|pwd|secret|token|credential|api_?key|access_?key|signature)"
    r"[^=&#]*=)[^&#]*")
#: A URL inside free text (an error message, a repr): a scheme, ``://``, then no blank or quote.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]+")


@dataclass(frozen=True, slots=True)
class ParsedUrl:
    """A URL split into the parts brokers and backends need; its repr hides the password."""

    scheme: str
    host: str
    rest: str
    options: dict[str, str]
    original: str

    @property
    def masked(self) -> str:
        """The URL as it may be printed: :func:`mask` of ``original``."""
        return mask(self.original)

    def __repr__(self) -> str:  # a debug page or log showing a frame's locals
        return f"ParsedUrl({self.masked!r})"


def parse(url: str, *, setting: str) -> ParsedUrl:
    """Split ``url``; ``setting`` names where it came from, for the error message."""
    if not isinstance(url, str) or "://" not in url:
        shown = _mask_bare(url) if isinstance(url, str) else url
        raise ConfigurationError(
            f"{setting} = {shown!r} is not a URL; use e.g. 'db://default' or 'memory://'.")
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]  # keep case: database aliases are case-sensitive
    return ParsedUrl(scheme=parts.scheme.lower(), host=host,
                     rest=parts.path.lstrip("/"),
                     options=dict(parse_qsl(parts.query, keep_blank_values=True)),
                     original=url)


_NEXT_URL = re.compile(r";(?=[A-Za-z][A-Za-z0-9+.\-]*://)")


def mask(url: str) -> str:
    """``url`` with its passwords replaced by ``****``, safe to print and log.

    Hides the password of ``user:password@`` (and Redis's ``:password@``), even when it holds
    an unencoded ``@`` or ``/``; the values of secret query options (``?password=``); the same
    in every URL of a ``;``-separated list. A user name alone is kept.
    """
    if not isinstance(url, str):
        return url
    # A list splits only where the next URL's scheme follows: a ";" inside a password does not.
    return ";".join(_mask_one(part) for part in split_list(url))


def split_list(url: str) -> list[str]:
    """The URLs of a ``;``-separated list (kombu's failover and sentinel style), split only where
    the next URL's scheme follows: a ``;`` inside a password does not split."""
    return _NEXT_URL.split(url)


def mask_text(text: str) -> str:
    """``text`` with every URL in it masked (:func:`mask`): for messages that quote one."""
    if "://" not in text:
        return text
    return _URL_IN_TEXT.sub(lambda found: mask(found[0]), text)


def without_secrets(value: Any) -> Any:
    """A dict ``value`` (transport options...) with the values of its keys, nested ones too,
    that name a password or a secret (``sentinel_kwargs``' ``password``) hidden."""
    if not isinstance(value, dict):
        return value
    return {key: HIDDEN if item and isinstance(key, str) and any(
        word in key.lower() for word in ("password", "secret")) else without_secrets(item)
        for key, item in value.items()}


def has_password(url: object) -> bool:
    """Whether ``url`` is text holding a URL with a password or a secret option."""
    return isinstance(url, str) and "://" in url and mask_text(url) != url


def _mask_one(url: str) -> str:
    start = url.find("://")
    if start < 0:
        return url
    start += 3
    ends = [i for i in (url.find("?", start), url.find("#", start)) if i >= 0]
    stop = min(ends, default=len(url))
    at = url.rfind("@", start, stop)  # the last @: a password may hold an unencoded one
    if stop < len(url):  # a ? or # in the password ("redis://:pa?ss@host"): up to an @ that
        options = [i for i in (url.find("=", stop), url.find("&", stop)) if i >= 0]
        at = max(at, url.rfind("@", stop, min(options, default=len(url))))  # no option precedes
    if at >= 0 and ":" in url[start:at]:
        user = url[start:at].split(":", 1)[0]
        url = f"{url[:start]}{user}:{HIDDEN}{url[at:]}"
    query = url.find("?", start)
    if query < 0:
        return url
    return url[:query] + _SECRET_OPTION.sub(lambda m: m[1] + HIDDEN, url[query:])


def _mask_bare(value: str) -> str:
    """A value that is not a URL may still be ``user:password@host``: keep what follows @."""
    if "@" not in value:
        return value
    return f"{HIDDEN}@{value.rsplit('@', 1)[1]}"
