"""Queue numbers for ``taskq status``: ``Broker.queue_counts`` as named rows.

Depth (every message waiting, scheduled ones included) works on every engine; scheduled and in
flight are None ("n/a") where the broker cannot tell (RabbitMQ keeps no count of unacknowledged
messages per queue that a client can read).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class QueueRow:
    """What ``taskq status`` shows for one queue (None: the broker cannot tell)."""

    name: str
    depth: int
    scheduled: int | None
    in_flight: int | None

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "depth": self.depth, "scheduled": self.scheduled,
                "in_flight": self.in_flight}


def counts(broker: Any, queues: Sequence[str]) -> list[QueueRow]:
    """The numbers of each of ``queues`` (each once, in order) on ``broker``."""
    names = list(dict.fromkeys(queues))
    found = broker.queue_counts(names)
    return [QueueRow(name, found[name].depth, found[name].scheduled, found[name].in_flight)
            for name in names]
