"""Celery settings honoured as TASKQ keys, with the adapters from Celery's value forms to ours.

An adapter turns what a Celery project wrote into what ``TASKQ`` takes (``django-db`` into
``db://default``, ``processes`` into ``prefork``, content types into serializer names); it raises
``TypeError`` (what the value must be) for a value nobody can use, or :class:`Refused` for one
that is understood but not honoured. ``conf``'s converters check the result as for a TASKQ value.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from .. import serializers
from ..exceptions import SerializationError
from .explained import (
    CACHE_HINT,
    NO_BACKEND_HINT,
    NO_EFFECT,
    SIGNING_HINT,
    SQLALCHEMY_HINT,
    TRANSPORT_HINT,
)


class Refused(Exception):
    """A Celery value that is understood but not honoured (kind NO_EFFECT or NOT_YET)."""

    def __init__(self, kind: str, hint: str) -> None:
        super().__init__(hint)
        self.kind, self.hint = kind, hint


_BROKER_SCHEMES = ("db", "memory", "redis", "rediss", "sentinel", "amqp", "amqps", "pyamqp",
                   "sqs")
_RESULT_SCHEMES = ("db", "memory", "redis", "rediss", "sentinel", "rpc", "cache")
#: The transport options django_taskq reads (a sentinel:// URL's); Celery's others mean nothing.
_TRANSPORT_KEYS = ("master_name", "sentinel_kwargs", "min_other_sentinels")


def _tls(url: str) -> str:
    """Celery writes ``ssl_cert_reqs=CERT_REQUIRED`` in Redis URLs; redis-py wants ``required``."""
    return re.sub(r"(ssl_cert_reqs=)CERT_(REQUIRED|OPTIONAL|NONE)\b",
                  lambda m: m[1] + m[2].lower(), url)


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower()


def _broker_url(value: Any) -> str:
    if not isinstance(value, str) or not value or (";" in value and _scheme(value) != "sentinel"):
        raise TypeError("one broker URL (failover lists are not offered; a sentinel:// list is)")
    scheme = _scheme(value)
    if scheme == "django":  # kombu's old Django transport: messages in the default database
        return "db://default"
    if scheme == "librabbitmq":
        return "amqp" + value[len(scheme):]
    if scheme.startswith("sqla+"):
        raise TypeError("'db://<alias>' (a DATABASES alias) instead of Celery's SQLAlchemy "
                        "transport")
    if scheme not in _BROKER_SCHEMES:
        raise TypeError(f"a URL of a broker django_taskq has ({', '.join(_BROKER_SCHEMES)}); "
                        f"there is no {scheme} broker")
    return _tls(value)


def _result_backend(value: Any) -> str:
    if value is None or value == "disabled":
        raise Refused(NO_EFFECT, NO_BACKEND_HINT)
    if not isinstance(value, str) or not value:
        raise TypeError("a result backend URL")
    scheme = _scheme(value)
    if value == "rpc":  # Celery takes a backend's alias alone (its by_url)
        return "rpc://"
    if scheme == "django-db":  # django-celery-results: results in the default database
        return "db://default"
    if scheme == "django-cache":  # django-celery-results: Django's cache (CACHE_BACKEND alias)
        return "cache://default"
    if value == "cache" or scheme.startswith("cache+"):  # Celery's memcached backend
        location = value.split("://", 1)[-1].split("/", 1)[0].replace(",", ";") \
            if "://" in value else "127.0.0.1:11211"
        raise Refused(NO_EFFECT, CACHE_HINT.format(location=location or "127.0.0.1:11211"))
    if scheme.startswith("db+"):
        raise Refused(NO_EFFECT, SQLALCHEMY_HINT)
    if scheme not in _RESULT_SCHEMES:
        raise Refused(NO_EFFECT, f"django_taskq has no {scheme} result backend: use "
                       "TASKQ['RESULT_BACKEND'] = 'db://<alias>', 'redis://...', "
                       "'cache://<alias>' or 'rpc://', or plug a store of your own in with "
                       f"TASKQ['RESULT_BACKEND_SCHEMES'] = {{'{scheme}': 'dotted.path.Backend'}} "
                       "(docs/result-backends.md). Remove it.")
    return _tls(value)


def _transport_options(value: Any) -> Any:
    """Kept when it holds a key a broker here reads (Sentinel's, SQS's); else it has no effect
    (``visibility_timeout`` alone: leases are renewed while a task runs)."""
    from ..brokers.sqs_options import KNOWN

    read = {*_TRANSPORT_KEYS, *KNOWN, "predefined_queues", "sqs-creation-attributes"}
    read.discard("visibility_timeout")
    if isinstance(value, dict) and not any(key in value for key in read):
        raise Refused(NO_EFFECT, TRANSPORT_HINT)
    return value


def _use_ssl(value: Any) -> Any:
    return False if value is None else value


def _serializer(value: Any) -> str:
    """A serializer's name, from its name or content type (registered ones too)."""
    if value == "auth":
        raise Refused(NO_EFFECT, SIGNING_HINT)
    try:
        if isinstance(value, str):
            return serializers.get(value).name
    except SerializationError:
        pass
    raise TypeError(f"one of {', '.join(serializers.NAMES)} (or their content types; others "
                    "are added with django_taskq.serializers.register)")


