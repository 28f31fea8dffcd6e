"""The broker interface: move message bytes between producers and workers, with leases.

A broker never imports tasks or serializers. Every delivery is leased: it stays invisible to other
workers until acked, requeued, released or dead-lettered, or until its lease expires and
``recover()`` returns it to the queue (or dead-letters it after too many deliveries).
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..message import Envelope


@dataclass(frozen=True, slots=True)
class Delivery:
    """One leased delivery of a message to a worker."""

    envelope: Envelope
    tag: Any
    attempts: int
    lease_token: str = ""

    @property
    def message_id(self) -> str:
        """The task id of the delivered message."""
        return self.envelope.message_id


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message the broker gave up on, and why.

    ``id`` names this dead letter in its broker (``dead_letter_get``, ``dead_letter_requeue``,
    ``dead_letter_purge``); it is empty on the letters ``recover`` returns. ``dead_at`` is when
    it was dead-lettered, None where the broker does not know.
    """

    envelope: Envelope
    reason: str
    attempts: int
    id: str = ""
    dead_at: datetime | None = None

    @property
    def message_id(self) -> str:
        """The task id of the dead message."""
        return self.envelope.message_id


@dataclass(frozen=True, slots=True)
class QueueCounts:
    """One queue's numbers (``Broker.queue_counts``); None: this broker cannot tell.

    ``depth`` is what ``size`` counts (waiting, delayed ones included, leased ones not);
    ``scheduled`` is the part of it that waits for an ETA (or a rate-limit slot);
    ``in_flight`` counts the messages workers hold (reserved, not yet settled).
    """

    depth: int
    scheduled: int | None
    in_flight: int | None


#: Deliveries after which a message whose worker keeps dying is dead-lettered (MAX_DELIVERIES).
DEFAULT_MAX_DELIVERIES = 3


