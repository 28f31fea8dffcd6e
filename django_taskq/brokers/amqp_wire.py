"""Envelopes to AMQP messages and back, as a Celery 5 client sends them, plus our headers.

Properties as kombu writes them for Celery: ``content_type``, ``content_encoding``,
``application_headers`` (the protocol v2 headers), ``delivery_mode`` 2 (persistent),
``priority``, ``correlation_id`` (the task id) and ``reply_to``.

Our bookkeeping travels in headers that Celery ignores:
- ``x-taskq-attempts``: deliveries this message already used up (absent: none);
- ``x-taskq-due``: epoch ms before which it must not be delivered (``amqp_delay``);
- on dead letters, ``x-taskq-reason``, ``x-taskq-queue`` (where it came from) and
  ``x-taskq-dead-at`` (epoch seconds; absent on letters dead-lettered while reserving).

A dead letter's id is the head of a SHA-1 of its headers and body: a message never changes
while it waits in the dead letter queue, so the id names it for as long as it is there.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any

from ..message import Envelope
from .amqp_delay import DUE
from .base import DeadLetter

ATTEMPTS = "x-taskq-attempts"
REASON = "x-taskq-reason"
ORIGIN = "x-taskq-queue"
DEAD_AT = "x-taskq-dead-at"
#: Hex digits of a dead letter's id.
LETTER_ID_WIDTH = 16
#: Headers RabbitMQ adds when it dead-letters or redelivers; stale on a copy we publish.
_BROKER_HEADERS = ("x-death", "x-first-death-exchange", "x-first-death-queue",
                   "x-first-death-reason", "x-last-death-exchange", "x-last-death-queue",
                   "x-last-death-reason", "x-delivery-count")


def to_message(envelope: Envelope, headers: dict[str, Any] | None = None) -> Any:
    """The AMQP message for ``envelope`` (with ``headers`` instead of its own, if given)."""
    import amqp

    properties = envelope.properties
    return amqp.Message(
        envelope.body, content_type=envelope.content_type,
        content_encoding=envelope.content_encoding,
        application_headers=envelope.headers if headers is None else headers,
        delivery_mode=2, priority=envelope.priority,
        correlation_id=properties.get("correlation_id") or envelope.message_id or None,
        reply_to=properties.get("reply_to") or "")


def copy_headers(envelope: Envelope, attempts: int, due: int = 0, **extra: Any) -> dict[str, Any]:
    """Headers for a copy of a delivered message: ``attempts`` used, due at ``due`` ms."""
    headers = {k: v for k, v in envelope.headers.items() if k not in _BROKER_HEADERS}
    if attempts > 0:
        headers[ATTEMPTS] = attempts
    if due:
        headers[DUE] = due
    headers.update(extra)
    return headers


def take_bookkeeping(headers: dict[str, Any]) -> tuple[int, int]:
    """Pop our (attempts used, due ms) headers; a malformed value counts as absent."""
    return _int(headers.pop(ATTEMPTS, 0)), _int(headers.pop(DUE, 0))


def _int(value: Any) -> int:
    return value if type(value) is int and value > 0 else 0


def to_envelope(message: Any, queue: str, headers: dict[str, Any]) -> Envelope:
    """The envelope of a delivered message (``headers`` already stripped of ours)."""
    properties = message.properties
    info = message.delivery_info
    priority = properties.get("priority") or 0
    return Envelope(
        queue=queue, body=message.body, headers=headers,
        content_type=properties.get("content_type") or "application/json",
        content_encoding=properties.get("content_encoding") or "utf-8",
        priority=priority,
        properties={"correlation_id": properties.get("correlation_id"),
                    "reply_to": properties.get("reply_to"), "delivery_mode": 2,
                    "priority": priority,
                    "delivery_info": {"exchange": info.get("exchange"),
                                      "routing_key": info.get("routing_key")}})


def to_dead_letter(message: Any) -> DeadLetter:
    """A message read from the dead letter queue, with the reason it was put there."""
    headers = dict(message.properties.get("application_headers") or {})
    letter_id = dead_letter_id(message)
    reason = headers.pop(REASON, None)
    queue = headers.pop(ORIGIN, None) or headers.get("x-first-death-queue") or ""
    dead_at = _dead_at(headers.pop(DEAD_AT, None), headers.get("x-death"))
    attempts, _ = take_bookkeeping(headers)
    if not isinstance(reason, str):
        # Dead-lettered by RabbitMQ itself (a quorum queue's x-delivery-limit).
        reason = f"dead-lettered by RabbitMQ: {headers.get('x-first-death-reason', 'unknown')}"
    return DeadLetter(to_envelope(message, str(queue), headers), reason, attempts,
                      id=letter_id, dead_at=dead_at)


def dead_letter_id(message: Any) -> str:
    """The id of a message in the dead letter queue (its headers and body, hashed)."""
    headers = message.properties.get("application_headers") or {}
    body = message.body.encode("utf-8") if isinstance(message.body, str) else bytes(message.body)
    digest = hashlib.sha1(usedforsecurity=False)
    digest.update(json.dumps(headers, sort_keys=True, default=str).encode("utf-8"))
    digest.update(b"\0")
    digest.update(body)
    return digest.hexdigest()[:LETTER_ID_WIDTH]


def requeue_headers(envelope: Envelope) -> dict[str, Any]:
    """The headers of a dead letter sent back to its queue: as first sent, no count, no reason
    (``to_dead_letter`` already took ours off)."""
    return copy_headers(envelope, 0)


def _dead_at(ours: Any, deaths: Any) -> datetime | None:
    if isinstance(ours, (int, float)) and not isinstance(ours, bool):
        return datetime.fromtimestamp(ours, timezone.utc)
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict):
        when = deaths[0].get("time")  # RabbitMQ's own dead-lettering
        if isinstance(when, datetime):
            return when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    return None
