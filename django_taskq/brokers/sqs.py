"""The Amazon SQS broker, through boto3: leases are visibility timeouts.

A reserve is a ReceiveMessage whose ``VisibilityTimeout`` is the worker's lease; the heartbeat
extends it (ChangeMessageVisibility) while the task runs; an ack deletes the message. A worker
that dies leaves its messages invisible until their visibility timeout runs out; SQS then hands
them out again with a higher ``ApproximateReceiveCount``.

Delivery counting: a message's attempts are the ``x-taskq-attempts`` header it was sent with
(deliveries used up by earlier copies) plus its receive count. Every settling other than ack
sends a copy and then deletes the original (a crash in between leaves a duplicate, never a
loss): requeue with the count kept, release and defer with it undone, dead-letter to the dead
letter queue. So a receive count above one only ever means "an earlier receiver of this copy
never settled it": the reserve that sees it counts that lost delivery and, once it reaches
``max_deliveries``, dead-letters the message instead of handing it out (``recover`` returns
those).

Delays: SQS delays a message by at most 900 s (``DelaySeconds``). A later ETA rides in the
``x-taskq-due`` header; a receive before it sends a copy delayed by up to 900 s more and deletes
the original ("a hop"), which counts as no delivery. FIFO queues take no per-message delay: an
early message there is hidden (ChangeMessageVisibility, up to 12 h) until due, which holds back
its message group (FIFO's order), and its early receipts are taken off its receive count.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from ..exceptions import BrokerError
from ..message import Envelope
from ..service_url import ParsedUrl
from .amqp_delay import due_ms, now_ms
from .amqp_wire import copy_headers
from .base import DEFAULT_MAX_DELIVERIES, Broker, DeadLetter, Delivery, QueueCounts, worker_lost_reason
from .sqs_dead import SqsDeadLetters
from .sqs_options import (
    BATCH,
    MAX_VISIBILITY,
    SqsOptions,
    boto3_module,
    error_code,
    parse_options,
    translated,
)
from .sqs_queues import Handle, Outgoing, Queues, delay_seconds, visibility
from .sqs_wire import DEAD_AT, ORIGIN, REASON, Received

_F = TypeVar("_F", bound=Callable[..., Any])
#: The shortest wait between two short-poll rounds of an idle worker (polling_interval 0).
MIN_POLL = 0.05


def _aws(what: str) -> Callable[[_F], _F]:
    """Translate boto3's errors of the wrapped method (see ``sqs_options.translated``)."""
    def decorate(method: _F) -> _F:
        @functools.wraps(method)
        def wrapper(self: SqsBroker, *args: Any, **kwargs: Any) -> Any:
            with translated(what, self.options.masked):
                return method(self, *args, **kwargs)
        return wrapper  # type: ignore[return-value]
    return decorate


