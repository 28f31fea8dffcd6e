"""Settle finished deliveries in batches: store their results, then ack them, in one round each.

Results are stored (and retries sent) before the ack, so a crash in between re-runs the task
(at least once) rather than losing its result. A batch is flushed when it is full, when it is
old, or when the worker has nothing else ready to run — so a lone task is settled at once and a
burst costs two queries.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .. import message
from ..brokers.base import Broker, Delivery
from ..outcome import Outcome
from ..results.base import ResultBackend


@dataclass
class Settler:
    """A buffer of (delivery, outcome) pairs waiting to be stored and acked."""

    broker: Broker
    backend: ResultBackend
    max_batch: int = 500
    max_delay: float = 0.1
    clock: Callable[[], float] = time.monotonic
    _pending: list[tuple[Delivery, Outcome | None]] = field(default_factory=list)
    _since: float = 0.0
    _retries_sent: bool = False

    def add(self, delivery: Delivery, outcome: Outcome | None) -> None:
        """Queue ``delivery`` for ack, with ``outcome`` to store first (None stores nothing)."""
        if not self._pending:
            self._since = self.clock()
        self._pending.append((delivery, outcome))

    @property
    def deliveries(self) -> list[Delivery]:
        """Deliveries waiting to be acked (their leases must still be kept alive)."""
        return [delivery for delivery, _ in self._pending]

    def __len__(self) -> int:
        return len(self._pending)

    def due(self, more_ready: bool) -> bool:
        """Whether to flush now: full, old, or nothing else is about to run."""
        if not self._pending:
            return False
        return (not more_ready or len(self._pending) >= self.max_batch
                or self.clock() - self._since >= self.max_delay)

    def time_left(self) -> float:
        """Seconds until the oldest pending outcome must be flushed (1.0 when none waits)."""
        if not self._pending:
            return 1.0
        return max(0.0, self.max_delay - (self.clock() - self._since))

    def flush(self) -> None:
        """Store the results, send retries, then ack. On an error nothing is dropped: the batch
        stays (and its retries are not sent twice)."""
        if not self._pending:
            return
        outcomes = [o for _, o in self._pending if o is not None and not o.ignore_result]
        retries = [] if self._retries_sent else [
            message.retry_envelope(delivery.envelope, eta=o.retry.eta, args=o.retry.args,
                                   kwargs=o.retry.kwargs)
            for delivery, o in self._pending if o is not None and o.retry is not None]
        # On the database broker the three writes commit together.
        with self.broker.atomic():
            if outcomes:
                self.backend.store_many(outcomes)
            if retries:
                self.broker.enqueue_many(retries)
                self._retries_sent = not self.broker.transactional
            self.broker.ack_many([delivery for delivery, _ in self._pending])
        self._pending = []
        self._retries_sent = False
