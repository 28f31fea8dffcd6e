"""The Redis broker: Celery's list layout, with leases kept by Lua scripts.

Ready messages sit where a Celery (kombu) producer or worker expects them: one JSON message per
entry of the list named after the queue (LPUSH to enqueue, oldest at the right end), priority
lists ``<queue>\\x06\\x16<step>`` for steps 3, 6, 9. A claim pops a batch and records each message
in flight, with its lease deadline and delivery count, in one script (``redis_scripts.CLAIM``):
there is no moment when a popped message is held only by a worker. Delayed messages wait in a
sorted set and are moved to their list by the claim once due, so an ETA never meets a visibility
timeout. Idle workers block on a wake-up list the producer pushes to, so a new message is taken
at once without polling.

Priority: 9 is the highest, as on the database broker (kombu's Redis transport consumes the
``0`` list first; a Celery worker reading our queues sees the reverse order).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any

from django.utils import timezone

from ..exceptions import ConfigurationError
from ..message import Envelope
from ..redisconn import client_from_url, reconnecting
from ..service_url import ParsedUrl
from . import kombu_json
from . import redis_scripts as scripts
from .base import (
    DEFAULT_MAX_DELIVERIES,
    Broker,
    DeadLetter,
    DeadLetterStore,
    Delivery,
    QueueCounts,
    worker_lost_reason,
)

SEP = "\x06\x16"
#: kombu's default priority steps; a message of priority p goes to the highest step <= p.
PRIORITY_STEPS = (0, 3, 6, 9)
#: At most this many messages per claim (keeps the script's argument lists bounded).
MAX_CLAIM = 1000
WAKE_TOKENS = 8
#: Hex digits of a dead letter's id (see ``redis_scripts.DEAD_TAKE``).
LETTER_ID_WIDTH = 16
_REASON_HEAD, _REASON_TAIL = worker_lost_reason("{n}").split("{n}")  # type: ignore[arg-type]


def list_key(queue: str, priority: int) -> str:
    """The Redis list holding ``queue``'s ready messages of ``priority`` (kombu's naming)."""
    step = max(s for s in PRIORITY_STEPS if s <= max(0, min(priority, 9)))
    return f"{queue}{SEP}{step}" if step else queue


def to_wire(envelope: Envelope) -> str:
    """The kombu JSON message for ``envelope`` (body base64, a fresh delivery tag)."""
    return kombu_json.dumps(envelope)


def from_wire(raw: bytes | str, key: str) -> Envelope:
    """The envelope of a stored message (kombu_json.loads); ``key`` is its list's key."""
    return kombu_json.loads(raw, key.split(SEP, 1)[0])


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class RedisBroker(Broker, DeadLetterStore):
    """Messages in Redis lists, leases and delays in sorted sets, moved by Lua scripts."""

    def __init__(self, url: ParsedUrl, *, poll_interval: float = 0.5, prefix: str = "taskq",
                 now: Callable[[], datetime] = timezone.now,
                 max_deliveries: int = DEFAULT_MAX_DELIVERIES) -> None:
        self.url = url
        self.max_deliveries = max_deliveries
        self.poll_interval = poll_interval
        self.prefix = prefix
        self.now = now
        self.client = client_from_url(url, "BROKER_URL", min_timeout=poll_interval)
        self._scripts = {name: self.client.register_script(getattr(scripts, name))
                         for name in ("CLAIM", "REQUEUE", "RELEASE", "DEAD_LETTER", "RECOVER",
                                      "DEAD_TAKE", "IN_FLIGHT")}
        self._interrupted = threading.Event()
        self._bound: set[str] = set()

    def _delayed(self, queue: str) -> str:
        return f"{self.prefix}:delayed:{queue}"

    def _wake(self, queue: str) -> str:
        return f"{self.prefix}:wake:{queue}"

    # -- producing -------------------------------------------------------------------------

    @reconnecting
    def enqueue_many(self, envelopes: Sequence[Envelope]) -> None:
        pipe = self.client.pipeline(transaction=False)
        self._queue_messages(pipe, envelopes)
        pipe.execute()

    @reconnecting
    def enqueue_recording(self, envelopes: Sequence[Envelope], backend: Any,
                          records: Sequence[tuple[str, str]]) -> bool:
        from ..results.redis import RedisResultBackend

        if not (isinstance(backend, RedisResultBackend) and _same_server(self.client,
                                                                         backend.client)):
            return False
        pipe = self.client.pipeline(transaction=False)
        self._queue_messages(pipe, envelopes)
        backend.queue_pending(pipe, records)  # after the messages: see producer.send
        pipe.execute()
        return True

    def _queue_messages(self, pipe: Any, envelopes: Sequence[Envelope]) -> None:
        now_ms = _ms(self.now())
        ready: dict[str, list[str]] = {}
        counts: dict[str, int] = {}
        for envelope in envelopes:
            key = list_key(envelope.queue, envelope.priority)
            if envelope.eta is not None and _ms(envelope.eta) > now_ms:
                pipe.zadd(self._delayed(envelope.queue),
                          {f"{key}\n{to_wire(envelope)}": _ms(envelope.eta)})
            else:
                ready.setdefault(key, []).append(to_wire(envelope))
                counts[envelope.queue] = counts.get(envelope.queue, 0) + 1
        for key, wires in ready.items():
            for start in range(0, len(wires), 1000):  # one LPUSH per list, in arrival order
                pipe.lpush(key, *wires[start:start + 1000])
        for queue, count in counts.items():
            wake = self._wake(queue)
            pipe.lpush(wake, *["1"] * min(count, WAKE_TOKENS))
            pipe.ltrim(wake, 0, WAKE_TOKENS - 1)

    # -- consuming -------------------------------------------------------------------------

    @reconnecting
    def reserve(self, queues: Sequence[str], *, max_messages: int, lease: float, worker: str,
                timeout: float = 0.0) -> list[Delivery]:
        self._bind(queues)
        deadline = time.monotonic() + timeout
        self._interrupted.clear()
        while True:
            deliveries = self._claim(queues, min(max_messages, MAX_CLAIM), lease)
            remaining = deadline - time.monotonic()
            if deliveries or remaining <= 0 or self._interrupted.is_set():
                return deliveries
            # BLPOP's timeout has one-second resolution below Redis 6; 7 takes fractions.
            self.client.blpop([self._wake(q) for q in queues],
                              timeout=max(0.01, min(self.poll_interval, remaining)))

    def _claim(self, queues: Sequence[str], limit: int, lease: float) -> list[Delivery]:
        now = self.now()
        token = uuid.uuid4().hex[:12]
        lists = [list_key(q, step) for step in reversed(PRIORITY_STEPS) for q in queues]
        keys = [self._delayed(q) for q in queues] + [self._wake(q) for q in queues] + lists
        now_ms = _ms(now)
        reply = self._scripts["CLAIM"](keys=keys, args=[
            limit, token, now_ms, now_ms + int(lease * 1000), len(queues), self.prefix])
        return [Delivery(from_wire(reply[i + 3], _text(reply[i + 2])), _text(reply[i]),
                         int(reply[i + 1]), token)
                for i in range(0, len(reply), 4)]

    def _bind(self, queues: Sequence[str]) -> None:
        """Record each queue in kombu's binding table, so Celery producers can route to it."""
        new = [q for q in queues if q not in self._bound]
        if new:
            pipe = self.client.pipeline(transaction=False)
            for queue in new:
                pipe.sadd(f"_kombu.binding.{queue}", f"{queue}{SEP}{SEP}{queue}")
            pipe.execute()
            self._bound.update(new)

    def interrupt(self) -> None:
        self._interrupted.set()

    # -- settling --------------------------------------------------------------------------

    @reconnecting
    def ack_many(self, deliveries: Sequence[Delivery]) -> None:
        if deliveries:
            # Tags are unique per lease: deleting a stale holder's tag touches nothing.
            tags = [d.tag for d in deliveries]
            pipe = self.client.pipeline(transaction=True)
            pipe.hdel(f"{self.prefix}:inflight", *tags)
            pipe.zrem(f"{self.prefix}:leases", *tags)
            pipe.execute()

    @reconnecting
    def requeue(self, delivery: Delivery, eta: datetime | None = None) -> None:
        self._put_back(delivery, eta, undo=False)

    @reconnecting
    def defer(self, delivery: Delivery, eta: datetime) -> None:
        self._put_back(delivery, eta, undo=True)

    def _put_back(self, delivery: Delivery, eta: datetime | None, undo: bool) -> None:
        due = "" if eta is None or eta <= self.now() else str(_ms(eta))
        self._scripts["REQUEUE"](keys=[self._delayed(delivery.envelope.queue)],
                                 args=[self.prefix, delivery.tag, due, "1" if undo else "0"])
        if not due:
            self.client.lpush(self._wake(delivery.envelope.queue), "1")

    @reconnecting
    def release(self, deliveries: Sequence[Delivery]) -> None:
        if deliveries:
            self._scripts["RELEASE"](args=[self.prefix, *(d.tag for d in reversed(deliveries))])

    @reconnecting
    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        self._scripts["DEAD_LETTER"](args=[self.prefix, delivery.tag, reason,
                                           self.now().timestamp()])

    @reconnecting
    def extend_leases(self, deliveries: Sequence[Delivery], lease: float) -> None:
        if deliveries:
            deadline = _ms(self.now()) + int(lease * 1000)
            # XX: only leases still held; a lease recovered meanwhile is not brought back.
            self.client.zadd(f"{self.prefix}:leases", {d.tag: deadline for d in deliveries},
                             xx=True)

    @reconnecting
    def recover(self) -> list[DeadLetter]:
        now = self.now()
        reply = self._scripts["RECOVER"](args=[
            self.prefix, _ms(now), self.max_deliveries, _REASON_HEAD, _REASON_TAIL, now.timestamp()])
        return [DeadLetter(from_wire(reply[i + 2], _text(reply[i + 1])),
                           worker_lost_reason(int(reply[i])), int(reply[i]))
                for i in range(0, len(reply), 3)]

    # -- inspecting ------------------------------------------------------------------------

    def _lists(self, queue: str) -> list[str]:
        return [list_key(queue, step) for step in PRIORITY_STEPS]

    @reconnecting
    def purge(self, queue: str) -> int:
        pipe = self.client.pipeline(transaction=True)
        for key in self._lists(queue):
            pipe.llen(key)
        pipe.zcard(self._delayed(queue))
        pipe.delete(*self._lists(queue), self._delayed(queue))
        return int(sum(pipe.execute()[:-1]))

    @reconnecting
    def size(self, queue: str) -> int:
        pipe = self.client.pipeline(transaction=False)
        for key in self._lists(queue):
            pipe.llen(key)
        pipe.zcard(self._delayed(queue))
        return int(sum(pipe.execute()))

    @reconnecting
    def queue_counts(self, queues: Sequence[str]) -> dict[str, QueueCounts]:
        """One pipeline. Scheduled: delayed entries not yet due (due ones wait for the next
        claim to move them). In flight: counted in Lua from the list key each record names."""
        names = list(dict.fromkeys(queues))
        now_ms = _ms(self.now())
        pipe = self.client.pipeline(transaction=False)
        for queue in names:
            for key in self._lists(queue):
                pipe.llen(key)
            pipe.zcard(self._delayed(queue))
            pipe.zcount(self._delayed(queue), f"({now_ms}", "+inf")
        self._scripts["IN_FLIGHT"](keys=[f"{self.prefix}:inflight"], args=[SEP, *names],
                                   client=pipe)
        *numbers, in_flight = pipe.execute()
        step = len(PRIORITY_STEPS) + 2  # the lists, the delayed set, its not-yet-due part
        return {queue: QueueCounts(int(sum(numbers[i * step:(i + 1) * step - 1])),
                                   int(numbers[(i + 1) * step - 1]), int(in_flight[i]))
                for i, queue in enumerate(names)}

    # -- dead letters ------------------------------------------------------------------------

    @reconnecting
    def dead_letter_list(self, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        if limit <= 0:
            return []
        entries = self.client.lrange(f"{self.prefix}:dead", offset, offset + limit - 1)
        return [_dead_letter(entry) for entry in entries]

    @reconnecting
    def dead_letter_count(self) -> int:
        return int(self.client.llen(f"{self.prefix}:dead"))

    @reconnecting
    def dead_letter_get(self, letter_id: str) -> DeadLetter | None:
        if not _is_letter_id(letter_id):
            return None
        for entry in self.client.lrange(f"{self.prefix}:dead", 0, -1):
            if _letter_id(entry) == letter_id:
                return _dead_letter(entry)
        return None

    @reconnecting
    def dead_letter_requeue(self, letter_ids: Sequence[str] | None = None) -> int:
        """One script: each message goes back to its list and its dead letter goes."""
        return self._dead_take("requeue", letter_ids)

    @reconnecting
    def dead_letter_purge(self, letter_ids: Sequence[str] | None = None) -> int:
        return self._dead_take("purge", letter_ids)

    def _dead_take(self, mode: str, letter_ids: Sequence[str] | None) -> int:
        ids = [] if letter_ids is None else [i for i in letter_ids if _is_letter_id(i)]
        if letter_ids is not None and not ids:
            return 0  # no ids at all must not mean "every dead letter"
        return int(self._scripts["DEAD_TAKE"](args=[self.prefix, mode, LETTER_ID_WIDTH, *ids]))

    def close(self) -> None:
        self.client.close()


def _same_server(one: Any, other: Any) -> bool:
    """Whether two redis-py clients talk to the same server and database as the same user."""
    keys = ("host", "port", "path", "db", "username", "password")
    a, b = one.connection_pool.connection_kwargs, other.connection_pool.connection_kwargs
    return all(a.get(k) == b.get(k) for k in keys) and \
        one.connection_pool.connection_class is other.connection_pool.connection_class and \
        _sentinels(one) == _sentinels(other)


def _sentinels(client: Any) -> tuple[str, frozenset[tuple[Any, Any]]] | None:
    """A Sentinel-managed client's master name and sentinels (its pool has no host or port)."""
    manager = getattr(client.connection_pool, "sentinel_manager", None)
    if manager is None:
        return None
    return client.connection_pool.service_name, frozenset(
        (node.connection_pool.connection_kwargs.get("host"),
         node.connection_pool.connection_kwargs.get("port")) for node in manager.sentinels)


def _letter_id(entry: bytes | str) -> str:
    """A dead letter's id: the head of the SHA-1 of its entry (``DEAD_TAKE`` computes the same)."""
    data = entry.encode("utf-8") if isinstance(entry, str) else entry
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()[:LETTER_ID_WIDTH]


def _is_letter_id(text: str) -> bool:
    return len(text) == LETTER_ID_WIDTH and all(c in "0123456789abcdef" for c in text)


def _dead_letter(entry: bytes | str) -> DeadLetter:
    record = json.loads(entry)
    died = record.get("time")
    return DeadLetter(from_wire(record["message"], record["list"]), record["reason"],
                      int(record["attempts"]), id=_letter_id(entry),
                      dead_at=datetime.fromtimestamp(died, dt_timezone.utc) if died is not None else None)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def from_url(url: ParsedUrl, poll_interval: float,
             max_deliveries: int = DEFAULT_MAX_DELIVERIES) -> RedisBroker:
    """The broker for a ``redis://``, ``rediss://`` or ``sentinel://`` URL (``?prefix=`` renames our keys)."""
    prefix = url.options.get("prefix", "taskq")
    if not prefix or "\n" in prefix:
        raise ConfigurationError(f"BROKER_URL {url.masked!r}: prefix must be a non-empty name.")
    return RedisBroker(url, poll_interval=poll_interval, prefix=prefix,
                       max_deliveries=max_deliveries)


__all__ = ["RedisBroker", "from_url", "list_key", "to_wire", "from_wire"]