class Broker(ABC):
    """What every broker engine implements; see docs/design.md for the contract.

    Capability flags say what an engine can do, so callers ask instead of catching errors.
    Limits (``max_deliveries``) are given when the broker is built. Monitoring (``taskq
    status``, the dashboard, ``/metrics``) reads queues only through ``queue_counts``, which
    every engine answers from its own structures: no caller reaches into a broker's parts.
    """

    #: Whether enqueue joins the caller's database transaction.
    transactional = False
    #: Whether messages with a higher priority are delivered first.
    supports_priority = True
    #: Whether a message can wait in the broker until its ETA (else the worker would hold it).
    supports_eta = True
    #: Deliveries after which ``recover`` dead-letters a message whose worker keeps dying.
    max_deliveries = DEFAULT_MAX_DELIVERIES

    def atomic(self) -> contextlib.AbstractContextManager[Any]:
        """A context in which several enqueues (and PENDING records) commit together."""
        return contextlib.nullcontext()

    def enqueue(self, envelope: Envelope) -> None:
        """Store one message; it becomes ready at ``envelope.eta`` (now if None)."""
        self.enqueue_many([envelope])

    @abstractmethod
    def enqueue_many(self, envelopes: Sequence[Envelope]) -> None:
        """Store many messages in one round trip."""

    def enqueue_recording(self, envelopes: Sequence[Envelope], backend: Any,
                          records: Sequence[tuple[str, str]]) -> bool:
        """Enqueue and record ``records`` as PENDING in ``backend`` in one round trip, when the
        two share a server; False (nothing done) when they do not."""
        return False

    @abstractmethod
    def reserve(self, queues: Sequence[str], *, max_messages: int, lease: float, worker: str,
                timeout: float = 0.0) -> list[Delivery]:
        """Lease up to ``max_messages`` ready messages, highest priority first, then oldest.

        Counts a delivery attempt on each. Waits up to ``timeout`` seconds when none is ready.
        """

    def ack(self, delivery: Delivery) -> None:
        """Delete a finished message."""
        self.ack_many([delivery])

    @abstractmethod
    def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        """Delete finished messages; a delivery whose lease another worker took is left alone."""

    @abstractmethod
    def requeue(self, delivery: Delivery, eta: datetime | None = None) -> None:
        """Make a leased message ready again (at ``eta``), keeping its attempt count."""

    @abstractmethod
    def defer(self, delivery: Delivery, eta: datetime) -> None:
        """Put back a message that arrived before its ``eta`` (a Celery producer's ETA message),
        undoing the attempt; it is not held in worker memory while it waits."""

    @abstractmethod
    def release(self, deliveries: Sequence[Delivery]) -> None:
        """Give back messages that were reserved but never started; their attempt is undone."""

    @abstractmethod
    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Move a leased message to the dead letters with ``reason``."""

    @abstractmethod
    def extend_leases(self, deliveries: Sequence[Delivery], lease: float) -> None:
        """Push the lease deadline of running messages ``lease`` seconds into the future."""

    @abstractmethod
    def recover(self) -> list[DeadLetter]:
        """Return expired leases to their queues; dead-letter those delivered
        ``self.max_deliveries`` times already (their worker died each time) and return what
        was dead-lettered."""

    @abstractmethod
    def purge(self, queue: str) -> int:
        """Delete every ready message in ``queue``; returns how many."""

    @abstractmethod
    def size(self, queue: str) -> int:
        """How many messages wait in ``queue`` (ready or delayed, not leased)."""

    def queue_counts(self, queues: Sequence[str]) -> dict[str, QueueCounts]:
        """Depth, scheduled and in-flight messages of each of ``queues`` (an unknown queue has
        zeros), in as few round trips as the engine allows; monitoring asks this.

        This fallback knows only ``size``: scheduled and in flight are None. Engines that can
        tell override it.
        """
        return {queue: QueueCounts(self.size(queue), None, None)
                for queue in dict.fromkeys(queues)}

    def interrupt(self) -> None:
        """Wake a ``reserve`` that is waiting, so a stopping worker does not wait it out."""

    def close(self) -> None:
        """Release connections; the broker reconnects if used again."""


class DeadLetterStore(ABC):
    """The optional part of a broker that keeps dead letters for operators to list, inspect,
    requeue and purge (``manage.py taskq dead``, the admin). Find it with
    :func:`dead_letter_store`."""

    @abstractmethod
    def dead_letter_list(self, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        """The dead letters, oldest first: ``limit`` of them after skipping ``offset``."""

    @abstractmethod
    def dead_letter_count(self) -> int:
        """How many dead letters the broker holds."""

    @abstractmethod
    def dead_letter_get(self, letter_id: str) -> DeadLetter | None:
        """The dead letter named ``letter_id`` (a ``DeadLetter.id``), None when there is none."""

    @abstractmethod
    def dead_letter_requeue(self, letter_ids: Sequence[str] | None = None) -> int:
        """Send dead letters back to their queues as fresh messages and drop them from the dead
        letters; returns how many went back.

        Args:
            letter_ids: ``DeadLetter.id`` values; unknown ones are skipped. None: all of them.

        The message goes back as it was first sent: attempt count 0, no dead-letter reason.
        Where a broker cannot do both steps atomically it puts the message back first, so a
        crash in between may leave a duplicate, never a loss.
        """

    @abstractmethod
    def dead_letter_purge(self, letter_ids: Sequence[str] | None = None) -> int:
        """Delete dead letters (None: all of them); returns how many went."""


def dead_letter_store(broker: Broker) -> DeadLetterStore:
    """The dead-letter operations of ``broker``.

    Raises:
        BrokerError: this broker keeps no dead letters that can be listed.
    """
    if not isinstance(broker, DeadLetterStore):
        from ..exceptions import BrokerError

        raise BrokerError(f"{type(broker).__name__} keeps no dead letters that can be listed or "
                          "requeued; its broker's own tools show them.")
    return broker


def worker_lost_reason(attempts: int) -> str:
    """The dead-letter reason for a message whose worker died on every delivery."""
    return (f"worker lost: the worker running this message died {attempts} times "
            "(killed, crashed or out of memory); giving up")
