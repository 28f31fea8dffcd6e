"""Celery's ``broker_use_ssl`` and ``redis_backend_use_ssl`` as URL options.

TASKQ['BROKER_USE_SSL'] and TASKQ['REDIS_BACKEND_USE_SSL'] (Celery's settings of those names are
translated to them) turn TLS on for a ``redis://`` or ``amqp://`` URL (it becomes ``rediss://`` or
``amqps://``; a ``sentinel://`` list gets ``ssl=true``) and, when they are a dict, add its entries
to the URL's query options: Celery's keys are the URL options' names (``ssl_ca_certs``,
``ssl_certfile``, ``ssl_keyfile``, ``ssl_cert_reqs`` on Redis; ``ca_certs``, ``certfile``,
``keyfile``, ``cert_reqs`` on RabbitMQ). An option the URL gives itself wins.
``ssl.CERT_REQUIRED`` and ``"CERT_REQUIRED"`` become ``required``.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from .exceptions import ConfigurationError
from .service_url import ParsedUrl, parse

#: The TLS scheme of each plain scheme.
_TLS_SCHEMES = {"redis": "rediss", "amqp": "amqps", "pyamqp": "amqps"}
_MODES = {ssl.CERT_NONE: "none", ssl.CERT_OPTIONAL: "optional", ssl.CERT_REQUIRED: "required"}


def _option(value: Any) -> str:
    if isinstance(value, ssl.VerifyMode) or (isinstance(value, int) and value in _MODES
                                             and not isinstance(value, bool)):
        return _MODES[ssl.VerifyMode(value)]
    text = str(value)
    if text.upper() in ("CERT_NONE", "CERT_OPTIONAL", "CERT_REQUIRED"):
        return text[5:].lower()
    return text


def with_tls(url: ParsedUrl, use_ssl: bool | Mapping[str, Any], setting: str,
             option_setting: str) -> ParsedUrl:
    """``url`` with TLS on and ``use_ssl``'s options added, or ``url`` itself when it is False.

    Raises:
        ConfigurationError: the URL's scheme has no TLS form here (``sentinel://``, ``db://``).
    """
    if use_ssl is False or (isinstance(use_ssl, Mapping) and not use_ssl):
        return url
    scheme = _TLS_SCHEMES.get(url.scheme, url.scheme)
    if scheme not in (*_TLS_SCHEMES.values(), "sentinel"):
        raise ConfigurationError(
            f"TASKQ[{option_setting!r}] turns TLS on, but {setting} {url.masked!r} has no TLS "
            "form (rediss://, amqps:// and sentinel:// have). Remove the setting, or use such "
            "a URL.")
    extra = {key: _option(value) for key, value in (use_ssl or {}).items()
             if key not in url.options and value is not None  # None: not given, as in Celery
             } if isinstance(use_ssl, Mapping) else {}
    if scheme == "sentinel" and "ssl" not in url.options:
        extra["ssl"] = "true"  # the master over TLS (redis_sentinel)
    text = scheme + url.original[len(url.scheme):]
    if extra:
        text += ("&" if "?" in text else "?") + urlencode(extra)
    return parse(text, setting=setting)
