"""Workers, queue depths and dead letters: what the top of the dashboard shows.

Workers come from ``taskq_worker`` (their last ``worker-*`` event); queue numbers from the
configured broker's ``queue_counts`` (one call per page) for every queue a known worker
consumes, plus DEFAULT_QUEUE: each queue split into waiting (due), delayed (eta/countdown) and
reserved messages, where the broker can tell them apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..brokers.base import QueueCounts
from ..conf import get_settings
from ..exceptions import TaskqError
from ..service_url import mask_text

#: Workers listed at most (online ones first).
MAX_WORKERS = 200


@dataclass(frozen=True, slots=True)
class WorkerRow:
    """One worker as the dashboard shows it."""

    hostname: str
    online: bool
    pool: str
    concurrency: int
    active: int
    processed: int
    loadavg: list[float]
    queues: list[str]
    last_heartbeat: datetime
    started_at: datetime
    sw_ver: str


@dataclass(frozen=True, slots=True)
class QueueDepth:
    """One queue: messages waiting (due), delayed and reserved; None where the broker cannot
    tell (waiting then includes the delayed ones if the broker cannot tell those apart)."""

    name: str
    waiting: int | None
    consumers: int
    delayed: int | None = None
    reserved: int | None = None
    error: str = ""


@dataclass(frozen=True, slots=True)
class DeadLetters:
    """How many dead letters the broker keeps, or why that cannot be said."""

    count: int | None
    error: str = ""


def workers(alias: str) -> list[WorkerRow]:
    """Known workers, online first, then by hostname."""
    from ..events.models import WorkerState

    rows = [
        WorkerRow(hostname=w.hostname, online=w.online, pool=w.pool, concurrency=w.concurrency,
                  active=w.active, processed=w.processed, loadavg=list(w.loadavg or []),
                  queues=[str(q) for q in w.queues or []], last_heartbeat=w.last_heartbeat,
                  started_at=w.started_at, sw_ver=w.sw_ver)
        for w in WorkerState.objects.using(alias).order_by("-last_heartbeat")[:MAX_WORKERS]]
    return sorted(rows, key=lambda w: (not w.online, w.hostname))


def queue_names(known: list[WorkerRow]) -> list[str]:
    """DEFAULT_QUEUE and every queue a known worker consumes, sorted."""
    names = {get_settings().DEFAULT_QUEUE}
    for worker in known:
        names.update(worker.queues)
    return sorted(names)


def queue_depths(known: list[WorkerRow], broker: Any = None) -> list[QueueDepth]:
    """The numbers of every queue in :func:`queue_names`, on ``broker`` (default: BROKER_URL)."""
    names = queue_names(known)
    consumers = {name: sum(1 for w in known if w.online and name in w.queues) for name in names}
    try:
        found = (broker if broker is not None else _broker()).queue_counts(names)
    except TaskqError as exc:
        return [QueueDepth(name, None, consumers[name], error=mask_text(str(exc))) for name in names]
    return [_depth(name, found[name], consumers[name]) for name in names]


def _broker() -> Any:
    from ..brokers import get_broker

    return get_broker()


def _depth(name: str, counts: QueueCounts, consumers: int) -> QueueDepth:
    due = counts.depth if counts.scheduled is None else counts.depth - counts.scheduled
    return QueueDepth(name, due, consumers, delayed=counts.scheduled, reserved=counts.in_flight)


def dead_letters(broker: Any = None) -> DeadLetters:
    """The broker's dead letter count (Redis, RabbitMQ and the database broker keep them)."""
    from ..brokers.base import dead_letter_store

    try:
        return DeadLetters(dead_letter_store(broker if broker is not None else _broker())
                           .dead_letter_count())
    except TaskqError as exc:
        return DeadLetters(None, mask_text(str(exc)))
