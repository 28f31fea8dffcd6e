"""The in-memory broker: one process, for tests and as the executable spec of the interface."""

from __future__ import annotations

import heapq
import itertools
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from django.utils import timezone

from ..message import Envelope
from .base import (
    DEFAULT_MAX_DELIVERIES,
    Broker,
    DeadLetter,
    DeadLetterStore,
    Delivery,
    QueueCounts,
    worker_lost_reason,
)


@dataclass(slots=True)
class _Held:
    envelope: Envelope
    attempts: int
    deadline: datetime
    token: str


class MemoryBroker(Broker, DeadLetterStore):
    """Queues as heaps ordered by (priority desc, due time, arrival); leases with deadlines."""

    def __init__(self, now: Callable[[], datetime] = timezone.now, *,
                 max_deliveries: int = DEFAULT_MAX_DELIVERIES) -> None:
        self.max_deliveries = max_deliveries
        self.now = now
        self._lock = threading.Condition()
        self._queues: dict[str, list[tuple[int, datetime, int, Envelope, int]]] = {}
        self._held: dict[int, _Held] = {}
        self._seq = itertools.count()
        self.dead_letters: list[DeadLetter] = []
        self._dead_seq = itertools.count(1)

    def _push(self, envelope: Envelope, attempts: int, due: datetime | None = None) -> None:
        due = due or envelope.eta or self.now()
        entry = (-envelope.priority, due, next(self._seq), envelope, attempts)
        heapq.heappush(self._queues.setdefault(envelope.queue, []), entry)

    def enqueue_many(self, envelopes: Sequence[Envelope]) -> None:
        with self._lock:
            for envelope in envelopes:
                self._push(envelope, 0)
            self._lock.notify_all()

    def reserve(self, queues: Sequence[str], *, max_messages: int, lease: float, worker: str,
                timeout: float = 0.0) -> list[Delivery]:
        with self._lock:
            taken = self._take(queues, max_messages, lease)
            if not taken and timeout > 0:
                self._lock.wait(timeout)
                taken = self._take(queues, max_messages, lease)
            return taken

    def _take(self, queues: Sequence[str], limit: int, lease: float) -> list[Delivery]:
        now, token = self.now(), f"{uuid.uuid4().hex}"
        ready = [(entry, q) for q in queues for entry in self._queues.get(q, []) if entry[1] <= now]
        ready.sort(key=lambda pair: pair[0][:3])
        taken = []
        for entry, queue in ready[:limit]:
            self._queues[queue].remove(entry)
            heapq.heapify(self._queues[queue])
            seq, envelope, attempts = entry[2], entry[3], entry[4] + 1
            self._held[seq] = _Held(envelope, attempts, now + timedelta(seconds=lease), token)
            taken.append(Delivery(envelope, seq, attempts, token))
        return taken

    def _owned(self, delivery: Delivery) -> _Held | None:
        held = self._held.get(delivery.tag)
        return held if held is not None and held.token == delivery.lease_token else None

    def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        with self._lock:
            for delivery in deliveries:
                if self._owned(delivery):
                    del self._held[delivery.tag]

    def requeue(self, delivery: Delivery, eta: datetime | None = None) -> None:
        with self._lock:
            held = self._owned(delivery)
            if held:
                del self._held[delivery.tag]
                self._push(held.envelope, held.attempts, eta)
                self._lock.notify_all()

    def defer(self, delivery: Delivery, eta: datetime) -> None:
        with self._lock:
            held = self._owned(delivery)
            if held:
                del self._held[delivery.tag]
                self._push(held.envelope, held.attempts - 1, eta)

    def release(self, deliveries: Sequence[Delivery]) -> None:
        with self._lock:
            for delivery in deliveries:
                held = self._owned(delivery)
                if held:
                    del self._held[delivery.tag]
                    self._push(held.envelope, held.attempts - 1)
            self._lock.notify_all()

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        with self._lock:
            held = self._owned(delivery)
            if held:
                del self._held[delivery.tag]
                self.dead_letters.append(self._letter(held.envelope, reason, held.attempts))

    def extend_leases(self, deliveries: Sequence[Delivery], lease: float) -> None:
        with self._lock:
            deadline = self.now() + timedelta(seconds=lease)
            for delivery in deliveries:
                held = self._owned(delivery)
                if held:
                    held.deadline = deadline

    def recover(self) -> list[DeadLetter]:
        with self._lock:
            now, dead = self.now(), []
            for tag, held in list(self._held.items()):
                if held.deadline > now:
                    continue
                del self._held[tag]
                if held.attempts >= self.max_deliveries:
                    letter = self._letter(held.envelope, worker_lost_reason(held.attempts),
                                          held.attempts)
                    self.dead_letters.append(letter)
                    dead.append(letter)
                else:
                    self._push(held.envelope, held.attempts, now)
            self._lock.notify_all()
            return dead

    def purge(self, queue: str) -> int:
        with self._lock:
            return len(self._queues.pop(queue, []))

    def size(self, queue: str) -> int:
        with self._lock:
            return len(self._queues.get(queue, []))

    def queue_counts(self, queues: Sequence[str]) -> dict[str, QueueCounts]:
        with self._lock:
            now = self.now()
            held = Counter(h.envelope.queue for h in self._held.values())
            waiting = {queue: self._queues.get(queue, []) for queue in queues}
            return {queue: QueueCounts(len(entries), sum(1 for e in entries if e[1] > now),
                                       held[queue]) for queue, entries in waiting.items()}

    def _letter(self, envelope: Envelope, reason: str, attempts: int) -> DeadLetter:
        return DeadLetter(envelope, reason, attempts, id=str(next(self._dead_seq)),
                          dead_at=self.now())

    def dead_letter_list(self, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        with self._lock:
            return self.dead_letters[offset:offset + limit]

    def dead_letter_count(self) -> int:
        with self._lock:
            return len(self.dead_letters)

    def dead_letter_get(self, letter_id: str) -> DeadLetter | None:
        with self._lock:
            return next((d for d in self.dead_letters if d.id == letter_id), None)

    def dead_letter_requeue(self, letter_ids: Sequence[str] | None = None) -> int:
        with self._lock:
            taken = self._take_dead(letter_ids)
            for letter in taken:
                self._push(replace(letter.envelope, eta=None), 0)
            self._lock.notify_all()
            return len(taken)

    def dead_letter_purge(self, letter_ids: Sequence[str] | None = None) -> int:
        with self._lock:
            return len(self._take_dead(letter_ids))

    def _take_dead(self, letter_ids: Sequence[str] | None) -> list[DeadLetter]:
        wanted = None if letter_ids is None else set(letter_ids)
        taken: list[DeadLetter] = []
        kept: list[DeadLetter] = []
        for letter in self.dead_letters:
            (taken if wanted is None or letter.id in wanted else kept).append(letter)
        self.dead_letters = kept
        return taken

    def held_count(self) -> int:
        """How many messages are leased right now (for tests)."""
        with self._lock:
            return len(self._held)

    def interrupt(self) -> None:
        with self._lock:
            self._lock.notify_all()
