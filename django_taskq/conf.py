"""The TASKQ settings: one dict in Django settings, environment overrides, typed and lazy.

Nothing is read at import time. ``get_settings()`` builds a frozen :class:`TaskqSettings` on first
use and caches it; the cache is dropped when Django's ``setting_changed`` fires for ``TASKQ`` or a
Celery setting (the receiver is connected in ``apps.py``); call ``reset_settings()``
after changing the environment.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from .exceptions import ConfigurationError

#: Environment variables that override TASKQ keys (read with django-environ).
ENV_OVERRIDES = {
    "TASKQ_BROKER_URL": "BROKER_URL",
    "TASKQ_RESULT_BACKEND": "RESULT_BACKEND",
}

POOLS = ("prefork", "threads", "solo")
DEFAULT_LEASE = 60.0
#: Celery's ``task_publish_retry_policy`` default: how often a send is retried when the broker
#: cannot be reached (seconds between tries: start, growing by step, capped at max).
DEFAULT_PUBLISH_RETRY_POLICY = {"max_retries": 3, "interval_start": 0.0, "interval_step": 0.2,
                                "interval_max": 1.0}


@dataclass(frozen=True, slots=True)
class TaskqSettings:
    """Every TASKQ setting with its default; see docs/settings.md for what each one means."""

    BROKER_URL: str = "db://default"
    RESULT_BACKEND: str = "db://default"
    DEFAULT_QUEUE: str = "default"
    TASK_SERIALIZER: str = "json"
    RESULT_SERIALIZER: str = "json"
    ACCEPT_CONTENT: tuple[str, ...] = ("json",)
    TASK_IGNORE_RESULT: bool = False
    TASK_ALWAYS_EAGER: bool = False
    RESULT_EXPIRES: float = 86400.0
    LEASE_TIMEOUT: float = DEFAULT_LEASE
    HEARTBEAT_INTERVAL: float | None = None
    MAX_DELIVERIES: int = 3
    POLL_INTERVAL: float = 0.5
    WORKER_CONCURRENCY: int | None = None
    WORKER_POOL: str = "prefork"
    WORKER_PREFETCH_MULTIPLIER: int = 4
    WORKER_SHUTDOWN_TIMEOUT: float | None = None
    WORKER_TIME_LIMIT: float | None = None
    WORKER_SOFT_TIME_LIMIT: float | None = None
    WORKER_MAX_TASKS_PER_CHILD: int | None = None
    WORKER_MAX_MEMORY_PER_CHILD: int | None = None
    TASK_TRACK_STARTED: bool = False
    CONTROL_URL: str | None = None
    REVOKE_EXPIRES: float = 7 * 86400.0
    REVOKE_POLL_INTERVAL: float = 0.5
    MIDDLEWARE: tuple[str, ...] = ()
    TASK_EAGER_PROPAGATES: bool = False
    TASK_STORE_EAGER_RESULT: bool = False
    TASK_ROUTES: tuple[Any, ...] = ()
    TASK_ANNOTATIONS: tuple[Any, ...] = ()
    TASK_DEFAULT_PRIORITY: int | None = None
    TASK_CLASS: str | None = None
    TASK_MODULES: tuple[str, ...] = ("tasks",)
    IMPORTS: tuple[str, ...] = ()
    RESULT_EXTENDED: bool = False
    TASK_PUBLISH_RETRY: bool = True
    TASK_PUBLISH_RETRY_POLICY: Mapping[str, float] = field(
        default_factory=lambda: dict(DEFAULT_PUBLISH_RETRY_POLICY))
    BEAT_SCHEDULE: Mapping[str, Any] = field(default_factory=dict)
    BEAT_DATABASE: str = "default"
    BEAT_SYNC_INTERVAL: float = 1.0
    BEAT_MAX_LOOP_INTERVAL: float = 300.0
    BEAT_CLAIM_TIMEOUT: float = 60.0
    BEAT_RUN_HISTORY: float = 7 * 86400.0
    BEAT_BACKEND_CLEANUP: bool = True
    EVENTS: bool = True
    TASK_SEND_SENT_EVENT: bool = False
    EVENTS_DATABASE: str | None = "default"
    EVENTS_EXPIRES: float = 86400.0
    EVENTS_HEARTBEAT: float = 2.0
    EVENTS_CELERY: bool = True
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def heartbeat_interval(self) -> float:
        """Seconds between lease extensions: a third of the lease unless set."""
        return self.HEARTBEAT_INTERVAL or self.LEASE_TIMEOUT / 3

    @property
    def concurrency(self) -> int:
        """Execution slots of a worker: WORKER_CONCURRENCY or the number of CPUs."""
        return self.WORKER_CONCURRENCY or os.cpu_count() or 1


SETTING_NAMES = frozenset(f.name for f in dataclasses.fields(TaskqSettings) if f.name != "sources")


def _seconds(value: Any) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError("a number of seconds or a timedelta")
    return float(value)


def _optional_seconds(value: Any) -> float | None:
    return None if value is None else _seconds(value)


def _positive_int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise TypeError("a whole number of at least 1")
    return value


def _optional_positive_int(value: Any) -> int | None:
    return None if value is None else _positive_int(value)


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError("a non-empty string")
    return value


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _dotted_paths(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not all(isinstance(v, str) and "." in v for v in value):
        raise TypeError("a list of dotted import paths, e.g. ['myapp.middleware.Tracing']")
    return tuple(value)


def _names(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise TypeError("a list of serializer names, e.g. ['json']")
    return tuple(value)


def _module_names(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not all(isinstance(v, str) and v for v in value):
        raise TypeError("a list of module names, e.g. ['myapp.jobs']")
    return tuple(value)


def _routes(value: Any) -> tuple[Any, ...]:
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


def _annotations(value: Any) -> tuple[Any, ...]:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(value)
    if isinstance(value, (dict, str)) or callable(value) or hasattr(value, "annotate") \
            or hasattr(value, "annotate_any"):
        return (value,)  # one entry, as Celery also takes it
    raise TypeError("a dict of task name (or '*') to attributes, or a list of such dicts")


def _optional_priority(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 9:
        raise TypeError("a whole number from 0 to 9, or None")
    return value


def _retry_policy(value: Any) -> dict[str, float]:
    known = set(DEFAULT_PUBLISH_RETRY_POLICY)
    if not isinstance(value, Mapping) or set(value) - known or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
            for v in value.values()):
        raise TypeError(f"a dict with some of {', '.join(sorted(known))} (numbers, not negative)")
    return {**DEFAULT_PUBLISH_RETRY_POLICY, **value}


def _beat_schedule(value: Any) -> dict[str, Any]:
    """Celery's ``beat_schedule``: entry name -> dict; each entry is checked when beat starts
    and by the system checks (beat/declared.py)."""
    if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, Mapping) for k, v in value.items()):
        raise TypeError("a dict of entry name to {'task': ..., 'schedule': ..., 'args': ..., "
                        "'kwargs': ..., 'options': ...}")
    return dict(value)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError("True or False")
    return value


def _pool(value: Any) -> str:
    if value not in POOLS:
        raise TypeError(f"one of {', '.join(POOLS)}")
    return str(value)


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "BROKER_URL": _text,
    "RESULT_BACKEND": _text,
    "DEFAULT_QUEUE": _text,
    "TASK_SERIALIZER": _text,
    "RESULT_SERIALIZER": _text,
    "ACCEPT_CONTENT": _names,
    "TASK_IGNORE_RESULT": _bool,
    "TASK_ALWAYS_EAGER": _bool,
    "RESULT_EXPIRES": _seconds,
    "LEASE_TIMEOUT": _seconds,
    "HEARTBEAT_INTERVAL": _optional_seconds,
    "MAX_DELIVERIES": _positive_int,
    "POLL_INTERVAL": _seconds,
    "WORKER_CONCURRENCY": _optional_positive_int,
    "WORKER_POOL": _pool,
    "WORKER_PREFETCH_MULTIPLIER": _positive_int,
    "WORKER_SHUTDOWN_TIMEOUT": _optional_seconds,
    "WORKER_TIME_LIMIT": _optional_seconds,
    "WORKER_SOFT_TIME_LIMIT": _optional_seconds,
    "WORKER_MAX_TASKS_PER_CHILD": _optional_positive_int,
    "WORKER_MAX_MEMORY_PER_CHILD": _optional_positive_int,
    "TASK_TRACK_STARTED": _bool,
    "CONTROL_URL": _optional_text,
    "REVOKE_EXPIRES": _seconds,
    "REVOKE_POLL_INTERVAL": _seconds,
    "MIDDLEWARE": _dotted_paths,
    "TASK_EAGER_PROPAGATES": _bool,
    "TASK_STORE_EAGER_RESULT": _bool,
    "TASK_ROUTES": _routes,
    "TASK_ANNOTATIONS": _annotations,
    "TASK_DEFAULT_PRIORITY": _optional_priority,
    "TASK_CLASS": _optional_text,
    "TASK_MODULES": _module_names,
    "IMPORTS": _module_names,
    "RESULT_EXTENDED": _bool,
    "TASK_PUBLISH_RETRY": _bool,
    "TASK_PUBLISH_RETRY_POLICY": _retry_policy,
    "BEAT_SCHEDULE": _beat_schedule,
    "BEAT_DATABASE": _text,
    "BEAT_SYNC_INTERVAL": _seconds,
    "BEAT_MAX_LOOP_INTERVAL": _seconds,
    "BEAT_CLAIM_TIMEOUT": _seconds,
    "BEAT_RUN_HISTORY": _seconds,
    "BEAT_BACKEND_CLEANUP": _bool,
    "EVENTS": _bool,
    "TASK_SEND_SENT_EVENT": _bool,
    "EVENTS_DATABASE": _optional_text,
    "EVENTS_EXPIRES": _seconds,
    "EVENTS_HEARTBEAT": _seconds,
    "EVENTS_CELERY": _bool,
}

_POSITIVE_SECONDS = ("LEASE_TIMEOUT", "POLL_INTERVAL", "RESULT_EXPIRES", "REVOKE_EXPIRES",
                     "REVOKE_POLL_INTERVAL", "WORKER_TIME_LIMIT", "WORKER_SOFT_TIME_LIMIT",
                     "BEAT_SYNC_INTERVAL", "BEAT_MAX_LOOP_INTERVAL", "BEAT_CLAIM_TIMEOUT",
                     "BEAT_RUN_HISTORY", "EVENTS_EXPIRES", "EVENTS_HEARTBEAT")


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the settings, in the words a system check shows."""

    key: str
    message: str
    hint: str
    unknown_key: bool = False


