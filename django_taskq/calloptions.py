"""``apply_async``/``send_task`` options: Celery's names, checked and resolved to SendOptions.

What a call says wins over the task's own options, which win over the task routes, which win
over the settings (Celery's order). Every option of Celery's calling API is accepted: the ones
that mean something here are honoured, the transport ones that our brokers manage themselves
are accepted without effect (``IGNORED``), and an unknown name is a TypeError listing them all.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import uuid
import weakref
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from . import options as checks
from . import routing
from .conf import get_settings, on_reset
from .context import current_request
from .message import SENSITIVE, SendOptions

if TYPE_CHECKING:
    from .options import TaskOptions

logger = logging.getLogger(__name__)

HONOURED = frozenset({
    "countdown", "eta", "expires", "queue", "routing_key", "exchange", "priority", "serializer",
    "task_id", "headers", "shadow", "argsrepr", "kwargsrepr", "ignore_result", "time_limit",
    "soft_time_limit", "root_id", "parent_id", "group_id", "group_index", "reply_to",
    "correlation_id", "retry", "retry_policy", "stamped_headers", "stamps",
    "replaced_task_nesting", "periodic_task_name", "compression",
    "MessageGroupId", "MessageDeduplicationId",  # SQS FIFO queues, as Celery passes them
})
#: Transport details our brokers manage themselves (connections, declarations, confirms).
IGNORED = frozenset({
    "exchange_type", "declare", "timeout", "confirm_timeout", "producer", "connection",
    "publisher", "add_to_parent", "mandatory", "immediate", "delivery_mode",
})
#: Workflow options: signatures to send after the task (link, link_error), and the rest of a
#: chain or a chord's body (set by canvas).
CANVAS = frozenset({"link", "link_error", "chain", "chord"})
ACCEPTED = HONOURED | IGNORED | CANVAS


def new_task_id() -> str:
    """A fresh task id (a UUID4 string, as Celery makes them)."""
    return str(uuid.uuid4())


def check_names(given: Mapping[str, Any]) -> None:
    """Raise TypeError for an option Celery's calling API does not have."""
    unknown = sorted(set(given) - ACCEPTED)
    if unknown:
        raise TypeError(f"apply_async() got unknown option(s) {', '.join(unknown)}; accepted: "
                        f"{', '.join(sorted(ACCEPTED))}.")


def resolve_eta(countdown: float | None, eta: datetime | None, now: datetime) -> datetime | None:
    """The absolute time a task may start; naive datetimes are read in Django's current zone."""
    if countdown is not None and eta is not None:
        raise ValueError("Pass either countdown or eta, not both.")
    if countdown is not None:
        if isinstance(countdown, bool) or not isinstance(countdown, (int, float)):
            raise ValueError(f"countdown must be a number of seconds, not {countdown!r}.")
        return now + timedelta(seconds=float(countdown))
    if eta is not None:
        if not isinstance(eta, datetime):
            raise ValueError(f"eta must be a datetime, not {eta!r}; use countdown for seconds.")
        return eta if timezone.is_aware(eta) else timezone.make_aware(eta)
    return None


def resolve_expires(expires: float | timedelta | datetime | None, now: datetime
                    ) -> datetime | None:
    """An absolute expiry from seconds, a timedelta or a datetime."""
    if expires is None:
        return None
    if isinstance(expires, datetime):
        return expires if timezone.is_aware(expires) else timezone.make_aware(expires)
    seconds = expires.total_seconds() if isinstance(expires, timedelta) else expires
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) \
            or not math.isfinite(seconds):
        raise ValueError(f"expires must be seconds, a timedelta or a datetime, not {expires!r}.")
    return now + timedelta(seconds=seconds)


_TASK_LEVEL = ("queue", "exchange", "routing_key", "priority", "expires", "serializer",
               "compression", "ignore_result")


def merged(name: str, task: Any, args: Any, kwargs: Any,
           given: Mapping[str, Any]) -> dict[str, Any]:
    """Call options over the task's own over the first matching route (None = not given)."""
    task_options: TaskOptions | None = task.options if task is not None else None
    values = {key: value for key, value in given.items() if value is not None}
    if task_options is not None:
        for key in _TASK_LEVEL:
            own = getattr(task_options, key)
            if own is not None:
                values.setdefault(key, own)
    # Every route is asked, whatever the queue: as Celery merges a route under the call's and
    # task's options key by key, its priority or routing_key apply when those do not say.
    if routing.routers():
        for key, value in routing.route(name, args, kwargs, values, task).items():
            if value is not None:
                values.setdefault(key, value)
    return values


def resolve(name: str, task: Any, args: Sequence[Any], kwargs: Mapping[str, Any],
            given: Mapping[str, Any], now: datetime | None = None) -> SendOptions:
    """Check ``given`` (apply_async's keywords) and resolve them for one call of ``name``.

    Raises:
        TypeError: an unknown option.
        ValueError: a bad value (priority out of range, both countdown and eta, ...).
    """
    parent = current_request()
    if not given and task is not None:  # delay(): nothing per call but the parent
        plain = _plain(task)
        if plain is not None:
            if parent is None:
                return plain
            return dataclasses.replace(plain, parent_id=parent.id,
                                       root_id=parent.root_id or parent.id)
    return _resolve(name, task, args, kwargs, given, now or timezone.now(), parent)


def _plain(task: Any) -> SendOptions | None:
    """The options of a call that gives none, the same for every such call of ``task`` unless
    a route (which may look at the arguments) or a relative ``expires`` can change them; kept
    per task until the settings change. This is ``delay()``'s fast path."""
    if routing.routers() or task.options.expires is not None:
        return None
    cached = _plain_options.get(task)
    if cached is None:
        cached = _plain_options[task] = _resolve(task.name, task, (), {}, {}, timezone.now(),
                                                 None)
    return cached


