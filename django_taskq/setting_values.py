"""The value types of the TASKQ settings: each function checks one raw value and returns it
converted, or raises TypeError whose text completes "KEY must be ..." (conf.find_problems)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

POOLS = ("prefork", "threads", "solo", "gevent", "eventlet", "asyncio")
#: Celery's ``task_publish_retry_policy`` default: how often a send is retried when the broker
#: cannot be reached (seconds between tries: start, growing by step, capped at max).
DEFAULT_PUBLISH_RETRY_POLICY = {"max_retries": 3, "interval_start": 0.0, "interval_step": 0.2,
                                "interval_max": 1.0}


def seconds(value: Any) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        # NaN compares false with everything: SIGNING_MAX_AGE = nan would never expire.
        raise TypeError("a number of seconds or a timedelta")
    return float(value)


def optional_seconds(value: Any) -> float | None:
    return None if value is None else seconds(value)


def positive_int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise TypeError("a whole number of at least 1")
    return value


def optional_positive_int(value: Any) -> int | None:
    return None if value is None else positive_int(value)


def text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError("a non-empty string")
    return value


_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")


def scheme_table(value: Any) -> dict[str, str]:
    """RESULT_BACKEND_SCHEMES: URL scheme -> dotted path of a ResultBackend subclass."""
    if not isinstance(value, Mapping) or not all(
            isinstance(scheme, str) and _SCHEME.fullmatch(scheme) and isinstance(path, str)
            and path for scheme, path in value.items()):
        raise TypeError("a dict of lowercase URL scheme -> dotted path of a ResultBackend "
                        "subclass, e.g. {'cassandra': 'myproj.results.CassandraBackend'}")
    return dict(value)


def transport_options(value: Any) -> dict[str, Any]:
    """BROKER_TRANSPORT_OPTIONS / RESULT_BACKEND_TRANSPORT_OPTIONS (Celery's dicts): a
    ``sentinel://`` URL reads ``master_name``, ``sentinel_kwargs`` and ``min_other_sentinels``,
    an ``sqs://`` one its own (brokers/sqs_options.py); other keys are ignored."""
    if not isinstance(value, Mapping) or not all(isinstance(key, str) for key in value):
        raise TypeError("a dict of transport options, e.g. {'master_name': 'mymaster'}")
    if "master_name" in value and not (isinstance(value["master_name"], str)
                                       and value["master_name"]):
        raise TypeError("a dict whose 'master_name' is the non-empty name of a Sentinel master")
    if not isinstance(value.get("sentinel_kwargs") or {}, Mapping):
        raise TypeError("a dict whose 'sentinel_kwargs' is a dict of redis-py options for the "
                        "sentinels, e.g. {'password': '...'}")
    minimum = value.get("min_other_sentinels", 0)
    if not isinstance(minimum, int) or isinstance(minimum, bool) or minimum < 0:
        raise TypeError("a dict whose 'min_other_sentinels' is a whole number of at least 0")
    return dict(value)


def use_ssl(value: Any) -> bool | dict[str, Any]:
    """BROKER_USE_SSL / REDIS_BACKEND_USE_SSL (Celery's): False, True, or a dict of TLS options
    (``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``, ``ssl_cert_reqs`` for Redis)."""
    if isinstance(value, bool):
        return value
    if not isinstance(value, Mapping) or not all(isinstance(key, str) for key in value):
        raise TypeError("True, False or a dict of TLS options, e.g. "
                        "{'ssl_ca_certs': '/path/ca.pem'}")
    return dict(value)


def optional_text(value: Any) -> str | None:
    return None if value is None else text(value)


def optional_compression(value: Any) -> str | None:
    """TASK_COMPRESSION / RESULT_COMPRESSION: None, or a method that is installed here."""
    if value is None:
        return None
    from . import compression
    from .exceptions import SerializationError

    try:
        return compression.check(value)
    except SerializationError as exc:
        raise TypeError(f"None or an installed compression method ({str(exc).rstrip('.')})") from exc


def dotted_paths(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not all(isinstance(v, str) and "." in v for v in value):
        raise TypeError("a list of dotted import paths, e.g. ['myapp.middleware.Tracing']")
    return tuple(value)


def names(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise TypeError("a list of serializer names, e.g. ['json']")
    return tuple(value)


def module_names(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not all(isinstance(v, str) and v for v in value):
        raise TypeError("a list of module names, e.g. ['myapp.jobs']")
    return tuple(value)


def routes(value: Any) -> tuple[Any, ...]:
    """Celery's ``task_routes``: a dict, a router (function or dotted path), or a list of them;
    each entry is checked when routing is first used (routing.py)."""
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(value)
    if isinstance(value, (dict, str)) or callable(value):
        return (value,)
    raise TypeError("a dict of task name (or glob) to queue or options, a router function or "
                    "its dotted path, or a list of those")


def task_annotations(value: Any) -> tuple[Any, ...]:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(value)
    if isinstance(value, (dict, str)) or callable(value) or hasattr(value, "annotate") \
            or hasattr(value, "annotate_any"):
        return (value,)  # one entry, as Celery also takes it
    raise TypeError("a dict of task name (or '*') to attributes, or a list of such dicts")


def optional_priority(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 9:
        raise TypeError("a whole number from 0 to 9, or None")
    return value


def retry_policy(value: Any) -> dict[str, float]:
    known = set(DEFAULT_PUBLISH_RETRY_POLICY)
    if not isinstance(value, Mapping) or set(value) - known or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
            for v in value.values()):
        raise TypeError(f"a dict with some of {', '.join(sorted(known))} (numbers, not negative)")
    return {**DEFAULT_PUBLISH_RETRY_POLICY, **value}


def beat_schedule(value: Any) -> dict[str, Any]:
    """Celery's ``beat_schedule``: entry name -> dict; each entry is checked when beat starts
    and by the system checks (beat/declared.py)."""
    if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, Mapping) for k, v in value.items()):
        raise TypeError("a dict of entry name to {'task': ..., 'schedule': ..., 'args': ..., "
                        "'kwargs': ..., 'options': ...}")
    return dict(value)


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError("True or False")
    return value


def pool(value: Any) -> str:
    if value not in POOLS:
        raise TypeError(f"one of {', '.join(POOLS)}")
    return str(value)


AUTOSCALE_FORMS = ("'MAX,MIN' (e.g. '10,3': at most 10 slots, at least 3), 'MAX' ('10': min 0) "
                   "or a (MAX, MIN) tuple")


def autoscale(value: Any) -> tuple[int, int]:
    """``--autoscale`` and WORKER_AUTOSCALE: ``(max, min)`` from Celery's forms. As Celery's
    command line, one number is the maximum (min 0) and two are taken in either order."""
    parts: list[Any]
    if isinstance(value, str):
        parts = [part.strip() for part in value.split(",")]
    elif isinstance(value, (list, tuple)):
        parts = list(value)
    else:
        parts = [value]
    try:
        numbers = [part if isinstance(part, int) and not isinstance(part, bool) else int(part)
                   for part in parts if not isinstance(part, (bool, float))]
    except (TypeError, ValueError):
        numbers = []
    if not 1 <= len(parts) <= 2 or len(numbers) != len(parts):
        raise TypeError(f"one or two whole numbers: {AUTOSCALE_FORMS}")
    high, low = max(numbers), (min(numbers) if len(numbers) == 2 else 0)
    if low < 0 or high < 1:
        raise TypeError(f"whole numbers with a maximum of at least 1 and a minimum of at least "
                        f"0: {AUTOSCALE_FORMS}")
    return high, low


def optional_autoscale(value: Any) -> tuple[int, int] | None:
    return None if value is None else autoscale(value)


#: The shortest signing key accepted: HMAC-SHA256 wants at least its output size of secret.
MIN_SIGNING_KEY_BYTES = 32


def signing_keys(value: Any) -> tuple[bytes, ...]:
    """SIGNING_KEYS: the first signs, every one verifies (a list so keys rotate)."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise TypeError("a list of secret keys (the first signs, any verifies), e.g. "
                        "[env('TASKQ_SIGNING_KEY')]")
    keys = tuple(v.encode("utf-8") if isinstance(v, str) else v for v in value)
    if not all(isinstance(k, bytes) and len(k) >= MIN_SIGNING_KEY_BYTES for k in keys):
        raise TypeError(f"a list of keys of at least {MIN_SIGNING_KEY_BYTES} bytes each "
                        "(make one with: python -c 'import secrets; print(secrets.token_urlsafe(48))')")
    if set(keys) & _django_secrets():
        raise TypeError("keys of their own, never SECRET_KEY or SECRET_KEY_FALLBACKS (whoever "
                        "learns a signing key runs any task); make one with: python -c 'import "
                        "secrets; print(secrets.token_urlsafe(48))'")
    return keys


def _django_secrets() -> set[bytes]:
    from django.conf import settings

    found = [getattr(settings, "SECRET_KEY", None), *getattr(settings, "SECRET_KEY_FALLBACKS", ())]
    return {k.encode("utf-8") if isinstance(k, str) else k for k in found
            if isinstance(k, (str, bytes))}
