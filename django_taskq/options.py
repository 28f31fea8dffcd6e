"""Task options: Celery's task attributes, checked once and resolved into one frozen value.

A task's options come from its class attributes (a ``Task`` subclass, or the class ``@task``
builds from its keyword arguments), then ``TASKQ["TASK_ANNOTATIONS"]`` on top. Every option is
checked here and nowhere else: a bad value is a ``TaskOptionError`` (a ``TypeError``) naming
the task, the option and what it accepts, raised when the task is defined.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from datetime import datetime, timedelta
from typing import Any

from .control.rate import Rate, parse_rate
from .exceptions import ConfigurationError, RateLimitError, TaskqError

MIN_PRIORITY, MAX_PRIORITY = 0, 9


class TaskOptionError(TaskqError, TypeError):
    """A task option (decorator keyword, class attribute or annotation) has a bad value."""


def positive_seconds(value: Any, what: str) -> float | None:
    """None, or a positive finite number of seconds (a timedelta is read as seconds)."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            math.isfinite(value) and value > 0):
        raise ValueError(f"{what} must be a positive number of seconds, not {value!r}.")
    return float(value)


def priority(value: Any, what: str = "priority") -> int | None:
    """None, or a whole number from 0 to 9 (higher runs first)."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not (
            MIN_PRIORITY <= value <= MAX_PRIORITY):
        raise ValueError(f"{what} must be a whole number from {MIN_PRIORITY} to {MAX_PRIORITY} "
                         f"(higher runs first), not {value!r}.")
    return value


def _exceptions(value: Any, what: str) -> tuple[type[BaseException], ...]:
    if value is None:
        return ()
    items = value if isinstance(value, (list, tuple)) else (value,)
    if not all(isinstance(item, type) and issubclass(item, BaseException) for item in items):
        raise ValueError(f"{what} must be an exception class or a tuple of them, not {value!r}.")
    return tuple(items)


def _optional_bool(value: Any, what: str) -> bool | None:
    if value is not None and not isinstance(value, bool):
        raise ValueError(f"{what} must be True, False or None, not {value!r}.")
    return value


def _bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{what} must be True or False, not {value!r}.")
    return value


def _optional_text(value: Any, what: str) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ValueError(f"{what} must be a non-empty string or None, not {value!r}.")
    return value


def _compression(value: Any, what: str) -> str | None:
    """A compression method installed here (checked when the task is defined, not at send)."""
    if _optional_text(value, what) is None:
        return None
    from .compression import check
    from .exceptions import SerializationError

    try:
        return check(value)
    except SerializationError as exc:
        raise ValueError(f"{what}: {exc}") from exc


def _queue(value: Any, what: str) -> str | None:
    name = getattr(value, "name", value)  # a kombu Queue, as Celery projects pass it
    return _optional_text(name, what)


def _max_retries(value: Any, what: str) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise ValueError(f"{what} must be a whole number of at least 0, or None for no limit, "
                         f"not {value!r}.")
    return value


def _delay(value: Any, what: str) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
        raise ValueError(f"{what} must be a number of seconds of at least 0, not {value!r}.")
    return float(seconds)


def _backoff(value: Any, what: str) -> bool | float:
    if isinstance(value, bool):
        return value
    return _delay(value, what)


def _optional_delay(value: Any, what: str) -> float | None:
    return None if value is None else _delay(value, what)


def _expires(value: Any, what: str) -> float | datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return positive_seconds(value, what)


def _rate(value: Any, what: str) -> Rate | None:
    try:
        return parse_rate(value)
    except RateLimitError as exc:
        raise ValueError(f"{what}: {exc}") from exc


def _callable(value: Any, what: str) -> Callable[..., Any] | None:
    if value is not None and not callable(value):
        raise ValueError(f"{what} must be a function (it gets the task's arguments), not "
                         f"{value!r}.")
    function: Callable[..., Any] | None = value
    return function


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} must be a dict, not {value!r}.")
    return dict(value)


def _positive_int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{what} must be a whole number of at least 1, not {value!r}.")
    return value


def _option(check: Callable[[Any, str], Any], default: Any, doc: str = "") -> Any:
    metadata = {"check": check, "doc": doc}
    if isinstance(default, dict):
        return field(default_factory=lambda: dict(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def _default(spec: Any) -> Any:
    return spec.default if spec.default is not MISSING else spec.default_factory()


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """Every option a task has, with Celery's defaults; built by :func:`resolve`."""

    queue: str | None = _option(_queue, None)
    exchange: str | None = _option(_optional_text, None)
    routing_key: str | None = _option(_optional_text, None)
    priority: int | None = _option(priority, None)
    expires: float | datetime | None = _option(_expires, None)
    serializer: str | None = _option(_optional_text, None)
    compression: str | None = _option(_compression, None)
    ignore_result: bool | None = _option(_optional_bool, None)
    store_errors_even_if_ignored: bool = _option(_bool, False)
    track_started: bool | None = _option(_optional_bool, None)
    max_retries: int | None = _option(_max_retries, 3)
    default_retry_delay: float = _option(_delay, 180.0)
    autoretry_for: tuple[type[BaseException], ...] = _option(_exceptions, ())
    dont_autoretry_for: tuple[type[BaseException], ...] = _option(_exceptions, ())
    retry_kwargs: Mapping[str, Any] = _option(_mapping, {})
    retry_backoff: bool | float = _option(_backoff, False)
    retry_backoff_max: float | None = _option(_optional_delay, 600.0)
    retry_jitter: bool = _option(_bool, True)
    time_limit: float | None = _option(positive_seconds, None)
    soft_time_limit: float | None = _option(positive_seconds, None)
    rate_limit: Rate | None = _option(_rate, None)
    key_rate_limit: Rate | None = _option(_rate, None)
    rate_limit_key: Callable[..., Any] | None = _option(_callable, None)
    throws: tuple[type[BaseException], ...] = _option(_exceptions, ())
    typing: bool = _option(_bool, True)
    acks_late: bool | None = _option(_optional_bool, None, "always late here")
    acks_on_failure_or_timeout: bool = _option(_bool, True)
    #: Celery 5.7's split of the option above: None means "as acks_on_failure_or_timeout".
    acks_on_failure: bool | None = _option(_optional_bool, None)
    acks_on_timeout: bool | None = _option(_optional_bool, None)
    reject_on_worker_lost: bool | None = _option(_optional_bool, None, "always redelivered")
    retry_on_worker_lost: bool | None = _option(_optional_bool, None, "always redelivered")
    trail: bool = _option(_bool, True)
    send_events: bool = _option(_bool, True)
    resultrepr_maxsize: int = _option(_positive_int, 1024)
    #: Arguments stay out of logs, events, the admin and stored results (argsrepr SENSITIVE).
    sensitive: bool = _option(_bool, False)
    pydantic: bool = _option(_bool, False)
    pydantic_strict: bool = _option(_bool, False)
    pydantic_context: Mapping[str, Any] = _option(_mapping, {})
    pydantic_dump_kwargs: Mapping[str, Any] = _option(_mapping, {})


