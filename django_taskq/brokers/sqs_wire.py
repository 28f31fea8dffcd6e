"""Envelopes to SQS message bodies and back, in kombu's layout, so Celery reads ours and we read
Celery's.

kombu's SQS transport sends the JSON message it sends everywhere (``body`` base64, ``headers``,
``properties``, ``content-type``, ``content-encoding``) base64-encoded as the SQS message body
(``sqs_base64_encoding``, on by default), and reads either form back. Our bookkeeping travels in
headers Celery ignores, as on RabbitMQ (``amqp_wire``): ``x-taskq-attempts`` (deliveries used
before this copy was sent), ``x-taskq-due`` (epoch ms before which it must not run), and on dead
letters ``x-taskq-reason``, ``x-taskq-queue`` and ``x-taskq-dead-at``.
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime, timezone
from typing import Any

from ..message import Envelope
from . import kombu_json
from .amqp_delay import DUE
from .amqp_wire import ATTEMPTS, DEAD_AT, ORIGIN, REASON, take_bookkeeping
from .base import DeadLetter

__all__ = ["ATTEMPTS", "DEAD_AT", "DUE", "ORIGIN", "REASON", "Received", "from_body",
           "to_body", "to_dead_letter"]


def to_body(envelope: Envelope, headers: dict[str, Any], *, encode: bool = True) -> str:
    """The SQS message body for ``envelope`` with ``headers`` (kombu's JSON, base64'd)."""
    text = kombu_json.dumps(envelope, headers)
    return base64.b64encode(text.encode("utf-8")).decode("ascii") if encode else text


def from_body(raw: str, queue: str) -> Envelope:
    """The envelope of an SQS message body (headers as sent, ours included). A body that is not
    a kombu message keeps its bytes and no headers, so the worker dead-letters it with a clear
    reason instead of crashing."""
    text = raw.strip()
    if not text.startswith("{"):
        try:
            text = base64.b64decode(text, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            pass
    envelope = kombu_json.loads(text, queue)
    if envelope.content_type == "application/x-unknown":
        return envelope.replace(body=raw.encode("utf-8", "replace"))
    return envelope


class Received:
    """One received SQS message: its envelope without our headers, and our bookkeeping."""

    __slots__ = ("envelope", "used", "due", "receipt", "receive_count", "sent_ms", "message_id")

    def __init__(self, message: dict[str, Any], queue: str) -> None:
        envelope = from_body(str(message.get("Body", "")), queue)
        headers = dict(envelope.headers)
        self.used, self.due = take_bookkeeping(headers)
        self.envelope = envelope.replace(headers=headers)
        attributes = message.get("Attributes") or {}
        self.receipt = str(message["ReceiptHandle"])
        self.message_id = str(message.get("MessageId", ""))
        self.receive_count = int(attributes.get("ApproximateReceiveCount") or 1)
        self.sent_ms = int(attributes.get("SentTimestamp") or 0)


def to_dead_letter(message: dict[str, Any]) -> DeadLetter:
    """A message of the dead letter queue, named by its SQS message id."""
    envelope = from_body(str(message.get("Body", "")), "")
    headers = dict(envelope.headers)
    reason = headers.pop(REASON, None)
    queue = headers.pop(ORIGIN, None)
    dead_at = headers.pop(DEAD_AT, None)
    attempts, _ = take_bookkeeping(headers)
    when = (datetime.fromtimestamp(dead_at, timezone.utc)
            if isinstance(dead_at, (int, float)) and not isinstance(dead_at, bool) else None)
    return DeadLetter(envelope.replace(headers=headers, queue=str(queue or "")),
                      reason if isinstance(reason, str) else "dead-lettered by SQS (redrive policy)",
                      attempts, id=str(message.get("MessageId", "")), dead_at=when)
