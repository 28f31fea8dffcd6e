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
from typing import Any

from . import setting_values as values
from .exceptions import ConfigurationError
from .service_url import mask_text, without_secrets
from .setting_values import DEFAULT_PUBLISH_RETRY_POLICY

#: Environment variables that override TASKQ keys (read with django-environ).
ENV_OVERRIDES = {
    "TASKQ_BROKER_URL": "BROKER_URL",
    "TASKQ_RESULT_BACKEND": "RESULT_BACKEND",
    "TASKQ_WORKER_POOL": "WORKER_POOL",  # read before Django starts too (monkey.py)
}

DEFAULT_LEASE = 60.0
#: Settings whose values are never printed (errors, checks, ``repr``).
SECRET_SETTINGS = frozenset({"SIGNING_KEYS"})


@dataclass(frozen=True, slots=True)
class TaskqSettings:
    """Every TASKQ setting with its default; see docs/settings.md for what each one means."""

    BROKER_URL: str = "db://default"
    RESULT_BACKEND: str = "db://default"
    RESULT_BACKEND_SCHEMES: Mapping[str, str] = field(default_factory=dict)
    BROKER_TRANSPORT_OPTIONS: Mapping[str, Any] = field(default_factory=dict)
    RESULT_BACKEND_TRANSPORT_OPTIONS: Mapping[str, Any] = field(default_factory=dict)
    BROKER_USE_SSL: bool | Mapping[str, Any] = False
    REDIS_BACKEND_USE_SSL: bool | Mapping[str, Any] = False
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
    WORKER_AUTOSCALE: tuple[int, int] | None = None  # (max, min); --autoscale MAX,MIN
    WORKER_AUTOSCALE_KEEPALIVE: float = 30.0
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
    TASK_COMPRESSION: str | None = None
    RESULT_COMPRESSION: str | None = None
    RESULT_PERSISTENT: bool = False
    SIGNING_KEYS: tuple[bytes, ...] = field(default=(), repr=False)
    SIGNING_MAX_AGE: float = 86400.0
    MESSAGE_MAX_BYTES: int = 4 * 1024 * 1024
    JSON_MAX_DEPTH: int = 128
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


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "BROKER_URL": values.text,
    "RESULT_BACKEND": values.text,
    "RESULT_BACKEND_SCHEMES": values.scheme_table,
    "BROKER_TRANSPORT_OPTIONS": values.transport_options,
    "RESULT_BACKEND_TRANSPORT_OPTIONS": values.transport_options,
    "BROKER_USE_SSL": values.use_ssl,
    "REDIS_BACKEND_USE_SSL": values.use_ssl,
    "DEFAULT_QUEUE": values.text,
    "TASK_SERIALIZER": values.text,
    "RESULT_SERIALIZER": values.text,
    "ACCEPT_CONTENT": values.names,
    "TASK_IGNORE_RESULT": values.boolean,
    "TASK_ALWAYS_EAGER": values.boolean,
    "RESULT_EXPIRES": values.seconds,
    "LEASE_TIMEOUT": values.seconds,
    "HEARTBEAT_INTERVAL": values.optional_seconds,
    "MAX_DELIVERIES": values.positive_int,
    "POLL_INTERVAL": values.seconds,
    "WORKER_CONCURRENCY": values.optional_positive_int,
    "WORKER_POOL": values.pool,
    "WORKER_PREFETCH_MULTIPLIER": values.positive_int,
    "WORKER_SHUTDOWN_TIMEOUT": values.optional_seconds,
    "WORKER_TIME_LIMIT": values.optional_seconds,
    "WORKER_SOFT_TIME_LIMIT": values.optional_seconds,
    "WORKER_MAX_TASKS_PER_CHILD": values.optional_positive_int,
    "WORKER_MAX_MEMORY_PER_CHILD": values.optional_positive_int,
    "WORKER_AUTOSCALE": values.optional_autoscale,
    "WORKER_AUTOSCALE_KEEPALIVE": values.seconds,
    "TASK_TRACK_STARTED": values.boolean,
    "CONTROL_URL": values.optional_text,
    "REVOKE_EXPIRES": values.seconds,
    "REVOKE_POLL_INTERVAL": values.seconds,
    "MIDDLEWARE": values.dotted_paths,
    "TASK_EAGER_PROPAGATES": values.boolean,
    "TASK_STORE_EAGER_RESULT": values.boolean,
    "TASK_ROUTES": values.routes,
    "TASK_ANNOTATIONS": values.task_annotations,
    "TASK_DEFAULT_PRIORITY": values.optional_priority,
    "TASK_CLASS": values.optional_text,
    "TASK_MODULES": values.module_names,
    "IMPORTS": values.module_names,
    "RESULT_EXTENDED": values.boolean,
    "TASK_PUBLISH_RETRY": values.boolean,
    "TASK_PUBLISH_RETRY_POLICY": values.retry_policy,
    "BEAT_SCHEDULE": values.beat_schedule,
    "BEAT_DATABASE": values.text,
    "BEAT_SYNC_INTERVAL": values.seconds,
    "BEAT_MAX_LOOP_INTERVAL": values.seconds,
    "BEAT_CLAIM_TIMEOUT": values.seconds,
    "BEAT_RUN_HISTORY": values.seconds,
    "BEAT_BACKEND_CLEANUP": values.boolean,
    "EVENTS": values.boolean,
    "TASK_SEND_SENT_EVENT": values.boolean,
    "EVENTS_DATABASE": values.optional_text,
    "EVENTS_EXPIRES": values.seconds,
    "EVENTS_HEARTBEAT": values.seconds,
    "EVENTS_CELERY": values.boolean,
    "TASK_COMPRESSION": values.optional_compression,
    "RESULT_COMPRESSION": values.optional_compression,
    "RESULT_PERSISTENT": values.boolean,
    "SIGNING_KEYS": values.signing_keys,
    "SIGNING_MAX_AGE": values.seconds,
    "MESSAGE_MAX_BYTES": values.positive_int,
    "JSON_MAX_DEPTH": values.positive_int,
}

_POSITIVE_SECONDS = ("LEASE_TIMEOUT", "POLL_INTERVAL", "RESULT_EXPIRES", "REVOKE_EXPIRES",
                     "REVOKE_POLL_INTERVAL", "WORKER_TIME_LIMIT", "WORKER_SOFT_TIME_LIMIT",
                     "BEAT_SYNC_INTERVAL", "BEAT_MAX_LOOP_INTERVAL", "BEAT_CLAIM_TIMEOUT",
                     "BEAT_RUN_HISTORY", "EVENTS_EXPIRES", "EVENTS_HEARTBEAT",
                     "SIGNING_MAX_AGE", "WORKER_AUTOSCALE_KEEPALIVE")


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
            shown = "[...]" if key in SECRET_SETTINGS else mask_text(repr(without_secrets(value)))
            problems.append(Problem(key, f"TASKQ[{key!r}] = {shown} is not valid.",
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
    beat = values.optional_seconds(raw.get("HEARTBEAT_INTERVAL"))
    lease = values.seconds(raw.get("LEASE_TIMEOUT", DEFAULT_LEASE))
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