class SqsBroker(SqsDeadLetters, Broker):
    """Task queues on Amazon SQS (or an SQS-compatible server)."""

    #: SQS has no priorities: a message's priority travels with it (Celery sees it) but does not
    #: change the order of delivery.
    supports_priority = False

    def __init__(self, options: SqsOptions, *,
                 max_deliveries: int = DEFAULT_MAX_DELIVERIES) -> None:
        self.options = options
        self.max_deliveries = max_deliveries
        self.queues = Queues(options)
        self._lost: list[DeadLetter] = []
        self._lost_lock = threading.Lock()
        self._interrupted = threading.Event()

    # -- producing -------------------------------------------------------------------------

    @_aws("enqueue")
    def enqueue_many(self, envelopes: Sequence[Envelope]) -> None:
        now = now_ms()
        by_queue: dict[str, list[Outgoing]] = {}
        for envelope in envelopes:
            due = due_ms(envelope.eta) if envelope.eta is not None else 0
            headers = dict(envelope.headers)
            if due > now:
                headers = copy_headers(envelope, 0, due)
            by_queue.setdefault(envelope.queue, []).append(
                Outgoing(envelope, headers, delay_seconds(due, now)))
        for queue, outgoing in by_queue.items():
            self.queues.send(queue, outgoing)

    # -- consuming -------------------------------------------------------------------------

    @_aws("reserve")
    def reserve(self, queues: Sequence[str], *, max_messages: int, lease: float, worker: str,
                timeout: float = 0.0) -> list[Delivery]:
        """One queue: long-poll it for ``wait_time_seconds`` (it returns as soon as a message
        is there). Several: short-poll each in turn, then wait ``polling_interval`` between
        rounds. Until something came or ``timeout`` is over."""
        deadline = time.monotonic() + timeout
        self._interrupted.clear()
        wait = self.options.wait_time_seconds if len(queues) == 1 and timeout > 0 else 0
        while True:
            got: list[Delivery] = []
            for queue in queues:
                got += self._receive(queue, max_messages - len(got), lease, wait)
                if len(got) >= max_messages:
                    return got
            remaining = deadline - time.monotonic()
            if got or remaining <= 0 or self._interrupted.is_set():
                return got
            if not wait:
                self._interrupted.wait(min(max(MIN_POLL, self.options.polling_interval),
                                           remaining))

    def _receive(self, queue: str, count: int, lease: float, wait: int) -> list[Delivery]:
        located = self.queues.locate(queue)
        assert located is not None
        url, key = located
        deliveries: list[Delivery] = []
        while len(deliveries) < count:
            messages = self.queues.receive(url, key, count - len(deliveries), visibility(lease),
                                           wait)
            received = sorted((Received(m, queue) for m in messages),
                              key=lambda r: r.sent_ms)  # stable: SQS order on ties
            deliveries += self._sort(received, url, key)
            if len(messages) < BATCH or wait:
                break
        return deliveries

    def _sort(self, received: list[Received], url: str, key: str) -> list[Delivery]:
        """Hand out what is due; hop or hide what is early; dead-letter what was lost too often."""
        now = now_ms()
        fifo = url.endswith(".fifo")
        ready, copies, dead, hopped, buried, hide, lost = [], [], [], [], [], [], []
        for r in received:
            handle = Handle(url, r.receipt, key)
            if r.due > now:
                if fifo:
                    hide.append((handle, visibility((r.due - now) / 1000)))
                else:
                    copies.append(Outgoing(r.envelope, copy_headers(r.envelope, r.used, r.due),
                                           delay_seconds(r.due, now), copy=True))
                    hopped.append(handle)
                continue
            count = max(1, r.receive_count - (_early_receipts(r) if fifo else 0))
            attempts = r.used + count
            if count > 1 and attempts - 1 >= self.max_deliveries:
                letter = DeadLetter(r.envelope, worker_lost_reason(attempts - 1), attempts - 1)
                dead.append(Outgoing(r.envelope, _dead_headers(letter), copy=True))
                buried.append(handle)
                lost.append(letter)
                continue
            ready.append(Delivery(r.envelope, handle, attempts))
        # Each send deletes its originals at once: a failure after it duplicates nothing.
        if copies:
            self.queues.send(received[0].envelope.queue, copies)
            self.queues.delete(hopped)
        if dead:
            self.queues.send("", dead, dead=True)
            self.queues.delete(buried)
        if lost:  # only once they are in the dead letter queue (else they come back)
            with self._lost_lock:
                self._lost.extend(lost)
        for handle, seconds in hide:
            self.queues.change_visibility([handle], seconds)
        return ready

    def interrupt(self) -> None:
        self._interrupted.set()

    # -- settling --------------------------------------------------------------------------

    @_aws("ack")
    def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        self.queues.delete([d.tag for d in deliveries])

    @_aws("requeue")
    def requeue(self, delivery: Delivery, eta: datetime | None = None) -> None:
        self._send_back([delivery], eta, undo=False)

    @_aws("defer")
    def defer(self, delivery: Delivery, eta: datetime) -> None:
        self._send_back([delivery], eta, undo=True)

    @_aws("release")
    def release(self, deliveries: Sequence[Delivery]) -> None:
        self._send_back(deliveries, None, undo=True)

    def _send_back(self, deliveries: Sequence[Delivery], eta: datetime | None,
                   undo: bool) -> None:
        """A copy with the attempt kept (or undone), due at ``eta``; then the original goes."""
        now = now_ms()
        due = due_ms(eta) if eta is not None else 0
        due = due if due > now else 0
        by_queue: dict[str, list[Delivery]] = {}
        for d in deliveries:
            by_queue.setdefault(d.envelope.queue, []).append(d)
        for queue, sent in by_queue.items():  # each queue's originals go once its copies went
            self.queues.send(queue, [
                Outgoing(d.envelope, copy_headers(d.envelope, d.attempts - 1 if undo
                                                  else d.attempts, due),
                         delay_seconds(due, now), copy=True) for d in sent])
            self.queues.delete([d.tag for d in sent])

    @_aws("dead_letter")
    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        letter = DeadLetter(delivery.envelope, reason, delivery.attempts)
        self.queues.send("", [Outgoing(delivery.envelope, _dead_headers(letter), copy=True)],
                         dead=True)
        self.queues.delete([delivery.tag])

    @_aws("extend_leases")
    def extend_leases(self, deliveries: Sequence[Delivery], lease: float) -> None:
        """ChangeMessageVisibility: hidden ``lease`` more seconds. SQS caps a message's time
        in flight at 12 hours from its receive: a longer task is handed out again."""
        if deliveries:
            self.queues.change_visibility([d.tag for d in deliveries], visibility(lease))

    def recover(self) -> list[DeadLetter]:
        """SQS returns an expired lease's message by itself; this hands over the ones ``reserve``
        dead-lettered for reaching ``max_deliveries``."""
        with self._lost_lock:
            lost, self._lost = self._lost, []
        return lost

    # -- inspecting ------------------------------------------------------------------------

    @_aws("size")
    def size(self, queue: str) -> int:
        visible, delayed, _ = self._counts(queue)
        return visible + delayed

    @_aws("queue_counts")
    def queue_counts(self, queues: Sequence[str]) -> dict[str, QueueCounts]:
        """SQS's approximate numbers: visible plus delayed, delayed, not visible (in flight,
        and on FIFO queues early messages held back until due)."""
        counts = {queue: self._counts(queue) for queue in dict.fromkeys(queues)}
        return {queue: QueueCounts(visible + delayed, delayed, hidden)
                for queue, (visible, delayed, hidden) in counts.items()}

    def _counts(self, queue: str) -> tuple[int, int, int]:
        located = self.queues.locate(queue, create=False)
        return (0, 0, 0) if located is None else self.queues.counts(*located)

    @_aws("purge")
    def purge(self, queue: str) -> int:
        """PurgeQueue: SQS deletes every message of the queue (in flight ones too) within a
        minute, and allows one purge per queue per minute."""
        located = self.queues.locate(queue, create=False)
        if located is None:
            return 0
        visible, delayed, _ = self.queues.counts(*located)
        try:
            self.queues.call(*located, "purge_queue")
        except Exception as exc:
            if error_code(exc).endswith("PurgeQueueInProgress"):
                raise BrokerError(f"SQS purges a queue once a minute at most: {queue!r} was "
                                  "purged less than 60 seconds ago; try again later.") from exc
            raise
        return visible + delayed

    def close(self) -> None:
        self.queues.close()


def _early_receipts(received: Received) -> int:
    """How many times a FIFO message was received before its due time and hidden again: one
    per 12 hours between its sending and its due time (fewer if no worker was polling, which
    undercounts, never overcounts, its deliveries)."""
    if not received.due or received.due <= received.sent_ms:
        return 0
    return math.ceil((received.due - received.sent_ms) / (MAX_VISIBILITY * 1000))


def _dead_headers(letter: DeadLetter) -> dict[str, Any]:
    envelope = letter.envelope
    extra: dict[str, Any] = {REASON: letter.reason, ORIGIN: envelope.queue, DEAD_AT: time.time()}
    return copy_headers(envelope, letter.attempts, 0, **extra)


def from_url(url: ParsedUrl, *, poll_interval: float, transport_options: Any = None,
             max_deliveries: int = DEFAULT_MAX_DELIVERIES) -> SqsBroker:
    """The broker for an ``sqs://`` URL.

    Raises:
        ConfigurationError: boto3 is missing, or an option is unknown or invalid.
    """
    options = parse_options(url, transport_options or {}, poll_interval)
    boto3_module()
    return SqsBroker(options, max_deliveries=max_deliveries)


__all__ = ["SqsBroker", "from_url"]
