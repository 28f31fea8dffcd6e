"""The caller's side of rpc:// results: one reply queue per process, read into a buffer.

The queue is named by the process's oid, declared as Celery's RPC backend declares its own
(durable, auto-delete, ``x-expires`` = RESULT_EXPIRES) on the broker's default exchange, and
consumed (no ack: a reply is read once) from the moment it is declared, so RabbitMQ deletes it
when this process goes away. Every reply read, whatever its task, lands in a buffer of the
latest state per task id (a final state is never replaced by an intermediate one arriving late:
STARTED may be published from another connection than SUCCESS), so that results of tasks not
waited for yet are kept for a later ``get()``; the buffer holds BUFFER_MAX tasks, the oldest
dropped first.

One connection per process, shared by its threads under a lock.
"""

from __future__ import annotations

import contextlib
import logging
import select
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from .. import serializers, states
from ..brokers.amqp_options import AmqpOptions, connect, connection_errors, disconnect
from ..exceptions import BrokerConnectionError, ResultBackendConnectionError, TaskqError
from ..service_url import mask_text

logger = logging.getLogger(__name__)

#: Tasks whose latest state is kept (Celery's RPC client buffers 8192 messages).
BUFFER_MAX = 8192
#: Seconds one thread drains the connection before another waiting thread gets its turn.
TURN = 0.25
#: Seconds a send spends at most buffering the replies that already arrived (``poll``).
POLL = 0.02


@contextlib.contextmanager
def translated(what: str) -> Iterator[None]:
    """Connection failures as ResultBackendConnectionError naming ``what``."""
    try:
        yield
    except BrokerConnectionError as exc:  # from connect()
        raise ResultBackendConnectionError(f"rpc:// result backend: {exc}") from exc
    except connection_errors() as exc:
        detail = "no answer in time" if isinstance(exc, TimeoutError) else mask_text(str(exc))
        raise ResultBackendConnectionError(
            f"rpc:// result backend: RabbitMQ unreachable or connection lost ({what}): "
            f"{type(exc).__name__}: {detail}") from exc


