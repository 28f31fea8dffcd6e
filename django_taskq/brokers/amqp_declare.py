"""Declaring task queues as Celery does, and using queues declared otherwise as they are.

Our task queue ``Q`` is a durable direct exchange ``Q`` and a durable queue ``Q`` with
``amqp_options.queue_arguments``, bound with routing key ``Q``. A Celery deployment may have
declared ``Q`` first with other arguments: Celery's defaults have no ``x-max-priority``, or it
is a quorum queue. RabbitMQ then refuses our declare (PRECONDITION_FAILED), and refusing in
turn would leave the user to delete a queue full of messages (issue 9). So we learn the
queue's settings instead: each refusal names one argument that differs and its current value;
we declare again with that value until RabbitMQ agrees (a declare that changes nothing). The
queue is used as it is, with one warning per queue per process saying what it lacks, and is
declared passively from then on (a passive declare of a deleted queue fails: it is forgotten
and declared as ours again).

A refused exchange (another type, say ``topic``) is used passively too, and our messages for
``Q`` are published through the default exchange, which reaches ``Q`` whatever exchange ``Q``
routes. ``Q`` is still bound to it with routing key ``Q``, as Celery binds it: a ``Q`` deleted
and declared again by us keeps receiving what Celery publishes to exchange ``Q``.

A refusal closes the channel it happens on (py-amqp opens it again, bare): declarations run
on a channel of their own, never on the consuming channel (its prefetch and unacked
deliveries) nor the publishing one (confirm mode).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from typing import Any

from ..exceptions import ConfigurationError
from .amqp_options import AmqpOptions, queue_arguments

logger = logging.getLogger(__name__)

#: Declarations with corrected settings before giving up and declaring passively.
MAX_PROBES = 8
#: Queue settings that are declare flags, not ``x-`` arguments.
FLAGS = ("durable", "auto_delete")
_INEQUIVALENT = re.compile(r"inequivalent arg '(?P<arg>[^']+)' for (?:queue|exchange) .*?: "
                           r"received (?P<received>.+) but current is (?P<current>.+)$")
_TYPED = re.compile(r"the value '(?P<value>.*)' of type '(?P<type>\w+)'$")
_INTEGERS = ("byte", "unsignedbyte", "short", "unsignedshort", "signedint", "unsignedint",
             "long", "longlong", "timestamp")
_READERS: dict[str, Callable[[str], Any]] = {
    "longstr": str, "shortstr": str, "bool": lambda text: text == "true",
    "double": float, "float": float, **dict.fromkeys(_INTEGERS, int)}
_UNREADABLE = object()

#: (broker URL, name) of queues and exchanges found declared otherwise: declared passively.
_lock = threading.Lock()
_queues: set[tuple[str, str]] = set()
_exchanges: set[tuple[str, str]] = set()


def declare_task_queue(channel: Any, queue: str, options: AmqpOptions) -> tuple[int, str]:
    """Declare ``queue`` as Celery does, or use it as it is if it exists with other settings.

    ``channel`` must be one used only for declarations (a refusal closes it). Returns the
    queue's ready message count and the exchange to publish its messages to (``queue``, or
    ``""`` when exchange ``queue`` is not ours).
    """
    exchange = _declare_exchange(channel, queue, (options.url, queue))
    waiting = _declare_queue(channel, queue, options)
    channel.queue_bind(queue, queue, queue)
    return waiting, exchange


def declare_queue(channel: Any, name: str, arguments: dict[str, Any]) -> int:
    """Declare one of our own durable queues (delay, dead letters); returns its ready count.

    Raises:
        ConfigurationError: the queue exists with other arguments (RabbitMQ: PRECONDITION_FAILED).
    """
    from amqp.exceptions import PreconditionFailed

    try:
        return _declare(channel, name, {"durable": True, "auto_delete": False, **arguments})
    except PreconditionFailed as exc:
        raise ConfigurationError(
            f"RabbitMQ queue {name!r} exists with other settings than ours ({arguments}): {exc}. "
            "It is one of django_taskq's own queues: delete it when it is empty, and give "
            "every broker URL the same queue_type.") from exc


def _declare_queue(channel: Any, queue: str, options: AmqpOptions) -> int:
    from amqp.exceptions import NotFound, PreconditionFailed

    key = (options.url, queue)
    if key in _queues:
        try:
            return _passive(channel, queue)
        except NotFound:  # deleted since: ours to declare now
            _forget(key)
    ours = {"durable": True, "auto_delete": False, **queue_arguments(options)}
    try:
        return _declare(channel, queue, ours)
    except PreconditionFailed as exc:
        waiting, theirs = _learn(channel, queue, ours, exc)
        _remember(key, _queue_warning(queue, ours, theirs, exc))
        return waiting


def _declare_exchange(channel: Any, name: str, key: tuple[str, str]) -> str:
    """Declare exchange ``name`` as ours; returns it, or ``""`` if it exists otherwise."""
    from amqp.exceptions import NotFound, PreconditionFailed

    if key in _exchanges:
        try:
            channel.exchange_declare(name, "direct", passive=True)
            return ""
        except NotFound:
            with _lock:
                _exchanges.discard(key)
    try:
        channel.exchange_declare(name, "direct", durable=True, auto_delete=False)
        return name
    except PreconditionFailed as exc:
        channel.exchange_declare(name, "direct", passive=True)  # it exists: refused, not missing
        with _lock:
            new = key not in _exchanges
            _exchanges.add(key)
        if new:
            logger.warning(_exchange_warning(name, exc), extra={"exchange": name})
        return ""


def _declare(channel: Any, name: str, settings: dict[str, Any]) -> int:
    arguments = {k: v for k, v in settings.items() if k not in FLAGS}
    return int(channel.queue_declare(name, durable=settings["durable"],
                                     auto_delete=settings["auto_delete"],
                                     arguments=arguments).message_count)


def _passive(channel: Any, name: str) -> int:
    return int(channel.queue_declare(name, passive=True).message_count)


def _learn(channel: Any, name: str, ours: dict[str, Any],
           error: Exception) -> tuple[int, dict[str, Any] | None]:
    """Declare again with each difference RabbitMQ names corrected, until it agrees; returns
    the ready count and the queue's settings (None: unknown, declared passively instead)."""
    from amqp.exceptions import PreconditionFailed

    settings = ours
    for _ in range(MAX_PROBES):
        corrected = _corrected(error, settings)
        if corrected is None:
            break
        settings = corrected
        try:
            return _declare(channel, name, settings), settings
        except PreconditionFailed as exc:
            error = exc
    return _passive(channel, name), None


