"""Small helpers shared by tests."""

from __future__ import annotations

import time
import uuid
from typing import Any

from django_taskq.brokers.base import Broker
from django_taskq.message import Envelope, SendOptions, build_envelope


def envelope(queue: str = "default", *, task: str = "tests.testapp.tasks.add",
             args: tuple[Any, ...] = (1, 2), kwargs: dict[str, Any] | None = None,
             priority: int = 0, **options: Any) -> Envelope:
    """A protocol v2 envelope with a fresh id (``options``: SendOptions fields)."""
    return build_envelope(task, args, kwargs or {}, str(uuid.uuid4()),
                          SendOptions(queue=queue, priority=priority, **options))


def dead_letters(broker: Broker) -> list[tuple[str, str]]:
    """(task id, reason) of every dead letter the broker holds, oldest first."""
    return [(d.envelope.message_id, d.reason) for d in broker.dead_letter_list(limit=1000)]


def drain(worker: Any, result: Any, timeout: float = 20.0) -> Any:
    """Step an in-process worker until ``result`` (an AsyncResult or GroupResult) is ready."""
    deadline = time.monotonic() + timeout
    while not result.ready():
        assert time.monotonic() < deadline, f"timed out waiting for {result!r}"
        worker.step()
    return result