OPTION_NAMES = frozenset(f.name for f in fields(TaskOptions))


def resolve(owner: Any, name: str, overrides: Mapping[str, Any] | None = None) -> TaskOptions:
    """The checked options of ``owner`` (a Task): its attributes, then ``overrides``.

    Raises:
        TaskOptionError: an option has a bad value; the message names the task and option.
    """
    values = {}
    for spec in fields(TaskOptions):
        raw = getattr(owner, spec.name, _default(spec))
        if overrides and spec.name in overrides:
            raw = overrides[spec.name]
        try:
            values[spec.name] = spec.metadata["check"](raw, spec.name)
        except ValueError as exc:
            raise TaskOptionError(f"Task {name}: {exc}") from None
    options = TaskOptions(**values)
    _check_together(options, name)
    return options


def _check_together(options: TaskOptions, name: str) -> None:
    if (options.rate_limit_key is None) != (options.key_rate_limit is None):
        raise TaskOptionError(f"Task {name}: key_rate_limit and rate_limit_key go together (the "
                              "limit, and the function that picks the key from the arguments).")
    hard, soft = options.time_limit, options.soft_time_limit
    if hard is not None and soft is not None and soft >= hard:
        raise TaskOptionError(f"Task {name}: soft_time_limit ({soft:g}s) must be below "
                              f"time_limit ({hard:g}s), so the task can clean up before it is "
                              "stopped.")


def annotations_for(task: Any, entries: Sequence[Any]) -> dict[str, Any]:
    """Celery's ``task_annotations`` for ``task``; later entries win, and a task's own name
    wins over ``"*"``.

    Each entry is a dict (task name or ``"*"`` to attributes), a function of the task name, an
    object with Celery's ``annotate(task)``/``annotate_any()`` methods, or the dotted path of
    such a class (instantiated, as Celery does).
    """
    found: dict[str, Any] = {}
    for entry in entries:
        for answer in _answers(_annotation_object(entry) if isinstance(entry, str) else entry,
                               task):
            found.update(answer or {})
    return found


def _answers(entry: Any, task: Any) -> list[Any]:
    """What one annotation entry says for ``task``: for all tasks first, then for this one."""
    if isinstance(entry, Mapping):
        return [entry.get("*"), entry.get(task.name)]
    if hasattr(entry, "annotate") or hasattr(entry, "annotate_any"):
        return [getattr(entry, "annotate_any", lambda: None)(),
                getattr(entry, "annotate", lambda task: None)(task)]
    return [entry(task.name)] if callable(entry) else []


def _annotation_object(path: str) -> Any:
    from django.utils.module_loading import import_string

    try:
        found = import_string(path.replace(":", "."))
    except ImportError as exc:
        raise ConfigurationError(f"TASK_ANNOTATIONS names {path!r}, which cannot be imported: "
                                 f"{exc}") from exc
    return found() if isinstance(found, type) else found
