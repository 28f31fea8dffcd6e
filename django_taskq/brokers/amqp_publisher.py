"""Publishing to RabbitMQ: one lock-protected connection, entities declared once, batch confirms.

Any thread may publish (tasks in a thread pool call ``delay()``); the lock makes each batch one
conversation. A batch is written in full, then the publisher confirms for all of it are awaited
together (not one round trip per message), within ``confirm_timeout``. Messages are mandatory: one
RabbitMQ cannot route (its queue was deleted behind our declare cache) comes back, its queue is
declared again and it is published once more. The connection has no heartbeats (it may idle for
hours in a web process); a stale one shows on the next publish, which reconnects and resends
the unconfirmed part once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ..exceptions import BrokerConnectionError, BrokerError, SerializationError
from . import amqp_delay as delay
from .amqp_declare import declare_queue, declare_task_queue
from .amqp_options import AmqpOptions, connect, translated

#: Messages written before their confirms are awaited (bounds what a failure may duplicate).
CHUNK = 1000
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Target:
    """Where a message goes: a task queue (``ttl`` 0), one of its delay queues (``ttl`` ms), or
    the dead letter queue (``dead``)."""

    queue: str
    ttl: int = 0
    dead: bool = False

    def route(self, dead_letter_queue: str, exchange: str) -> tuple[str, str]:
        """(exchange, routing key): Celery's exchange-per-queue for task queues (``exchange``,
        what the declaration found: ``queue``, or ``""`` when that exchange is not ours)."""
        if self.dead:
            return "", dead_letter_queue
        if self.ttl:
            return "", delay.delay_queue(self.queue, self.ttl)
        return exchange, self.queue


#: Seconds after which an unused connection may have been dropped silently on the way (NAT,
#: firewall): a confirm timeout on it is worth one more try on a new connection.
IDLE = 30.0


class _ConfirmTimeout(BrokerConnectionError):
    """No confirm in time: on a busy connection the broker is stuck, so do not resend."""


class _Confirms:
    """Publisher confirm bookkeeping of one channel (sequence numbers start at 1)."""

    def __init__(self) -> None:
        self.sent = 0
        self.floor = 1
        self.pending: set[int] = set()
        self.nacked = 0
        self.returned: list[tuple[str, str, Any]] = []

    def on_ack(self, tag: int, multiple: bool) -> None:
        if multiple:
            for seq in range(self.floor, tag + 1):
                self.pending.discard(seq)
            self.floor = max(self.floor, tag + 1)
        else:
            self.pending.discard(tag)

    def on_nack(self, tag: int, multiple: bool) -> None:
        before = len(self.pending)
        self.on_ack(tag, multiple)
        self.nacked += before - len(self.pending)

    def on_return(self, exc: Exception, exchange: str, routing_key: str, message: Any) -> None:
        self.returned.append((exchange, routing_key, message))


class Publisher:
    """The producer side of the broker; also runs the inspecting calls (size, purge, peek)."""

    def __init__(self, options: AmqpOptions) -> None:
        self.options = options
        self.lock = threading.Lock()
        self._conn: Any = None
        self._channel: Any = None
        self._declarer: Any = None  # declarations only: a refused one closes its channel
        self._confirms = _Confirms()
        self._declared: dict[Target, tuple[str, str]] = {}  # → its route
        self._used = 0.0  # when a publish last succeeded

    # -- publishing -----------------------------------------------------------------------

    def publish(self, posts: Sequence[tuple[Target, Any]]) -> None:
        """Publish (target, amqp message) pairs; return once RabbitMQ confirmed every one.

        Raises:
            BrokerConnectionError: unreachable, connection lost, or no confirm in time.
            BrokerError: RabbitMQ refused (nacked) or could not route a message.
        """
        with self.lock:
            retried = False
            for start in range(0, len(posts), CHUNK):
                chunk = posts[start:start + CHUNK]
                reused = self._conn is not None
                idle = time.monotonic() - self._used >= IDLE
                try:
                    self._publish_chunk(chunk)
                except BrokerConnectionError as exc:
                    if not reused or retried or (isinstance(exc, _ConfirmTimeout) and not idle):
                        raise
                    retried = True  # a stale connection: reconnect and send this chunk again
                    self._publish_chunk(chunk)
                self._used = time.monotonic()

    def _publish_chunk(self, posts: Sequence[tuple[Target, Any]]) -> None:
        try:
            with translated("publish"):
                channel = self._open()
                for target in {target for target, _ in posts} - self._declared.keys():
                    self._declare(target)
                self._send(channel, posts)
                returned = self._wait_confirms()
                if returned:
                    self._resend(channel, returned)
        except Exception:
            self._drop()  # also after a channel error: py-amqp reopens it without confirms
            raise

    def _send(self, channel: Any, posts: Sequence[tuple[Target, Any]]) -> None:
        from amqp import spec
        from amqp.exceptions import FrameSyntaxError

        confirms = self._confirms
        routes = self._declared
        for target, message in posts:
            exchange, routing_key = routes[target]
            try:
                channel.send_method(spec.Basic.Publish, "Bssbb",
                                    (0, exchange, routing_key, True, False), message)
            except FrameSyntaxError as exc:
                self._drop()  # part of the batch may be out; the connection state is unknown
                raise SerializationError(f"A message header cannot be sent over AMQP: {exc}") from exc
            confirms.sent += 1
            confirms.pending.add(confirms.sent)

    def _wait_confirms(self) -> list[tuple[str, str, Any]]:
        confirms = self._confirms
        deadline = time.monotonic() + self.options.confirm_timeout
        while confirms.pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _ConfirmTimeout(
                    f"RabbitMQ did not confirm {len(confirms.pending)} published message(s) "
                    f"within {self.options.confirm_timeout:g}s (confirm_timeout)")
            try:
                self._conn.drain_events(timeout=min(remaining, 1.0))
            except TimeoutError:
                continue
        nacked, confirms.nacked = confirms.nacked, 0
        if nacked:
            raise BrokerError(f"RabbitMQ refused {nacked} message(s) (basic.nack); not enqueued")
        returned, confirms.returned = confirms.returned, []
        return returned

    def _resend(self, channel: Any, returned: list[tuple[str, str, Any]]) -> None:
        """Declare the queues of unroutable messages again and publish them once more."""
        by_route = {route: t for t, route in self._declared.items()}
        posts = []
        for exchange, routing_key, message in returned:
            target = by_route.get((exchange, routing_key))
            if target is None:
                raise BrokerError(f"RabbitMQ could not route a message to {routing_key!r}")
            self._declared.pop(target, None)
            posts.append((target, message))
        for target in {target for target, _ in posts}:
            self._declare(target)
        self._send(channel, posts)
        if self._wait_confirms():
            raise BrokerError("RabbitMQ could not route messages to a queue declared just before")

    # -- the connection and declarations ---------------------------------------------------

    def _open(self) -> Any:
        if self._channel is None:
            conn = connect(self.options, heartbeat=0)
            try:
                channel = conn.channel()
                channel.auto_decode = False  # a returned message is sent again as it was
                channel.confirm_select()
                declarer = conn.channel()
            except BaseException:
                _collect(conn)
                raise
            self._confirms = confirms = _Confirms()
            channel.events["basic_ack"].add(confirms.on_ack)
            channel.events["basic_nack"].add(confirms.on_nack)
            channel.events["basic_return"].add(confirms.on_return)
            self._conn, self._channel, self._declarer = conn, channel, declarer
            self._declared.clear()
        return self._channel

    def _declare(self, target: Target) -> None:
        options, channel, exchange = self.options, self._declarer, ""
        if target.dead:
            declare_queue(channel, options.dead_letter_queue, {})
        else:
            _, exchange = declare_task_queue(channel, target.queue, options)
            if target.ttl:
                declare_queue(channel, delay.delay_queue(target.queue, target.ttl),
                              delay.delay_arguments(target.queue, target.ttl, options.quorum))
        self._declared[target] = target.route(options.dead_letter_queue, exchange)

    def _drop(self) -> None:
        conn, self._conn, self._channel, self._declarer = self._conn, None, None, None
        if conn is not None:
            _collect(conn)

    def close(self) -> None:
        """Close the connection politely (bounded by ``confirm_timeout``)."""
        with self.lock:
            conn, self._conn, self._channel, self._declarer = self._conn, None, None, None
            if conn is not None:
                _close_quietly(conn)

    # -- inspecting (another channel: a 404 closes the channel it happens on) --------------

    def counts(self, names: Sequence[str]) -> dict[str, int]:
        """Ready messages of each queue in ``names`` that exists."""
        return self._on_side_channel(lambda ch: {
            name: count for name in names if (count := _passive_count(ch, name)) is not None})

    def purge(self, names: Sequence[str]) -> int:
        """Purge every queue of ``names`` that exists; how many messages went."""
        return self._on_side_channel(lambda ch: sum(_purge(ch, name) for name in names))

    def delete(self, names: Sequence[str], exchanges: Sequence[str] = ()) -> None:
        """Delete queues and exchanges (missing ones are fine)."""
        def run(channel: Any) -> None:
            # No waiting for each reply: the channel's (synchronous) close comes after them all.
            for name in names:
                channel.queue_delete(name, nowait=True)
            for name in exchanges:
                channel.exchange_delete(name, nowait=True)
        self._on_side_channel(run)

    def peek(self, queue: str, limit: int) -> list[Any]:
        """Up to ``limit`` messages from the head of ``queue``, left where they are."""
        def run(channel: Any) -> list[Any]:
            if _passive_count(channel, queue) is None:
                return []
            got: list[Any] = []
            while len(got) < limit:
                message = channel.basic_get(queue, no_ack=False)
                if message is None:
                    break
                got.append(message)
            return got  # closing the channel puts them back, in their places
        return self._on_side_channel(run)

    def take(self, queue: str, pick: Callable[[Any], bool],
             copy: Callable[[Any], tuple[Target, Any]] | None = None) -> int:
        """Remove the messages of ``queue`` that ``pick`` accepts; returns how many.

        With ``copy``, each one's copy (a target and a message) is published first, confirmed,
        and only then are the originals acked: a failure before the acks leaves every message
        where it was; a crash between the two leaves a duplicate, never a loss. Only messages
        in the queue when this starts are looked at; the others go back when the channel closes.
        """
        def run(channel: Any) -> int:
            picked = []
            for _ in range(_passive_count(channel, queue) or 0):
                message = channel.basic_get(queue, no_ack=False)
                if message is None:
                    break
                if pick(message):
                    picked.append(message)
            if copy is not None and picked:
                posts = [copy(message) for message in picked]
                for start in range(0, len(posts), CHUNK):
                    self._publish_chunk(posts[start:start + CHUNK])  # confirmed, or raises
            for message in picked:
                channel.basic_ack(message.delivery_tag)
            return len(picked)  # the channel's (synchronous) close comes after the acks
        return int(self._on_side_channel(run))

    def _on_side_channel(self, action: Callable[[Any], T]) -> T:
        with self.lock:
            try:
                with translated("inspect"):
                    self._open()
                    channel = self._conn.channel()
                    channel.auto_decode = False
                    result = action(channel)
                    channel.close()  # after a basic_get: puts the messages back
                    return result
            except Exception:
                self._drop()
                raise


def _passive_count(channel: Any, name: str) -> int | None:
    from amqp.exceptions import NotFound

    try:
        return int(channel.queue_declare(name, passive=True).message_count)
    except NotFound:
        return None  # py-amqp reopens the channel after the server closed it


def _purge(channel: Any, name: str) -> int:
    from amqp.exceptions import NotFound

    try:
        return int(channel.queue_purge(name) or 0)
    except NotFound:
        return 0


def _close_quietly(closable: Any) -> None:
    """Close a connection or channel with the AMQP handshake; drop it if that fails."""
    try:
        closable.close()
    except Exception:  # noqa: BLE001 - already broken; the socket goes with it
        _collect(getattr(closable, "connection", None) or closable)


def _collect(conn: Any) -> None:
    """Drop a connection at once, without a closing handshake (it may be dead)."""
    try:
        conn.collect()
    except Exception:  # noqa: BLE001 - nothing left to release
        pass
