"""Sending task messages: options → protocol v2 envelopes → broker, plus the PENDING record."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, InterfaceError, OperationalError
from django.utils import timezone

from .conf import get_settings
from .exceptions import BrokerConnectionError, TaskqError
from .message import Envelope, build_envelope

logger = logging.getLogger(__name__)

MIN_PRIORITY, MAX_PRIORITY = 0, 9


@dataclass(frozen=True, slots=True)
class SendOptions:
    """Everything ``apply_async`` accepts besides the arguments, resolved to absolute values."""

    queue: str
    priority: int = 0
    eta: datetime | None = None
    expires: datetime | None = None
    serializer: str = "json"
    ignore_result: bool = False
    headers: dict[str, Any] = field(default_factory=dict)
    timelimit: tuple[float | None, float | None] = (None, None)
    parent_id: str | None = None
    root_id: str | None = None


def new_task_id() -> str:
    """A fresh task id (a UUID4 string, as Celery makes them)."""
    return str(uuid.uuid4())


def resolve_eta(countdown: float | None, eta: datetime | None, now: datetime) -> datetime | None:
    """The absolute time a task may start; naive datetimes are read in Django's current zone."""
    if countdown is not None and eta is not None:
        raise ValueError("Pass either countdown or eta, not both.")
    if countdown is not None:
        return now + timedelta(seconds=float(countdown))
    if eta is not None:
        return eta if timezone.is_aware(eta) else timezone.make_aware(eta)
    return None


def resolve_expires(expires: float | timedelta | datetime | None, now: datetime) -> datetime | None:
    """An absolute expiry from seconds, a timedelta or a datetime."""
    if expires is None:
        return None
    if isinstance(expires, datetime):
        return expires if timezone.is_aware(expires) else timezone.make_aware(expires)
    if isinstance(expires, timedelta):
        return now + expires
    return now + timedelta(seconds=float(expires))


def check_priority(priority: int | None) -> int:
    """Validate a priority: a whole number from 0 (default) to 9; higher runs first."""
    if priority is None:
        return 0
    if isinstance(priority, bool) or not isinstance(priority, int) or not (
            MIN_PRIORITY <= priority <= MAX_PRIORITY):
        raise ValueError(f"priority must be a whole number from {MIN_PRIORITY} to {MAX_PRIORITY} "
                         f"(higher runs first), not {priority!r}.")
    return priority


def envelope_for(task_name: str, task_id: str, args: Sequence[Any], kwargs: dict[str, Any],
                 options: SendOptions) -> Envelope:
    """Build the message for one call."""
    if not isinstance(args, (list, tuple)):
        raise TypeError(f"args must be a list or tuple, not {type(args).__name__}.")
    if not isinstance(kwargs, dict):
        raise TypeError(f"kwargs must be a dict, not {type(kwargs).__name__}.")
    return build_envelope(
        task_name, tuple(args), kwargs, task_id=task_id, queue=options.queue,
        serializer=options.serializer, priority=options.priority, eta=options.eta,
        expires=options.expires, ignore_result=options.ignore_result,
        timelimit=options.timelimit, extra_headers=options.headers,
        parent_id=options.parent_id, root_id=options.root_id,
    )


def send(envelopes: list[Envelope], record_results: bool) -> None:
    """Send through the configured middleware (``TASKQ["MIDDLEWARE"]``), then to the broker."""
    from . import middleware

    middleware.send_through(envelopes, lambda current: _send(current, record_results))


def _send(envelopes: list[Envelope], record_results: bool) -> None:
    """Hand the envelopes to the broker and record PENDING results (unless ignored).

    On the database broker both writes join the caller's transaction (or form one of their
    own), so a PENDING record never exists without its message. Elsewhere the message goes
    first — the PENDING record is written only if absent, so a worker's faster result is never
    overwritten, and a PENDING record never names a message that was not sent; a failure to
    write it after the message went out is logged, not raised (raising would invite a resend).
    """
    from .brokers import get_broker
    from .results import get_backend

    broker = get_broker()
    records = [(e.message_id, e.task_name) for e in envelopes] if record_results else []
    if records and not broker.transactional and \
            broker.enqueue_recording(envelopes, get_backend(), records):
        return  # one round trip: broker and result backend share a Redis
    try:
        with broker.atomic():
            broker.enqueue_many(envelopes)
            if records and broker.transactional:
                get_backend().mark_pending(records)
    except (OperationalError, InterfaceError) as exc:
        raise BrokerConnectionError(f"could not enqueue {len(envelopes)} message(s): {exc}") from exc
    if records and not broker.transactional:
        try:
            get_backend().mark_pending(records)
        except (TaskqError, DatabaseError) as exc:
            logger.warning("sent %d message(s) but could not record them as PENDING: %s",
                           len(records), exc)


def default_options(**overrides: Any) -> SendOptions:
    """SendOptions with the settings' defaults where ``overrides`` leaves a value as None."""
    settings = get_settings()
    given = {k: v for k, v in overrides.items() if v is not None}
    given.setdefault("queue", settings.DEFAULT_QUEUE)
    given.setdefault("serializer", settings.TASK_SERIALIZER)
    return SendOptions(**given)


def pair_calls(calls: Iterable[Any]) -> list[tuple[Sequence[Any], dict[str, Any]]]:
    """Normalise ``apply_many`` input: each item is ``(args, kwargs)``."""
    pairs = []
    for item in calls:
        if not (isinstance(item, (list, tuple)) and len(item) == 2):
            raise TypeError("apply_many takes (args, kwargs) pairs; use delay_many for args only.")
        pairs.append((item[0], item[1] or {}))
    return pairs
