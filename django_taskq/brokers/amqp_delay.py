"""Delayed messages on RabbitMQ: per-(queue, bucket) delay queues, never a held delivery.

A message due in ``r`` ms is published to the delay queue of its queue whose TTL is the largest
power of two not above ``r`` (at least ``MIN_BUCKET``). Every message in one delay queue has the
same TTL, so none waits behind a longer one; when the TTL runs out RabbitMQ dead-letters it back
to its queue. It lands early by less than half of ``r``; the consumer sees the ``x-taskq-due``
header still ahead and publishes it to a smaller bucket (then acks), so after at most ~log2(r)
hops it arrives at most ``MIN_BUCKET`` late, and is never kept unacked by a worker meanwhile
(RabbitMQ's ``consumer_timeout`` never applies to a waiting message).

Delay queues have no ``x-expires``: that would delete messages still waiting in them.
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from typing import Any

#: Header: when the message is due, in epoch milliseconds (rounded up: never early).
DUE = "x-taskq-due"
MIN_EXPONENT, MAX_EXPONENT = 4, 31  # buckets of 16 ms … 2^31 ms (~24.9 days, then it hops)
MIN_BUCKET = 1 << MIN_EXPONENT
BUCKETS = tuple(1 << e for e in range(MIN_EXPONENT, MAX_EXPONENT + 1))


def now_ms() -> int:
    """The wall clock in epoch milliseconds (what ``DUE`` is compared with)."""
    return int(time.time() * 1000)


def due_ms(eta: datetime) -> int:
    """``eta`` in epoch milliseconds, rounded up so a message is never delivered before it."""
    return math.ceil(eta.timestamp() * 1000)


def bucket(remaining_ms: int) -> int:
    """The TTL (ms) of the delay queue for a message due in ``remaining_ms``."""
    exponent = min(MAX_EXPONENT, max(MIN_EXPONENT, int(remaining_ms).bit_length() - 1))
    return 1 << exponent


def delay_queue(queue: str, ttl_ms: int) -> str:
    """The name of ``queue``'s delay queue with TTL ``ttl_ms``."""
    return f"taskq.delay.{queue}.{ttl_ms}"


def delay_queues(queue: str) -> list[str]:
    """Every delay queue ``queue`` may have (for size, purge and clean-up)."""
    return [delay_queue(queue, ttl) for ttl in BUCKETS]


def delay_arguments(queue: str, ttl_ms: int, quorum: bool) -> dict[str, Any]:
    """A delay queue's arguments: fixed TTL, dead-lettered back to ``queue`` by name."""
    arguments: dict[str, Any] = {"x-message-ttl": ttl_ms, "x-dead-letter-exchange": "",
                                 "x-dead-letter-routing-key": queue}
    if quorum:
        arguments["x-queue-type"] = "quorum"
    return arguments