class ReplyQueue:
    """This process's reply queue and the latest state read from it per task id."""

    def __init__(self, options: AmqpOptions, name: str, *, expires: float,
                 accept: tuple[str, ...]) -> None:
        self.options, self.name, self.expires, self.accept = options, name, expires, accept
        self.lock = threading.Lock()
        self._conn: Any = None
        self._channel: Any = None
        self._metas: OrderedDict[str, dict[str, Any]] = OrderedDict()
        #: Why a reply could not be read, per task id (a serializer not accepted here).
        self._refused: OrderedDict[str, TaskqError] = OrderedDict()
        self._guard = threading.Lock()  # the buffer (the lock above is the connection's)

    def arguments(self) -> dict[str, Any]:
        """The queue arguments (Celery's: ``x-expires`` of the result expiry, in ms)."""
        return {"x-expires": int(self.expires * 1000)} if self.expires > 0 else {}

    def open(self) -> None:
        """Declare the queue and start reading it, unless done already (the lock held)."""
        if self._channel is not None:
            return
        with translated("declare the reply queue"):
            conn = connect(self.options, heartbeat=0)
            try:
                channel = conn.channel()
                channel.auto_decode = False
                channel.queue_declare(self.name, durable=True, auto_delete=True,
                                      arguments=self.arguments())
                channel.basic_consume(self.name, no_ack=True, callback=self._on_message)
            except BaseException:
                conn.collect()
                raise
        self._conn, self._channel = conn, channel

    def declare(self) -> None:
        """``open()``, taking the lock; a failure leaves nothing half open. Once open, at once:
        every send asks, and a thread waiting for replies holds the lock up to TURN seconds."""
        if self._channel is not None:
            return
        with self.lock, self._reconnecting("declare the reply queue"):
            self.open()

    def drop(self) -> None:
        """Forget the connection (the lock held); the next use opens a new one."""
        conn, self._conn, self._channel = self._conn, None, None
        if conn is not None:
            disconnect(conn)

    # -- reading ---------------------------------------------------------------------------

    def sync(self) -> None:
        """Read every reply already in the queue: ``basic.get`` until it is empty (its answer
        comes after any delivery sent before it, so nothing confirmed is missed)."""
        with self.lock, self._reconnecting("read the reply queue"):
            self.open()
            while True:
                message = self._channel.basic_get(self.name, no_ack=True)
                if message is None:
                    return
                self._on_message(message)

    def pump(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds (at most TURN) for replies and buffer them."""
        if not self.lock.acquire(timeout=max(timeout, 0.0)):
            return  # another thread read meanwhile: the caller looks at the buffer again
        try:
            with self._reconnecting("wait for replies"):
                self.open()
                try:
                    self._conn.drain_events(timeout=max(min(timeout, TURN), 0.001))
                except TimeoutError:
                    pass
        finally:
            self.lock.release()

    def poll(self) -> None:
        """Buffer the replies already arrived, without waiting, unless another thread reads.

        Each send calls it, so a process that sends and never reads (beat, a web process not
        calling ``get()``) keeps its queue short: RabbitMQ would hold every unread reply for as
        long as the process lives (it consumes the queue, which therefore never expires), where
        here the buffer keeps the latest BUFFER_MAX. A failure drops the connection (the next
        send declares the queue again) and is not the send's."""
        if not self.lock.acquire(blocking=False):
            return
        try:
            deadline = time.monotonic() + POLL
            while self._channel is not None and time.monotonic() < deadline \
                    and select.select([self._conn.transport.sock], [], [], 0)[0]:
                try:
                    self._conn.drain_events(timeout=POLL)
                except TimeoutError:
                    return
        except Exception as exc:  # noqa: BLE001 - a lost connection: reopened by the next send
            logger.warning("rpc:// reply connection lost while buffering replies (%s)",
                           mask_text(str(exc)))
            self.drop()
        finally:
            self.lock.release()

    @contextlib.contextmanager
    def _reconnecting(self, what: str) -> Iterator[None]:
        try:
            with translated(what):
                yield
        except ResultBackendConnectionError:
            self.drop()  # the queue went with the connection (auto-delete): a new one next
            raise

    def latest(self, task_id: str) -> dict[str, Any] | None:
        """The latest state read for ``task_id`` (a meta mapping), or None."""
        with self._guard:
            return self._metas.get(task_id)

    def record(self, task_id: str, meta: dict[str, Any], *, only_new: bool = False) -> None:
        """Keep ``meta`` as the latest of ``task_id`` unless a final state is known already
        (or, ``only_new``, anything is)."""
        with self._guard:
            known = self._metas.get(task_id)
            if known is not None and (only_new or (
                    known.get("status") in states.READY_STATES
                    and meta.get("status") not in states.READY_STATES)):
                return
            self._metas[task_id] = meta
            self._metas.move_to_end(task_id)
            while len(self._metas) > BUFFER_MAX:
                self._metas.popitem(last=False)

    def pending(self, task_id: str, name: str) -> None:
        """Record that this process sent ``task_id`` (PENDING until a reply says more)."""
        meta: dict[str, Any] = {"status": states.PENDING, "result": None, "traceback": None, "children": [],
                "date_done": None, "task_id": task_id, "name": name}
        self.record(task_id, meta, only_new=True)

    def forget(self, task_id: str) -> None:
        """Drop what is buffered of ``task_id``."""
        with self._guard:
            self._metas.pop(task_id, None)

    def _on_message(self, message: Any) -> None:
        properties = message.properties
        try:
            meta = serializers.loads(
                bytes(message.body), str(properties.get("content_type") or "application/json"),
                str(properties.get("content_encoding") or "utf-8"), self.accept)
        except TaskqError as exc:
            logger.warning("dropped a reply on %s that cannot be decoded: %s", self.name, exc)
            self._refuse(properties.get("correlation_id"), exc)
            return
        task_id = meta.get("task_id") if isinstance(meta, dict) else None
        task_id = task_id or properties.get("correlation_id")
        if not isinstance(meta, dict) or not isinstance(task_id, str) or "status" not in meta:
            logger.warning("dropped a reply on %s that is not a result: %.100r", self.name, meta)
            return
        self.record(task_id, {**meta, "task_id": task_id})

    def _refuse(self, task_id: Any, exc: TaskqError) -> None:
        if isinstance(task_id, str) and task_id:
            with self._guard:
                self._refused[task_id] = exc
                while len(self._refused) > BUFFER_MAX:
                    self._refused.popitem(last=False)

    def refused(self, task_id: str) -> TaskqError | None:
        """Why the reply for ``task_id`` could not be read (then ``get()`` raises it, as
        Celery's raises ContentDisallowed), or None."""
        with self._guard:
            return self._refused.get(task_id)

    def close(self) -> None:
        """Close the connection: RabbitMQ deletes the queue (auto-delete)."""
        with self.lock:
            self.drop()


def left(deadline: float | None, cap: float) -> float:
    """Seconds to wait: up to ``cap``, no further than ``deadline``."""
    if deadline is None:
        return cap
    return max(0.0, min(cap, deadline - time.monotonic()))