def _corrected(error: Exception, settings: dict[str, Any]) -> dict[str, Any] | None:
    """``settings`` with the difference ``error`` names set to the queue's current value; None
    when the text cannot be read (a RabbitMQ that words it otherwise) or changes nothing."""
    found = _INEQUIVALENT.search(_reply(error))
    if found is None:
        return None
    name, current = found["arg"], found["current"]
    corrected = dict(settings)
    if current == "none":
        corrected.pop(name, None)
    elif name in settings or name.startswith("x-"):
        value = _value(current, settings.get(name))
        if value is _UNREADABLE:
            return None
        corrected[name] = value
    return corrected if corrected != settings else None


def _value(text: str, sent: Any) -> Any:
    """A value as RabbitMQ prints it: ``the value 'v' of type 't'``, or ``'v'`` when of the
    type we sent."""
    typed = _TYPED.match(text)
    if typed is not None:
        raw, kind = typed["value"], typed["type"]
    elif len(text) >= 2 and text[0] == text[-1] == "'" and sent is not None:
        raw = text[1:-1]
        kind = {bool: "bool", int: "long", float: "double"}.get(type(sent), "longstr")
    else:
        return _UNREADABLE
    reader = _READERS.get(kind)
    try:
        return _UNREADABLE if reader is None else reader(raw)
    except ValueError:
        return _UNREADABLE


def _reply(error: Exception) -> str:
    return str(getattr(error, "reply_text", "") or error)


def _remember(key: tuple[str, str], warning: str) -> None:
    """Declare this queue passively from now on; warn the first time only (per process)."""
    with _lock:
        new = key not in _queues
        _queues.add(key)
    if new:
        logger.warning(warning, extra={"queue": key[1]})


def _forget(key: tuple[str, str]) -> None:
    with _lock:
        _queues.discard(key)


def _queue_warning(queue: str, ours: dict[str, Any], theirs: dict[str, Any] | None,
                   error: Exception) -> str:
    advice = ("it is used as it is. To get ours, declare it the same way in Celery and delete "
              "it when it is empty (docs/brokers-rabbitmq.md, \"Queues Celery already declared\")")
    if theirs is None:
        return (f"queue {queue!r} was declared with other settings than ours "
                f"({_reply(error)}): {advice}")
    differences = [_difference(key, ours.get(key), theirs.get(key))
                   for key in sorted(set(ours) | set(theirs)) if ours.get(key) != theirs.get(key)]
    effects = _effects(ours, theirs)
    return (f"queue {queue!r} was declared {', '.join(differences)}: "
            f"{'; '.join([*effects, advice])}")


def _difference(key: str, ours: Any, theirs: Any) -> str:
    if key in FLAGS:
        return f"{'' if theirs else 'not '}{key.replace('_', '-')}"
    if theirs is None:
        return f"without {key}"
    return f"with {key} {theirs!r}" + ("" if ours is None else f" (ours: {ours!r})")


def _effects(ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """What the differences mean for django_taskq's messages on this queue."""
    effects = []
    quorum = theirs.get("x-queue-type") == "quorum"
    limit = theirs.get("x-max-priority")
    if quorum and ours.get("x-queue-type") != "quorum":
        effects.append("it is a quorum queue: priorities are ignored on it (RabbitMQ 4 has "
                       "two levels, 0-4 and 5-9)")
    elif not quorum and limit is None and "x-max-priority" in ours:
        effects.append("priorities are ignored on it")
    elif isinstance(limit, int) and limit < 9:
        effects.append(f"priorities above {limit} count as {limit}")
    if ours.get("x-queue-type") == "quorum" and not quorum:
        effects.append("it is a classic queue: RabbitMQ does not limit its deliveries "
                       "(django_taskq still counts them)")
    if not theirs.get("durable", True):
        effects.append("it is not durable: its messages are lost when RabbitMQ restarts")
    return effects


def _exchange_warning(name: str, error: Exception) -> str:
    found = _INEQUIVALENT.search(_reply(error))
    what = (f"with {found['arg']} {found['current']} (ours: {found['received']})" if found
            else f"otherwise ({_reply(error)})")
    return (f"exchange {name!r} was declared {what}: messages for queue {name!r} go through "
            f"the default exchange instead, which reaches the queue directly")