def _accept_content(value: Any) -> list[str]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise TypeError("a list of serializer names or content types, e.g. ['json']")
    return [_serializer(item) for item in value]


def _is_zero(value: Any) -> bool:
    return not isinstance(value, bool) and (value == 0 or value == timedelta(0))


def _result_expires(value: Any) -> Any:
    if value is None or _is_zero(value):
        raise Refused(NO_EFFECT, "Results are always deleted after TASKQ['RESULT_EXPIRES'] "
                       "(default one day); set it high to keep them longer. Remove it.")
    return value


def _zero_is_none(value: Any) -> Any:
    """Celery reads 0 as 'not set' (CPU count, no limit); here that is None."""
    return None if _is_zero(value) else value


def _prefetch(value: Any) -> Any:
    if _is_zero(value):
        raise Refused(NO_EFFECT, "Unlimited prefetch is not offered: a worker holds at most "
                       "concurrency × TASKQ['WORKER_PREFETCH_MULTIPLIER'] messages (default 4).")
    return value


def _pool(value: Any) -> Any:
    return "prefork" if value == "processes" else value


#: Celery setting → (TASKQ key, adapter from Celery's form, or None when the value is the same).
HONOURED: dict[str, tuple[str, Callable[[Any], Any] | None]] = {
    "broker_url": ("BROKER_URL", _broker_url),
    "result_backend": ("RESULT_BACKEND", _result_backend),
    "broker_transport_options": ("BROKER_TRANSPORT_OPTIONS", _transport_options),
    "result_backend_transport_options": ("RESULT_BACKEND_TRANSPORT_OPTIONS", _transport_options),
    "broker_use_ssl": ("BROKER_USE_SSL", _use_ssl),
    "redis_backend_use_ssl": ("REDIS_BACKEND_USE_SSL", _use_ssl),
    "task_default_queue": ("DEFAULT_QUEUE", None),
    "task_serializer": ("TASK_SERIALIZER", _serializer),
    "result_serializer": ("RESULT_SERIALIZER", _serializer),
    "accept_content": ("ACCEPT_CONTENT", _accept_content),
    "task_ignore_result": ("TASK_IGNORE_RESULT", None),
    "task_always_eager": ("TASK_ALWAYS_EAGER", None),
    "task_eager_propagates": ("TASK_EAGER_PROPAGATES", None),
    "task_store_eager_result": ("TASK_STORE_EAGER_RESULT", None),
    "result_expires": ("RESULT_EXPIRES", _result_expires),
    "result_extended": ("RESULT_EXTENDED", None),
    "worker_concurrency": ("WORKER_CONCURRENCY", _zero_is_none),
    "worker_pool": ("WORKER_POOL", _pool),
    "worker_prefetch_multiplier": ("WORKER_PREFETCH_MULTIPLIER", _prefetch),
    "task_time_limit": ("WORKER_TIME_LIMIT", None),
    "task_soft_time_limit": ("WORKER_SOFT_TIME_LIMIT", None),
    "worker_max_tasks_per_child": ("WORKER_MAX_TASKS_PER_CHILD", _zero_is_none),
    "worker_max_memory_per_child": ("WORKER_MAX_MEMORY_PER_CHILD", _zero_is_none),
    "task_track_started": ("TASK_TRACK_STARTED", None),
    "task_routes": ("TASK_ROUTES", None),
    "task_annotations": ("TASK_ANNOTATIONS", None),
    "task_default_priority": ("TASK_DEFAULT_PRIORITY", None),
    "imports": ("IMPORTS", None),
    "include": ("IMPORTS", None),  # folded into imports: Celery imports both lists
    "task_publish_retry": ("TASK_PUBLISH_RETRY", None),
    "task_publish_retry_policy": ("TASK_PUBLISH_RETRY_POLICY", None),
    "beat_schedule": ("BEAT_SCHEDULE", None),
    "beat_max_loop_interval": ("BEAT_MAX_LOOP_INTERVAL", None),
    "worker_send_task_events": ("EVENTS", None),  # Celery's -E; here on unless set False
    "task_send_sent_event": ("TASK_SEND_SENT_EVENT", None),
    # kombu's names, aliases and header values: conf checks the method is installed.
    "task_compression": ("TASK_COMPRESSION", None),
    "result_compression": ("RESULT_COMPRESSION", None),
    "result_persistent": ("RESULT_PERSISTENT", None),
}
