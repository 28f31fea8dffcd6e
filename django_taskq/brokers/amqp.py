"""The RabbitMQ broker: Celery's AMQP layout, publisher confirms, delivery counting in headers.

Layout (as Celery declares it by default, so Celery clients and workers meet ours): for queue
``Q`` a durable direct exchange ``Q`` and a durable queue ``Q`` bound with routing key ``Q``,
declared with ``amqp_options.queue_arguments``; messages are persistent protocol v2 messages
published to exchange ``Q`` with routing key ``Q`` (``amqp_wire``). A queue or exchange declared
otherwise first (Celery's defaults have no ``x-max-priority``) is used as it is, with a warning
(``amqp_declare``).

Leases are RabbitMQ's own: a delivery stays unacked until settled, and comes back (marked
*redelivered*) when the channel holding it dies. Settling other than ack is "publish a copy,
then ack the original": ``requeue``/``release``/``defer`` copy it back (to its queue or a delay
queue) with the ``x-taskq-attempts`` header kept or undone, ``dead_letter`` copies it to the
dead letter queue with the reason. So *redelivered* only ever means "the previous consumer died
holding it": ``reserve`` counts that lost attempt and republishes the message with the higher
count, or dead-letters it once ``max_deliveries`` is reached, before the worker sees it.

Delayed messages wait in delay queues (``amqp_delay``). See docs/brokers-rabbitmq.md.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from ..exceptions import BrokerConnectionError
from ..message import Envelope
from ..service_url import ParsedUrl
from . import amqp_delay as delay
from .amqp_consumer import Consumer
from .amqp_options import AmqpOptions, parse_options, queue_arguments, translated
from .amqp_publisher import Publisher, Target
from .amqp_wire import (
    DEAD_AT,
    ORIGIN,
    REASON,
    copy_headers,
    dead_letter_id,
    requeue_headers,
    to_dead_letter,
    to_message,
)
from .base import (
    DEFAULT_MAX_DELIVERIES,
    Broker,
    DeadLetter,
    DeadLetterStore,
    Delivery,
    QueueCounts,
    worker_lost_reason,
)


class AmqpBroker(Broker, DeadLetterStore):
    """Task queues on RabbitMQ; the producer and consumer each have their own connection."""

    def __init__(self, options: AmqpOptions, *,
                 max_deliveries: int = DEFAULT_MAX_DELIVERIES) -> None:
        self.options = options
        self.max_deliveries = max_deliveries
        self.publisher = Publisher(options)
        self.consumer = Consumer(options)
        self._lost: list[DeadLetter] = []
        self._lost_lock = threading.Lock()

    def queue_arguments(self) -> dict[str, object]:
        """The arguments task queues are declared with (configure Celery's queues the same)."""
        return queue_arguments(self.options)

    # -- producing -------------------------------------------------------------------------

    def enqueue_many(self, envelopes: Sequence[Envelope]) -> None:
        if not envelopes:
            return
        now = delay.now_ms()
        posts = []
        for envelope in envelopes:
            due = delay.due_ms(envelope.eta) if envelope.eta is not None else 0
            if due > now:
                posts.append((Target(envelope.queue, delay.bucket(due - now)),
                              to_message(envelope, {**envelope.headers, delay.DUE: due})))
            else:
                posts.append((Target(envelope.queue), to_message(envelope)))
        self.publisher.publish(posts)

    # -- consuming -------------------------------------------------------------------------

    def reserve(self, queues: Sequence[str], *, max_messages: int, lease: float, worker: str,
                timeout: float = 0.0) -> list[Delivery]:
        consumer = self.consumer
        consumer.interrupted = False
        with self._consuming("reserve"):
            dropped = consumer.ensure(tuple(queues), consumer.held + max_messages)
            if dropped:  # buffered from queues no longer asked for: back, attempt undone
                self._publish_then_ack([(d, Target(d.envelope.queue),
                                         copy_headers(d.envelope, d.attempts - 1))
                                        for d in dropped])
            consumer.wait(max_messages, timeout, self._resolve)
            return consumer.take(max_messages)

    def _resolve(self) -> None:
        """Decide on deliveries that must not reach the worker as they are: early delayed ones
        go to a smaller delay bucket; redelivered ones (their consumer died) count that lost
        attempt and go back to their queue, or to the dead letters at ``max_deliveries``."""
        consumer = self.consumer
        fixups, consumer.fixups = consumer.fixups, []
        now = delay.now_ms()
        copies, letters, back = [], [], 0
        for delivery, due, redelivered in fixups:
            envelope, used = delivery.envelope, delivery.attempts
            if due > now:
                target = Target(envelope.queue, delay.bucket(due - now))
                copies.append((delivery, target, copy_headers(envelope, used, due)))
            elif not redelivered:  # came due meanwhile
                consumer.ready.append(Delivery(envelope, delivery.tag, used + 1,
                                               delivery.lease_token))
                consumer.mixed = True  # keeps the priority sort honest
            elif used + 1 >= self.max_deliveries:
                reason = worker_lost_reason(used + 1)
                letters.append(DeadLetter(envelope, reason, used + 1))
                extra: dict[str, Any] = {REASON: reason, ORIGIN: envelope.queue}
                copies.append((delivery, Target(envelope.queue, dead=True), copy_headers(
                    envelope, used + 1, **extra)))
            else:
                back += 1
                copies.append((delivery, Target(envelope.queue), copy_headers(envelope, used + 1)))
        self._publish_then_ack(copies)
        consumer.expect_more(back)
        if letters:
            with self._lost_lock:
                self._lost.extend(letters)

    def interrupt(self) -> None:
        self.consumer.interrupted = True  # only a flag: safe from a signal handler

    # -- settling --------------------------------------------------------------------------

    def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        if deliveries:
            with self._consuming("ack"):
                self.consumer.ack([d.tag for d in self.consumer.owned(deliveries)])

    def requeue(self, delivery: Delivery, eta: datetime | None = None) -> None:
        self._send_back(delivery, eta, delivery.attempts)

    def defer(self, delivery: Delivery, eta: datetime) -> None:
        self._send_back(delivery, eta, delivery.attempts - 1)

    def _send_back(self, delivery: Delivery, eta: datetime | None, attempts: int) -> None:
        due = delay.due_ms(eta) if eta is not None else 0
        now = delay.now_ms()
        with self._consuming("requeue"):
            if due > now:
                target = Target(delivery.envelope.queue, delay.bucket(due - now))
                self._publish_then_ack([(delivery, target,
                                         copy_headers(delivery.envelope, attempts, due))])
            else:
                self._put_back([(delivery, Target(delivery.envelope.queue), attempts)])

    def release(self, deliveries: Sequence[Delivery]) -> None:
        with self._consuming("release"):
            self._put_back([(d, Target(d.envelope.queue), d.attempts - 1) for d in deliveries])

    def _put_back(self, items: list[tuple[Delivery, Target, int]]) -> None:
        """Back to their queue; first stop consuming (the next ``reserve`` resumes), so the copies
        are not pushed straight back into this buffer, to come back *redelivered* if the
        process then exits. What is buffered goes back too."""
        consumer = self.consumer
        if consumer.conn is None:
            return
        consumer.stop_consuming()
        if consumer.fixups:  # delivered while the consumers were being cancelled
            self._resolve()
        buffered, consumer.ready = consumer.ready, []
        items = items + [(d, Target(d.envelope.queue), d.attempts - 1) for d in buffered]
        self._publish_then_ack([(d, target, copy_headers(d.envelope, attempts))
                                for d, target, attempts in items])

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        envelope = delivery.envelope
        extra: dict[str, Any] = {REASON: reason, ORIGIN: envelope.queue, DEAD_AT: time.time()}
        headers = copy_headers(envelope, delivery.attempts, **extra)
        with self._consuming("dead_letter"):
            self._publish_then_ack([(delivery, Target(envelope.queue, dead=True), headers)])

    def _publish_then_ack(self, copies: list[tuple[Delivery, Target, dict[str, object]]]) -> None:
        """Publish the copies (confirmed), then ack the originals: a crash in between leaves a
        duplicate, never a loss. Deliveries of a dead channel are skipped: RabbitMQ has already
        put them back."""
        owned = {id(d) for d in self.consumer.owned([d for d, _, _ in copies])}
        copies = [c for c in copies if id(c[0]) in owned]
        if copies:
            self.publisher.publish([(target, to_message(d.envelope, headers))
                                    for d, target, headers in copies])
            self.consumer.ack([d.tag for d, _, _ in copies])

    @contextmanager
    def _consuming(self, what: str) -> Iterator[None]:
        """Hold the consumer; on any failure drop its connection (the next call reconnects)."""
        with self.consumer.lock:
            try:
                with translated(what):
                    yield
            except BaseException:
                self.consumer.drop()
                raise

    def extend_leases(self, deliveries: Sequence[Delivery], lease: float) -> None:
        """Nothing to do: a delivery is held for as long as its channel lives."""

    def recover(self) -> list[DeadLetter]:
        """RabbitMQ returns a dead consumer's messages by itself; this only hands over the ones
        ``reserve`` dead-lettered for reaching ``max_deliveries``."""
        with self._lost_lock:
            lost, self._lost = self._lost, []
        return lost

    # -- inspecting ------------------------------------------------------------------------

    def size(self, queue: str) -> int:
        waiting = sum(self.publisher.counts([queue, *delay.delay_queues(queue)]).values())
        return waiting + self._buffered("size")[queue]

    def queue_counts(self, queues: Sequence[str]) -> dict[str, QueueCounts]:
        """Scheduled: the delay queues' messages. In flight: None, as RabbitMQ tells a client
        no queue's unacknowledged count (its management API does)."""
        delays = {queue: delay.delay_queues(queue) for queue in dict.fromkeys(queues)}
        found = self.publisher.counts([*delays, *(name for names in delays.values()
                                                  for name in names)])
        buffered = self._buffered("queue_counts")
        scheduled = {queue: sum(found.get(name, 0) for name in names)
                     for queue, names in delays.items()}
        return {queue: QueueCounts(found.get(queue, 0) + scheduled[queue] + buffered[queue],
                                   scheduled[queue], None) for queue in delays}

    def _buffered(self, what: str) -> Counter[str]:
        """Messages delivered to this process's consumer and not handed out, by queue: still
        waiting, so counted in a queue's depth."""
        with self._consuming(what):
            consumer = self.consumer
            if consumer.conn is not None:  # delivered to us meanwhile: read it, count it here
                consumer.wait(sys.maxsize, 0.0, self._resolve, expected=False)
            return Counter(d.envelope.queue for d in consumer.ready)

    def purge(self, queue: str) -> int:
        purged = self.publisher.purge([queue, *delay.delay_queues(queue)])
        with self._consuming("purge"):
            consumer = self.consumer
            mine = [d for d in consumer.ready if d.envelope.queue == queue]
            if mine:
                consumer.ready = [d for d in consumer.ready if d.envelope.queue != queue]
                consumer.ack([d.tag for d in mine])
        return purged + len(mine)

    # -- dead letters ------------------------------------------------------------------------

    def dead_letter_list(self, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        if limit <= 0:
            return []
        messages = self.publisher.peek(self.options.dead_letter_queue, offset + limit)
        return [to_dead_letter(m) for m in messages[offset:]]

    def dead_letter_count(self) -> int:
        queue = self.options.dead_letter_queue
        return self.publisher.counts([queue]).get(queue, 0)

    def dead_letter_get(self, letter_id: str) -> DeadLetter | None:
        count = self.dead_letter_count()
        messages = self.publisher.peek(self.options.dead_letter_queue, count) if count else []
        return next((to_dead_letter(m) for m in messages if dead_letter_id(m) == letter_id),
                    None)

    def dead_letter_requeue(self, letter_ids: Sequence[str] | None = None) -> int:
        """Publish each message to its queue (confirmed), then ack its dead letter copy."""
        chosen = _chooser(letter_ids)

        def copy(message: object) -> tuple[Target, object]:
            envelope = to_dead_letter(message).envelope
            return Target(envelope.queue), to_message(envelope, requeue_headers(envelope))

        def pick(message: object) -> bool:  # a letter that names no queue cannot go back
            return chosen(message) and bool(to_dead_letter(message).envelope.queue)

        return self.publisher.take(self.options.dead_letter_queue, pick, copy)

    def dead_letter_purge(self, letter_ids: Sequence[str] | None = None) -> int:
        return self.publisher.take(self.options.dead_letter_queue, _chooser(letter_ids))

    def delete(self, queue: str) -> None:
        """Delete ``queue``, its delay queues and its exchange, with every message in them."""
        self.publisher.delete([queue, *delay.delay_queues(queue)], exchanges=[queue])

    def close(self) -> None:
        with self.consumer.lock:
            try:
                if self.consumer.conn is not None:
                    with translated("close"):
                        self._put_back([])  # buffered, never handed out: back, attempt undone
            except BrokerConnectionError:
                pass
            finally:
                self.consumer.close()
        self.publisher.close()


def _chooser(letter_ids: Sequence[str] | None) -> Callable[[object], bool]:
    """Whether a dead letter queue message is one of ``letter_ids`` (None: every one)."""
    if letter_ids is None:
        return lambda message: True
    wanted = set(letter_ids)
    return lambda message: bool(wanted) and dead_letter_id(message) in wanted


def from_url(url: ParsedUrl, max_deliveries: int = DEFAULT_MAX_DELIVERIES) -> AmqpBroker:
    """The broker for an ``amqp://``, ``amqps://`` or ``pyamqp://`` URL.

    Raises:
        ConfigurationError: an unknown or invalid URL option.
    """
    return AmqpBroker(parse_options(url), max_deliveries=max_deliveries)


__all__ = ["AmqpBroker", "from_url"]
