"""What may be shown of a task's arguments: in events, inspect replies, the admin, dead letters
and extended results (RESULT_EXTENDED).

A task declared ``sensitive=True`` shows ``<sensitive>``; a call given ``argsrepr``/``kwargsrepr``
(Celery's per-call options) shows those. Either way the message says so (``argsrepr`` is
SENSITIVE, or the HIDDEN_ARGS_HEADER is set), and the worker also hides the arguments of a task
it knows as sensitive whoever sent it (a Celery producer, ``send_task`` by name). Hidden
arguments are never shown or stored: their reprs stand in for them. Celery stores the values
in extended results and shows them to ``inspect active`` whatever argsrepr says; we do not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .events.build import short_repr
from .message import HIDDEN_ARGS_HEADER, SENSITIVE


def task_is_sensitive(task_name: str | None) -> bool:
    """Whether the task registered as ``task_name`` in this process says ``sensitive=True``."""
    from .registry import registry

    if not task_name or task_name not in registry:
        return False
    return bool(registry.get(task_name).options.sensitive)


def hidden(task_name: str | None, headers: Mapping[str, Any]) -> bool:
    """Whether a message's arguments must not be shown or stored, only its reprs."""
    return (bool(headers.get(HIDDEN_ARGS_HEADER)) or SENSITIVE in (
        headers.get("argsrepr"), headers.get("kwargsrepr")) or task_is_sensitive(task_name))


def reprs(task_name: str | None, headers: Mapping[str, Any], args: Any, kwargs: Any
          ) -> tuple[str, str]:
    """``(argsrepr, kwargsrepr)`` to show: the sender's, SENSITIVE for a task this worker knows
    as sensitive (unless the sender chose its own), else short reprs of the values."""
    given = bool(headers.get(HIDDEN_ARGS_HEADER))
    if not given and task_is_sensitive(task_name):
        return SENSITIVE, SENSITIVE
    argsrepr, kwargsrepr = headers.get("argsrepr"), headers.get("kwargsrepr")
    return (argsrepr if isinstance(argsrepr, str) else short_repr(tuple(args or ())),
            kwargsrepr if isinstance(kwargsrepr, str) else short_repr(kwargs or {}))


def request_reprs(request: Any) -> tuple[str, str]:
    """:func:`reprs` of a running task's request (``self.request``)."""
    return reprs(request.task, request.message_headers, request.args, request.kwargs)


def stored_arguments(request: Any) -> tuple[Any, Any]:
    """What an extended result keeps of a request's arguments: the values, or for hidden ones
    their reprs as text (django-celery-results keeps argsrepr so, and the admin shows it)."""
    if hidden(request.task, request.message_headers):
        return request_reprs(request)
    return request.args, request.kwargs


def scrub(value: Any) -> Any:
    """A decoded body (or part of one) with the arguments of each embedded signature hidden as
    its own message would hide them: SENSITIVE for a sensitive task, else the reprs its options
    give. A chain's later steps, a chord's body and a link travel in the body of the message
    before them, whose own task may show its arguments."""
    if isinstance(value, list):
        return [scrub(item) for item in value]
    if not isinstance(value, dict):
        return value
    shown = {key: scrub(item) for key, item in value.items()}
    name, options = value.get("task"), value.get("options")
    if not isinstance(name, str) or "args" not in value:
        return shown
    if task_is_sensitive(name):
        shown["args"] = shown["kwargs"] = SENSITIVE
    elif isinstance(options, dict):
        for field in ("args", "kwargs"):
            if isinstance(options.get(f"{field}repr"), str):
                shown[field] = options[f"{field}repr"]
    return shown