def raw_settings(*, celery: bool = True) -> dict[str, Any]:
    """The TASKQ dict from Django settings, with the environment overrides applied on top and,
    under both, the CELERY_* settings honoured as TASKQ keys (celery_settings; ``celery=False``
    leaves them out).

    Raises:
        ConfigurationError: a honoured Celery setting has a bad value; the message names it.
    """
    from django.conf import settings

    configured = getattr(settings, "TASKQ", {})
    raw = dict(configured) if isinstance(configured, Mapping) else {"__invalid__": configured}
    env = _environment()
    for variable, key in ENV_OVERRIDES.items():
        value = env.str(variable, default=None)
        if value:
            raw[key] = value
    if celery:
        from .celery_settings import honoured_values

        raw = {**honoured_values(raw), **raw}
    return raw


def _environment() -> Any:
    import environ

    return environ.Env()


def find_problems(raw: Mapping[str, Any]) -> list[Problem]:
    """Check a TASKQ dict and say what is wrong with it; an empty list means it is usable."""
    if "__invalid__" in raw:
        return [Problem("TASKQ", "TASKQ must be a dict.", "Write TASKQ = {'BROKER_URL': ...}.")]
    problems = []
    for key, value in raw.items():
        if key not in _CONVERTERS:
            problems.append(Problem(key, f"TASKQ has an unknown key {key!r}.",
                                    f"Known keys: {', '.join(sorted(SETTING_NAMES))}.",
                                    unknown_key=True))
            continue
        try:
            converted = _CONVERTERS[key](value)
        except TypeError as exc:
            problems.append(Problem(key, f"TASKQ[{key!r}] = {value!r} is not valid.",
                                    f"{key} must be {exc}."))
            continue
        if key in _POSITIVE_SECONDS and converted is not None and converted <= 0:
            problems.append(Problem(key, f"TASKQ[{key!r}] must be greater than zero.",
                                    f"Set {key} to a positive number of seconds."))
    return problems + _heartbeat_problems(raw, problems)


