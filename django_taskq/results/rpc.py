"""The RPC result backend (``rpc://``), as Celery's: results travel back as AMQP messages.

A process that sends a task with results on rpc:// gives it its reply queue's name in the
``reply_to`` property (and the task id in ``correlation_id``); the worker publishes each state it
stores (STARTED, RETRY, custom states, then SUCCESS/FAILURE/REVOKED) to that queue through the
broker's default exchange: the meta mapping Celery's backends store (``status``, ``result``,
``traceback``, ``children``, ``date_done``, ``task_id``, plus ``name``, ``worker``, ``retries``,
``date_started`` and the extended fields), encoded with RESULT_SERIALIZER, ``delivery_mode`` 1
unless RESULT_PERSISTENT (Celery's ``result_persistent``). A message without ``reply_to`` gets no
reply. The caller reads its queue (rpc_replies.py). Nothing is stored anywhere else, hence what
rpc:// cannot do, as Celery's cannot: a result is known only to the process that sent the task
(elsewhere it stays PENDING), nothing is kept after that process goes away, no chords, no saved
groups, nothing for ``cleanup()`` to delete. The connection is BROKER_URL's, which must be AMQP.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from .. import serializers, states
from ..brokers.amqp_options import AmqpOptions, connect, disconnect
from ..exceptions import (
    ConfigurationError,
    ResultBackendConnectionError,
    ResultBackendError,
    SerializationError,
)
from ..outcome import Outcome
from ..service_url import ParsedUrl
from . import keyvalue
from .base import OnInterval, OnMessage, ResultBackend
from .meta import PartResult, ResultMeta
from .rpc_replies import ReplyQueue, left, translated

logger = logging.getLogger(__name__)

#: What rpc:// cannot do, and which store can.
NO_CHORDS = ("RESULT_BACKEND 'rpc://' cannot run chords (nor a group followed by a task, "
             "which is a chord): results are messages to one process, nothing counts the "
             "finished header tasks. Use a result store every worker can reach: "
             "RESULT_BACKEND = 'redis://...' or 'db://default'.")
NO_GROUPS = ("RESULT_BACKEND 'rpc://' cannot save groups (GroupResult.save/restore/delete): "
             "results are messages to one process, nothing is stored. Use "
             "RESULT_BACKEND = 'redis://...' or 'db://default'.")
#: Replies published before waiting for their confirms.
CHUNK = 500


class RpcResultBackend(ResultBackend):
    """Results as messages to the sending process's reply queue on RabbitMQ."""

    def __init__(self, options: AmqpOptions, *, persistent: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.options = options
        self.persistent = persistent
        self.oid = str(uuid.uuid4())  # this process's reply queue (a forked child: its own)
        self.replies = ReplyQueue(options, self.oid, expires=self.expires, accept=self.accept)
        self._sender = _Sender(options)

    def reply_address(self) -> str:
        """This process's reply queue, declared and read from now on (the replies already
        arrived are buffered: the queue stays short even when nobody calls ``get()``)."""
        self.replies.poll()
        self.replies.declare()
        return self.oid

    # -- the worker's side -----------------------------------------------------------------

    def store_many(self, outcomes: Sequence[Outcome]) -> None:
        """Publish each outcome to the reply queue its message named (none: nothing sent)."""
        posts = [(o.reply_to, o.correlation_id or o.task_id, self._encode(o))
                 for o in outcomes if o.reply_to]
        for start in range(0, len(posts), CHUNK):
            self._sender.publish(posts[start:start + CHUNK], 2 if self.persistent else 1)

    def _encode(self, outcome: Outcome) -> tuple[bytes, str, str]:
        value = None
        if outcome.payload is not None:
            value = serializers.loads(outcome.payload, outcome.content_type,
                                      outcome.content_encoding,
                                      accept=(*self.accept, "json", self.serializer))
        ready = outcome.state in states.READY_STATES
        meta = {"status": outcome.state, "result": value, "traceback": outcome.traceback,
                "children": [], "date_done": keyvalue.iso(outcome.date_done) if ready else None,
                "task_id": outcome.task_id, "name": outcome.task_name,
                "worker": outcome.worker or None, "retries": outcome.retries,
                "date_started": keyvalue.iso(outcome.date_started),
                **keyvalue.extended_fields(outcome, self.serializer)}
        try:
            return serializers.dumps(meta, self.serializer)
        except SerializationError as exc:
            raise ResultBackendError(f"the result of {outcome.task_id} cannot be sent: {exc}") \
                from exc

    # -- the caller's side -----------------------------------------------------------------

    def mark_pending(self, records: Sequence[tuple[str, str]]) -> None:
        """Known here as PENDING (nothing is sent: no other process could read it)."""
        for task_id, name in records:
            self.replies.pending(task_id, name)

    def get(self, task_id: str) -> ResultMeta | None:
        """The latest state a reply brought for ``task_id``; None for a task this process did
        not send (its replies go to its sender)."""
        self.replies.accept = self.accept
        self.replies.sync()
        self._raise_refused(task_id)
        return keyvalue.result_meta(task_id, self.replies.latest(task_id))

    def _raise_refused(self, task_id: str) -> None:
        """Raise why ``task_id``'s reply could not be read, unless a readable one came too."""
        refused = self.replies.refused(task_id)
        meta = self.replies.latest(task_id)
        if refused is not None and (meta is None or meta.get("status") not in states.READY_STATES):
            raise refused

    def wait(self, task_id: str, timeout: float | None, interval: float = 0.5, *,
             on_interval: OnInterval | None = None,
             on_message: OnMessage | None = None) -> ResultMeta:
        """Read the reply queue until ``task_id`` is ready (``interval`` has no effect: replies
        are pushed). ``on_interval`` runs after each wait without the final state."""
        deadline = None if timeout is None else _now() + timeout
        self.replies.accept = self.accept
        lost = self._tolerant(self.replies.sync, False)
        seen: dict[str, Any] | None = None
        while True:
            self._raise_refused(task_id)
            meta = self.replies.latest(task_id)
            if on_message is not None and meta is not None and meta is not seen:
                on_message(meta)
            seen = meta
            if meta is not None and meta.get("status") in states.READY_STATES:
                found = keyvalue.result_meta(task_id, meta)
                assert found is not None
                return found
            if deadline is not None and _now() >= deadline:
                from ..exceptions import TimeoutError

                state = meta.get("status") if meta else states.PENDING
                raise TimeoutError(f"Task {task_id} did not finish within {timeout} seconds "
                                   f"(state {state}).")
            lost = self._tolerant(lambda: self.replies.pump(left(deadline, 1.0)), lost)
            if on_interval is not None:
                on_interval()

    def _tolerant(self, read: Callable[[], None], lost: bool) -> bool:
        """``read()``; a lost connection is opened again once per wait (the queue is declared
        anew: replies sent meanwhile are gone, later ones arrive). Returns whether that once
        is used up."""
        try:
            read()
        except ResultBackendConnectionError as exc:
            if lost:
                raise
            logger.warning("rpc:// reply connection lost (%s); reconnecting", exc)
            self.replies.sync()
            return True
        return lost

    def forget(self, task_id: str) -> None:
        """Drop what this process holds of ``task_id`` (nothing is stored elsewhere)."""
        self.replies.forget(task_id)

    def cleanup(self) -> int:
        """Nothing to delete: replies are messages; unread ones go with their queue."""
        return 0

    def close(self) -> None:
        self.replies.close()
        self._sender.close()

    # -- what rpc:// cannot do -------------------------------------------------------------

    def save_group(self, group_id: str, task_ids: Sequence[str]) -> None:
        raise NotImplementedError(NO_GROUPS)

    def restore_group(self, group_id: str) -> list[str] | None:
        raise NotImplementedError(NO_GROUPS)

    def delete_group(self, group_id: str) -> None:
        raise NotImplementedError(NO_GROUPS)

    def set_chord_size(self, group_id: str, size: int) -> None:
        raise NotImplementedError(NO_CHORDS)

    def add_chord_part(self, group_id: str, index: int | None,
                       outcome: Outcome) -> list[PartResult] | None:
        raise NotImplementedError(NO_CHORDS)

    def chord_sent(self, group_id: str) -> None:
        raise NotImplementedError(NO_CHORDS)


class _Sender:
    """The worker's publishing connection, with publisher confirms."""

    def __init__(self, options: AmqpOptions) -> None:
        self.options = options
        self.lock = threading.Lock()
        self._conn: Any = None
        self._channel: Any = None

    def publish(self, posts: Sequence[tuple[str, str, tuple[bytes, str, str]]],
                delivery_mode: int) -> None:
        """Publish ``(reply_to, correlation_id, (body, type, encoding))``; return once RabbitMQ
        confirmed them (a reply to a queue gone is dropped by RabbitMQ: its caller left)."""
        with self.lock:
            for attempt in (1, 2):
                reused = self._conn is not None
                try:
                    with translated("publish results"):
                        self._send(posts, delivery_mode)
                    return
                except ResultBackendConnectionError:
                    self._drop()
                    if attempt == 2 or not reused:  # a stale connection is tried once more
                        raise

    def _send(self, posts: Sequence[tuple[str, str, tuple[bytes, str, str]]],
              delivery_mode: int) -> None:
        from amqp import Message

        channel = self._open()
        for reply_to, correlation_id, (body, content_type, encoding) in posts:
            message = Message(body, content_type=content_type, content_encoding=encoding,
                              correlation_id=correlation_id, delivery_mode=delivery_mode)
            channel.basic_publish(message, exchange="", routing_key=reply_to)
            channel.confirms.published()
        self._confirm(channel)

    def _confirm(self, channel: Any) -> None:
        """Wait for RabbitMQ's confirms of everything published (``confirm_timeout``)."""
        deadline = _now() + self.options.confirm_timeout
        while channel.confirms.pending:
            if _now() >= deadline:
                raise TimeoutError("no publisher confirm within confirm_timeout")
            try:
                self._conn.drain_events(timeout=max(deadline - _now(), 0.001))
            except TimeoutError:
                continue
        if channel.confirms.nacked:
            channel.confirms.nacked = 0
            raise ResultBackendError("RabbitMQ refused (basic.nack) result messages")

    def _open(self) -> Any:
        if self._channel is None:
            conn = connect(self.options, heartbeat=0)
            try:
                channel = conn.channel()
                channel.confirm_select()
            except BaseException:
                conn.collect()
                raise
            channel.confirms = _Confirms()
            channel.events["basic_ack"].add(channel.confirms.on_ack)
            channel.events["basic_nack"].add(channel.confirms.on_nack)
            self._conn, self._channel = conn, channel
        return self._channel

    def _drop(self) -> None:
        conn, self._conn, self._channel = self._conn, None, None
        if conn is not None:
            conn.collect()

    def close(self) -> None:
        with self.lock:
            conn, self._conn, self._channel = self._conn, None, None
            disconnect(conn)


class _Confirms:
    """Delivery tags published and not confirmed yet, on one confirming channel (py-amqp
    numbers them from 1)."""

    def __init__(self) -> None:
        self.sent = 0
        self.waiting: set[int] = set()
        self.nacked = 0

    @property
    def pending(self) -> bool:
        return bool(self.waiting)

    def published(self) -> None:
        self.sent += 1
        self.waiting.add(self.sent)

    def on_ack(self, tag: int, multiple: bool) -> None:
        if multiple:
            self.waiting = {t for t in self.waiting if t > tag}
        else:
            self.waiting.discard(tag)

    def on_nack(self, tag: int, multiple: bool) -> None:
        self.nacked += 1
        self.on_ack(tag, multiple)



def _now() -> float:
    import time

    return time.monotonic()


def rpc_backend(url: ParsedUrl, **common: Any) -> RpcResultBackend:
    """The backend for RESULT_BACKEND ``rpc://``: on BROKER_URL's connection, as Celery's.

    Raises:
        ConfigurationError: the URL names a server, or the broker is not RabbitMQ.
    """
    from ..brokers import broker_from_url
    from ..brokers.amqp import AmqpBroker
    from ..conf import get_settings
    from ..service_url import mask

    if url.host or url.rest or url.options:
        raise ConfigurationError(
            f"RESULT_BACKEND {url.masked!r}: rpc:// takes no server or options; it uses "
            "BROKER_URL's connection. Write RESULT_BACKEND = 'rpc://'.")
    settings = get_settings()
    broker = broker_from_url(settings.BROKER_URL)  # only read: never connected
    broker.close()
    if not isinstance(broker, AmqpBroker):
        raise ConfigurationError(
            "RESULT_BACKEND 'rpc://' sends results back as AMQP messages through the broker, "
            f"but BROKER_URL is {mask(settings.BROKER_URL)!r}: use RabbitMQ "
            "(BROKER_URL = 'amqp://...'), or a result store this broker can work with "
            "(RESULT_BACKEND = 'redis://...' or 'db://default').")
    # The broker's own options: its TLS settings and timeouts hold for the replies too.
    return RpcResultBackend(broker.options, persistent=settings.RESULT_PERSISTENT, **common)
