"""The consuming side of the RabbitMQ broker: one connection, a prefetch window, a local buffer.

RabbitMQ pushes messages (``basic_consume``) up to the prefetch window (``basic_qos``, per
consumer, so it works on quorum queues too); they wait in ``ready`` until ``reserve`` hands
them out. Reads happen in slices of ``SLICE`` seconds so ``interrupt()`` is seen quickly.

Heartbeats: the main thread sends them while it waits in ``reserve``; between reserves (a long
task in the solo pool) a keep-alive thread sends them, so RabbitMQ never drops a busy worker.
Both take ``lock``, so frames never interleave and a TLS socket is never used by two threads at
once. A peer silent for two heartbeat intervals is dead: the connection is dropped and the next
``reserve`` reconnects, declares and consumes again.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from ..exceptions import BrokerConnectionError
from .amqp_declare import declare_task_queue
from .amqp_delay import DUE, now_ms
from .amqp_options import AmqpOptions, connect
from .amqp_wire import ATTEMPTS, take_bookkeeping, to_envelope
from .base import Delivery

#: Seconds per blocking read, so a stopping worker is not kept waiting.
SLICE = 0.1
#: Seconds a non-blocking reserve waits for deliveries known to be on their way (what the queue
#: held when consuming started, redelivered messages sent back): "ready" is a push in flight.
EXPECT_WAIT = 0.5


def _priority(delivery: Delivery) -> int:
    return -delivery.envelope.priority


class Consumer:
    """State of the consuming connection; every method but ``interrupt`` needs ``lock`` held."""

    def __init__(self, options: AmqpOptions) -> None:
        self.options = options
        self.lock = threading.Lock()
        self.interrupted = False
        self._generations = itertools.count(1)
        self._stop = threading.Event()
        self._keepalive: threading.Thread | None = None
        self._reset(None, None, None, "")

    def _reset(self, conn: Any, channel: Any, declarer: Any, token: str) -> None:
        # Declarations get a channel of their own: a refused one closes its channel, and this
        # one's prefetch and unacked deliveries must survive that (amqp_declare).
        self.conn, self.channel, self.declarer, self.token = conn, channel, declarer, token
        self.queues: tuple[str, ...] = ()
        self.window = 0
        self.tags: dict[str, str] = {}  # consumer tag → queue
        self.active: list[str] = []
        self.ready: list[Delivery] = []
        self.mixed = False  # ready holds more than one priority
        self.unacked: set[int] = set()  # every delivery tag not yet acked on this channel
        #: (delivery with attempts = deliveries used, due ms, redelivered): need a decision.
        self.fixups: list[tuple[Delivery, int, bool]] = []
        self.expect = 0
        self.expect_until = 0.0
        now = time.monotonic()
        self._recv_mark = self._sent_mark = -1
        self._recv_at = self._sent_at = now

    @property
    def held(self) -> int:
        """Deliveries handed out and not settled yet."""
        return len(self.unacked) - len(self.ready) - len(self.fixups)

    # -- connecting and consuming ----------------------------------------------------------

    def ensure(self, queues: tuple[str, ...], needed: int) -> list[Delivery]:
        """Connect and consume ``queues`` with a window of at least ``needed``; returns the
        buffered deliveries of queues no longer consumed (the caller gives them back)."""
        if self.conn is None:
            self._connect()
        fixed = self.options.prefetch_count
        if queues == self.queues and (fixed or needed <= self.window):
            return []
        return self._consume(queues, fixed or max(self.window, 2 * needed, 1))

    def _connect(self) -> None:
        conn = connect(self.options, heartbeat=self.options.heartbeat)
        try:
            channel = conn.channel()
            channel.auto_decode = False  # bodies stay bytes, as published
            declarer = conn.channel()
        except BaseException:
            conn.collect()
            raise
        self._reset(conn, channel, declarer, f"{next(self._generations)}.{uuid.uuid4().hex[:8]}")
        if self.options.heartbeat and self._keepalive is None:
            self._stop = threading.Event()
            self._keepalive = threading.Thread(target=self._keep_alive, args=(self._stop,),
                                               name="taskq-amqp-keepalive", daemon=True)
            self._keepalive.start()

    def _consume(self, queues: tuple[str, ...], window: int) -> list[Delivery]:
        self.stop_consuming()
        channel = self.channel
        channel.basic_qos(0, window, False)
        for queue in queues:
            waiting, _ = declare_task_queue(self.declarer, queue, self.options)
            tag = channel.basic_consume(queue, callback=self._on_message)
            self.tags[tag] = queue
            self.active.append(tag)
            self.expect_more(min(waiting, window))
        self.queues, self.window = queues, window
        dropped = [d for d in self.ready if d.envelope.queue not in queues]
        if dropped:
            self.ready = [d for d in self.ready if d.envelope.queue in queues]
        return dropped

    def stop_consuming(self) -> None:
        """Cancel the consumers (what is buffered stays); the next ``ensure`` consumes again."""
        while self.active:
            self.channel.basic_cancel(self.active.pop())
        self.queues = ()

    def expect_more(self, count: int) -> None:
        """``count`` deliveries are on their way: a non-blocking ``wait`` waits for them."""
        if count > 0:
            self.expect = max(self.expect, 0) + count  # below 0: more came than we knew of
            self.expect_until = time.monotonic() + EXPECT_WAIT

    # -- receiving -------------------------------------------------------------------------

    def _on_message(self, message: Any) -> None:
        info = message.delivery_info
        tag = info["delivery_tag"]
        self.unacked.add(tag)
        self.expect -= 1
        queue = self.tags[info["consumer_tag"]]
        headers = message.properties.get("application_headers")
        if headers is None:
            headers = {}
        used = due = 0
        redelivered = info["redelivered"]
        if redelivered or ATTEMPTS in headers or DUE in headers:
            used, due = take_bookkeeping(headers)
            if redelivered or (due and due > now_ms()):
                self.fixups.append((Delivery(to_envelope(message, queue, headers), tag, used,
                                             self.token), due, redelivered))
                return
        delivery = Delivery(to_envelope(message, queue, headers), tag, used + 1, self.token)
        if delivery.envelope.priority:
            self.mixed = True
        self.ready.append(delivery)

    def wait(self, want: int, timeout: float, resolve: Callable[[], None], *,
             expected: bool = True) -> None:
        """Read until ``want`` deliveries are ready, or ``timeout`` passes with none (or with
        fewer while more are still ``expected``), or ``interrupt``; ``resolve`` handles fixups."""
        deadline = time.monotonic() + timeout
        while True:
            self._read(0.0, want)
            if self.fixups:
                resolve()
            have = len(self.ready)
            if have >= want or self.interrupted:
                return
            now = time.monotonic()
            end = now if have else deadline
            if expected and self.expect > 0:
                end = max(end, self.expect_until)
            if now >= end:
                self.expect = 0  # what was expected went elsewhere (another consumer)
                return
            self._read(min(SLICE, end - now), want)
            self._check_peer()

    def _read(self, timeout: float, want: int) -> None:
        conn = self.conn
        try:
            conn.drain_events(timeout=timeout)
            while len(self.ready) + len(self.fixups) < want:
                conn.drain_events(timeout=0)
        except TimeoutError:
            pass
        if conn.bytes_recv != self._recv_mark:
            self._recv_mark, self._recv_at = conn.bytes_recv, time.monotonic()

    def _check_peer(self) -> None:
        heartbeat = self.options.heartbeat
        if not heartbeat:
            return
        if time.monotonic() - self._recv_at > 2 * heartbeat:
            raise BrokerConnectionError(
                f"RabbitMQ sent nothing for {2 * heartbeat:g}s (two heartbeats): connection dead")
        self._beat()

    def _beat(self) -> None:
        """Send a heartbeat when nothing was sent for a third of the interval."""
        conn, now = self.conn, time.monotonic()
        if conn.bytes_sent != self._sent_mark:
            self._sent_mark, self._sent_at = conn.bytes_sent, now
        elif now - self._sent_at >= self.options.heartbeat / 3:
            conn.send_heartbeat()
            self._sent_mark, self._sent_at = conn.bytes_sent, now

    def _keep_alive(self, stop: threading.Event) -> None:
        while not stop.wait(self.options.heartbeat / 4):
            if not self.lock.acquire(blocking=False):
                continue  # the main thread is reading, and beats itself
            try:
                if self.conn is not None:
                    self._beat()
            except Exception:  # noqa: BLE001, S110 - a broken connection shows in the main thread
                pass
            finally:
                self.lock.release()

    # -- handing out and acking ------------------------------------------------------------

    def take(self, want: int) -> list[Delivery]:
        """Up to ``want`` buffered deliveries, highest priority first, then in arrival order."""
        ready = self.ready
        if self.mixed and len(ready) > 1:
            ready.sort(key=_priority)  # stable: arrival order within a priority
        taken, self.ready = ready[:want], ready[want:]
        if not self.ready:
            self.mixed = False
        return taken

    def owned(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """The deliveries made on the current channel (a stale one was returned by RabbitMQ
        when its channel died, and is no one's to settle)."""
        token = self.token
        return [d for d in deliveries if d.lease_token == token] if token else []

    def ack(self, tags: Sequence[int]) -> None:
        """Ack delivery tags of this channel; one frame when they are the oldest unacked."""
        unacked = self.unacked
        tags = [tag for tag in tags if tag in unacked]  # acking a tag twice is a channel error
        if not tags:
            return
        unacked.difference_update(tags)
        top = max(tags)
        if not unacked or min(unacked) > top:
            self.channel.basic_ack(top, multiple=True)
        else:
            for tag in tags:
                self.channel.basic_ack(tag)

    def drop(self) -> None:
        """Forget the connection at once (RabbitMQ returns what it held to the queues)."""
        conn = self.conn
        self._reset(None, None, None, "")
        if conn is not None:
            try:
                conn.collect()
            except Exception:  # noqa: BLE001, S110 - already gone
                pass

    def close(self) -> None:
        """Close the connection politely and stop the keep-alive thread."""
        self._stop.set()
        self._keepalive = None
        if self.conn is not None:
            try:
                self.conn.close()  # may still dispatch deliveries: keep the state until done
            except Exception:  # noqa: BLE001 - closing anyway
                self.conn.collect()
        self._reset(None, None, None, "")