_plain_options: weakref.WeakKeyDictionary[Any, SendOptions] = weakref.WeakKeyDictionary()
on_reset(_plain_options.clear)


def _resolve(name: str, task: Any, args: Sequence[Any], kwargs: Mapping[str, Any],
             given: Mapping[str, Any], now: datetime, parent: Any) -> SendOptions:
    check_names(given)
    settings = get_settings()
    values = merged(name, task, args, kwargs, given)
    priority = values.get("priority", settings.TASK_DEFAULT_PRIORITY)
    ignore = values.get("ignore_result")
    retry_policy = {**settings.TASK_PUBLISH_RETRY_POLICY, **(values.get("retry_policy") or {})}
    return SendOptions(
        queue=checks._queue(values.get("queue"), "queue") or settings.DEFAULT_QUEUE,
        priority=checks.priority(priority) or 0,
        eta=resolve_eta(values.get("countdown"), values.get("eta"), now),
        expires=resolve_expires(values.get("expires"), now),
        serializer=values.get("serializer") or settings.TASK_SERIALIZER,
        compression=values.get("compression") or settings.TASK_COMPRESSION,
        ignore_result=settings.TASK_IGNORE_RESULT if ignore is None else bool(ignore),
        headers=_headers(values),
        timelimit=(checks.positive_seconds(values.get("time_limit"), "time_limit"),
                   checks.positive_seconds(values.get("soft_time_limit"), "soft_time_limit")),
        parent_id=values.get("parent_id") or (parent.id if parent else None),
        root_id=values.get("root_id") or ((parent.root_id or parent.id) if parent else None),
        group_id=values.get("group_id"), group_index=values.get("group_index"),
        shadow=values.get("shadow"), **_reprs(task, values), exchange=values.get("exchange") or "",
        routing_key=values.get("routing_key"), reply_to=values.get("reply_to") or "",
        correlation_id=values.get("correlation_id"),
        retry=values.get("retry", settings.TASK_PUBLISH_RETRY), retry_policy=retry_policy,
        callbacks=signature_dicts(values.get("link"), "link"),
        errbacks=signature_dicts(values.get("link_error"), "link_error"),
        chain=signature_dicts(values.get("chain"), "chain"), chord=_chord(values.get("chord")),
    )


def _reprs(task: Any, values: Mapping[str, Any]) -> dict[str, str | None]:
    """``argsrepr``/``kwargsrepr``: the caller's, else SENSITIVE for a ``sensitive=True`` task
    (else None: the message shows a short repr of the arguments)."""
    hidden = SENSITIVE if task is not None and task.options.sensitive else None
    return {"argsrepr": values.get("argsrepr", hidden),
            "kwargsrepr": values.get("kwargsrepr", hidden)}


def signature_dicts(value: Any, option: str) -> list[dict[str, Any]] | None:
    """``link=``/``link_error=``/``chain=``: a signature or a list of them, as the plain dicts
    the message carries (Celery's ``{task, args, kwargs, options, subtask_type, immutable}``)."""
    if not value:
        return None
    given = value if isinstance(value, (list, tuple)) else [value]
    dicts = []
    for sig in given:
        if not isinstance(sig, Mapping) or not isinstance(sig.get("task"), str):
            raise TypeError(f"{option}= takes a signature (task.s(...)) or a list of them, "
                            f"not {sig!r}.")
        dicts.append(plain_signature(sig))
    return dicts


def plain_signature(sig: Mapping[str, Any]) -> dict[str, Any]:
    """A signature as a plain dict (nested signatures too), JSON-ready: canvas's ``plain``."""
    from .canvas.fields import plain  # not at the top: canvas imports this module

    return plain(sig)


def _chord(value: Any) -> dict[str, Any] | None:
    if not value:
        return None
    if not isinstance(value, Mapping) or not isinstance(value.get("task"), str):
        raise TypeError(f"chord= takes a signature, not {value!r}.")
    return plain_signature(value)


def _headers(values: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(values.get("headers") or {}, Mapping):  # before dict() can fail unclearly
        raise ValueError(f"headers must be a dict, not {values['headers']!r}.")
    headers = dict(values.get("headers") or {})
    for key in ("stamped_headers", "stamps", "replaced_task_nesting", "periodic_task_name",
                "MessageGroupId", "MessageDeduplicationId"):
        if key in values:
            headers[key] = values[key]
    return headers


def arguments(task: Any, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None
              ) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The call's ``(args, kwargs)`` as a tuple and a dict, checked against the task function
    unless its ``typing`` option is off (Celery's check at call time).

    Raises:
        TypeError: args is not a list or tuple, kwargs not a dict, or they do not fit.
    """
    args = () if args is None else args
    kwargs = {} if kwargs is None else kwargs
    if not isinstance(args, (list, tuple)):
        raise TypeError(f"args must be a list or tuple, not {type(args).__name__}.")
    if not isinstance(kwargs, Mapping):
        raise TypeError(f"kwargs must be a dict, not {type(kwargs).__name__}.")
    args, kwargs = tuple(args), dict(kwargs)
    check_arguments(task, args, kwargs)
    return args, kwargs


def check_arguments(task: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> None:
    """Celery's ``typing``: the call's arguments must fit the task function (TypeError)."""
    mismatch = task.argument_mismatch(args, kwargs) if task is not None else None
    if mismatch is not None:
        raise TypeError(mismatch)

