"""Turn a delivery into a runnable Job, or say exactly why it cannot run (BadMessage)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import message, signing
from ..clock import clock_now
from ..conf import get_settings
from ..context import Request
from ..exceptions import BadMessage, NotRegistered, SignatureError, TaskqError
from ..registry import registry


@dataclass(frozen=True, slots=True)
class Job:
    """A checked message, ready to hand to a pool (it is pickled to prefork children)."""

    key: int
    task_name: str
    request: Request
    ignore_result: bool
    result_serializer: str
    keep_connections: tuple[str, ...] = ()
    #: Seconds after which the task is killed (hard) / gets SoftTimeLimitExceeded (soft).
    time_limit: float | None = None
    soft_time_limit: float | None = None
    track_started: bool = False
    #: The message's content type: a retry with new arguments is encoded the same way.
    content_type: str = "application/json"
    #: Store the arguments and queue with the result (RESULT_EXTENDED).
    extended: bool = False


def check_arguments(task: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Raise BadMessage when the arguments cannot be bound to the task's ``run``."""
    mismatch = task.argument_mismatch(args, kwargs)
    if mismatch is not None:
        raise BadMessage(f"arguments do not match task {mismatch}")


def _delivery_info(envelope: message.Envelope) -> dict[str, Any]:
    properties = envelope.properties if isinstance(envelope.properties, dict) else {}
    info = properties.get("delivery_info")
    # Celery's request.delivery_info carries the message priority too (worker/request.py).
    return {**(info if isinstance(info, dict) else {}), "priority": envelope.priority,
            "queue": envelope.queue}


def _seconds_or_none(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


def time_limits(headers: dict[str, Any], options: Any,
                defaults: tuple[float | None, float | None]) -> tuple[float | None, float | None]:
    """(hard, soft) seconds: the message's ``timelimit`` header, else the task's options, else
    the worker's. Celery's header order is ``[hard, soft]``; anything unreadable counts as unset."""
    given = headers.get("timelimit")
    if given == [None, None] and options.time_limit is None and options.soft_time_limit is None:
        return defaults  # the common case, answered without the checks below
    hard, soft = (given + [None, None])[:2] if isinstance(given, list) else (None, None)
    hard = _seconds_or_none(hard) or options.time_limit or defaults[0]
    soft = _seconds_or_none(soft) or options.soft_time_limit or defaults[1]
    return hard, soft


def prepare(key: int, envelope: message.Envelope, *, accept: tuple[str, ...], hostname: str,
            result_serializer: str, keep_connections: tuple[str, ...] = (),
            default_time_limits: tuple[float | None, float | None] = (None, None),
            track_started: bool = False, extended: bool = False, task: Any = None,
            eager: bool = False) -> tuple[Job, message.DecodedMessage]:
    """Decode and check a delivered envelope (``task``: the task to run, else the registered
    one of the message's name; ``eager``: a run in the caller's process).

    Raises:
        BadMessage: too large, refused for its signature (with SIGNING_KEYS set; its cause is
            the SignatureError), malformed, refused content, unknown task or arguments that do
            not fit.
    """
    if not eager:
        check_sealed(envelope)
    try:
        decoded = message.decode(envelope, accept)
        task = task if task is not None else registry.get(decoded.task_name)
    except NotRegistered as exc:
        raise BadMessage(f"unknown task: {exc}") from exc
    except TaskqError as exc:
        raise BadMessage(f"malformed message: {exc}") from exc
    check_arguments(task, decoded.args, decoded.kwargs)
    options = task.options
    hard, soft = time_limits(decoded.headers, options, default_time_limits)
    job = Job(key=key, task_name=decoded.task_name,
              request=make_request(decoded, envelope, hostname, hard, soft, eager),
              ignore_result=task.resolve_ignore_result(decoded.headers.get("ignore_result")),
              result_serializer=result_serializer, keep_connections=keep_connections,
              time_limit=hard, soft_time_limit=soft,
              track_started=track_started if options.track_started is None
              else options.track_started,
              content_type=envelope.content_type, extended=extended)
    return job, decoded


def check_sealed(envelope: message.Envelope) -> None:
    """What the producer's ``seal`` promised, checked before anything is decoded: the body is
    within MESSAGE_MAX_BYTES and, with SIGNING_KEYS set, the signature checks out.

    Raises:
        BadMessage: with the reason (a SignatureError as its cause); ``untrusted`` when
            SIGNING_KEYS is set (the message's id and name are not verified).
    """
    settings = get_settings()
    size, signed = len(envelope.body), bool(settings.SIGNING_KEYS)
    if size > settings.MESSAGE_MAX_BYTES:
        raise BadMessage(f"message too large: {size} bytes, over MESSAGE_MAX_BYTES "
                         f"({settings.MESSAGE_MAX_BYTES} bytes)", untrusted=signed)
    if signed:
        try:
            signing.verify(envelope, settings.SIGNING_KEYS, settings.SIGNING_MAX_AGE,
                           clock_now().timestamp())
        except SignatureError as exc:
            raise BadMessage(f"{signing.REFUSED}: {exc}", untrusted=True) from exc


def make_request(decoded: message.DecodedMessage, envelope: message.Envelope, hostname: str,
                 hard: float | None, soft: float | None, eager: bool) -> Request:
    """The ``self.request`` of a run: Celery's Context fields from the message."""
    headers = decoded.headers
    properties = envelope.properties if isinstance(envelope.properties, dict) else {}
    return Request(
        id=decoded.task_id, task=decoded.task_name, args=decoded.args, kwargs=decoded.kwargs,
        retries=decoded.retries, eta=decoded.eta, expires=decoded.expires,
        root_id=headers.get("root_id"), parent_id=headers.get("parent_id"),
        group=headers.get("group"), hostname=hostname, delivery_info=_delivery_info(envelope),
        headers=message.custom_headers(headers), properties=properties, time_limit=hard,
        soft_time_limit=soft, is_eager=eager, message_headers=headers, embed=decoded.embed)
