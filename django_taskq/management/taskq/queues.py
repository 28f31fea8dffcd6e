"""Queue numbers for ``taskq status``: depth, scheduled and in flight, on each broker engine.

``Broker.size`` (depth: every message waiting in the queue, scheduled ones included) works on
every engine. How many of those wait for an ETA (or a rate-limit slot), and how many are held
by workers, each engine knows in its own way; where it cannot say (RabbitMQ keeps no count of
unacknowledged messages per queue that a client can read), the number is None ("n/a").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """What ``taskq status`` shows for one queue (None: the broker cannot tell)."""

    name: str
    depth: int
    scheduled: int | None
    in_flight: int | None

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "depth": self.depth, "scheduled": self.scheduled,
                "in_flight": self.in_flight}


def counts(broker: Any, queues: Sequence[str]) -> list[QueueCounts]:
    """The numbers of each of ``queues`` on ``broker``."""
    engine = type(broker).__name__
    extra = _EXTRA.get(engine, _unknown)
    scheduled, in_flight = extra(broker, list(queues))
    return [QueueCounts(queue, broker.size(queue),
                        None if scheduled is None else scheduled.get(queue, 0),
                        None if in_flight is None else in_flight.get(queue, 0))
            for queue in queues]


Tallies = tuple["Counter[str] | None", "Counter[str] | None"]


def _unknown(broker: Any, queues: list[str]) -> Tallies:
    return None, None


def _database(broker: Any, queues: list[str]) -> Tallies:
    from django.db.models import Count, Q

    from ...models import QueuedMessage

    now = broker.now()
    rows = (QueuedMessage.objects.using(broker.alias).filter(queue__in=queues)
            .values("queue").annotate(
                scheduled=Count("id", filter=Q(state=QueuedMessage.READY, available_at__gt=now)),
                in_flight=Count("id", filter=Q(state=QueuedMessage.RESERVED))))
    scheduled, in_flight = Counter[str](), Counter[str]()
    for row in rows:
        scheduled[row["queue"]] = row["scheduled"]
        in_flight[row["queue"]] = row["in_flight"]
    return scheduled, in_flight


def _memory(broker: Any, queues: list[str]) -> Tallies:
    now: datetime = broker.now()
    with broker._lock:  # the memory broker is one process's: its own structures are the truth
        scheduled = Counter({q: sum(1 for entry in broker._queues.get(q, []) if entry[1] > now)
                             for q in queues})
        in_flight = Counter(held.envelope.queue for held in broker._held.values())
    return scheduled, in_flight


def _redis(broker: Any, queues: list[str]) -> Tallies:
    from ...brokers.redis import SEP

    now_ms = int(broker.now().timestamp() * 1000)
    pipe = broker.client.pipeline(transaction=False)
    for queue in queues:
        pipe.zcount(broker._delayed(queue), f"({now_ms}", "+inf")
    pipe.hvals(f"{broker.prefix}:inflight")
    *due_later, held = pipe.execute()
    scheduled = Counter(dict(zip(queues, (int(n) for n in due_later), strict=True)))
    # An in-flight entry is "<attempts>\n<list key>\n<message>"; the list key names the queue.
    in_flight = Counter(_text(entry).split("\n", 2)[1].split(SEP, 1)[0] for entry in held)
    return scheduled, in_flight


def _amqp(broker: Any, queues: list[str]) -> Tallies:
    from ...brokers import amqp_delay

    scheduled = Counter({q: sum(broker.publisher.counts(amqp_delay.delay_queues(q)).values())
                         for q in queues})
    return scheduled, None


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


_EXTRA = {"DatabaseBroker": _database, "MemoryBroker": _memory, "RedisBroker": _redis,
          "AmqpBroker": _amqp}