def _heartbeat_problems(raw: Mapping[str, Any], found: list[Problem]) -> list[Problem]:
    """The heartbeat must renew a lease before it runs out."""
    if any(p.key in ("HEARTBEAT_INTERVAL", "LEASE_TIMEOUT") for p in found):
        return []
    beat = _optional_seconds(raw.get("HEARTBEAT_INTERVAL"))
    lease = _seconds(raw.get("LEASE_TIMEOUT", DEFAULT_LEASE))
    if beat is not None and not 0 < beat < lease:
        return [Problem("HEARTBEAT_INTERVAL",
                        f"TASKQ['HEARTBEAT_INTERVAL'] = {beat:g} must be above zero and below "
                        f"LEASE_TIMEOUT ({lease:g}s), or leases expire under running tasks.",
                        "Leave HEARTBEAT_INTERVAL unset (a third of LEASE_TIMEOUT) or lower it.")]
    return []


def build_settings(raw: Mapping[str, Any]) -> TaskqSettings:
    """Turn a TASKQ dict into settings, raising ConfigurationError at the first problem."""
    errors = [p for p in find_problems(raw) if not p.unknown_key]
    if errors:
        raise ConfigurationError(f"{errors[0].message} {errors[0].hint}")
    values = {key: _CONVERTERS[key](value) for key, value in raw.items() if key in _CONVERTERS}
    sources = {key: "environment" if key in ENV_OVERRIDES.values() and _from_env(key) else "settings"
               for key in values}
    return TaskqSettings(**values, sources=sources)


def _from_env(key: str) -> bool:
    return any(k == key and os.environ.get(var) for var, k in ENV_OVERRIDES.items())


_cached: TaskqSettings | None = None


def get_settings() -> TaskqSettings:
    """The current settings, built on first use and cached until the TASKQ setting changes."""
    global _cached
    if _cached is None:
        _cached = build_settings(raw_settings())
    return _cached


def reset_settings(**kwargs: Any) -> None:
    """Forget the cached settings (and everything built from them); a setting_changed receiver."""
    from .celery_settings import watches

    global _cached
    setting: Any = kwargs.get("setting")
    if setting not in (None, "TASKQ") and not watches(setting):
        return
    _cached = None
    for hook in _reset_hooks:
        hook()


_reset_hooks: list[Callable[[], None]] = []


def on_reset(hook: Callable[[], None]) -> Callable[[], None]:
    """Register a function that drops a cache built from the settings (brokers, backends)."""
    _reset_hooks.append(hook)
    return hook
