"""Small helpers shared by tests."""

from __future__ import annotations

import uuid
from typing import Any

from django_taskq.brokers.base import Broker
from django_taskq.brokers.memory import MemoryBroker
from django_taskq.message import Envelope, build_envelope


def envelope(queue: str = "default", *, task: str = "tests.testapp.tasks.add",
             args: tuple[Any, ...] = (1, 2), kwargs: dict[str, Any] | None = None,
             priority: int = 0, **options: Any) -> Envelope:
    """A protocol v2 envelope with a fresh id."""
    return build_envelope(task, args, kwargs or {}, task_id=str(uuid.uuid4()), queue=queue,
                          priority=priority, **options)


def dead_letters(broker: Broker) -> list[tuple[str, str]]:
    """(task id, reason) of every dead letter the broker holds."""
    if isinstance(broker, MemoryBroker):
        return [(d.envelope.message_id, d.reason) for d in broker.dead_letters]
    from django_taskq.models import DeadLetterMessage

    rows = DeadLetterMessage.objects.using(broker.alias).order_by("id")  # type: ignore[attr-defined]
    return [(r.message_id, r.reason) for r in rows]
