"""The Redis result backend, in Celery's layout: a Celery client reads our results and we read its.

One key per task, ``celery-task-meta-<id>``, holding the meta mapping (``status``, ``result``,
``traceback``, ``children``, ``date_done``, ``task_id``, plus ``name``, ``worker``, ``retries``
and, for extended results, ``args``, ``kwargs``, ``queue``, with the key names of Celery's
``result_extended``) encoded with RESULT_SERIALIZER, with a TTL of RESULT_EXPIRES. Every store is
also PUBLISHed on a channel of the same name, so a waiting ``get()`` wakes at once instead of
polling. With RESULT_COMPRESSION the stored bytes are compressed in Celery's format
(``result_compression``: a marker, the method, the bytes); compressed results are read whatever
the setting says here.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from typing import Any, TypeGuard

from .. import serializers, states
from ..exceptions import ResultBackendError, TimeoutError
from ..outcome import Outcome
from ..redisconn import client_from_url, connection_errors, reconnecting, translated
from ..service_url import ParsedUrl
from . import keyvalue
from .base import OnInterval, OnMessage, ResultBackend
from .meta import ResultMeta
from .redis_chords import RedisChords

KEY_PREFIX = "celery-task-meta-"
#: Celery's key of a saved GroupResult (``celery-taskset-meta-<group id>``; CELERY.md §2.3).
GROUP_KEY_PREFIX = "celery-taskset-meta-"
#: Tries of a waiting ``get()`` across a Sentinel failover (Celery's ``max_retries``).
FAILOVER_RETRIES = 20


class RedisResultBackend(RedisChords, ResultBackend):
    """Results as ``celery-task-meta-<id>`` keys with a TTL, announced by PUBLISH."""

    def __init__(self, url: ParsedUrl, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.client = client_from_url(url, "RESULT_BACKEND")
        self._local = threading.local()

    @staticmethod
    def key(task_id: str) -> str:
        """The key (and pub/sub channel) of ``task_id``'s result."""
        return f"{KEY_PREFIX}{task_id}"

    def _ttl(self) -> int | None:
        return max(1, int(self.expires)) if self.expires and self.expires > 0 else None

    # -- writing ---------------------------------------------------------------------------

    def _encode(self, outcome: Outcome) -> bytes:
        fields = {
            "status": outcome.state, "traceback": outcome.traceback, "children": [],
            "date_done": keyvalue.iso(outcome.date_done), "task_id": outcome.task_id,
            "name": outcome.task_name, "worker": outcome.worker or None,
            "retries": outcome.retries, "date_started": keyvalue.iso(outcome.date_started),
            **keyvalue.extended_fields(outcome, self.serializer),
        }
        same_json = (self.serializer == "json" and outcome.content_type == "application/json"
                     and outcome.content_encoding == "utf-8")
        if same_json:
            # Splice the already-encoded value in rather than decoding and encoding it again.
            encoded = outcome.payload if outcome.payload is not None else b"null"
            head = json.dumps({"status": fields.pop("status"), "result": None})[:-5].encode()
            return self.compress_payload(
                head + encoded + b", " + serializers.dumps(fields, "json")[0][1:])
        value = None
        if outcome.payload is not None:
            value = serializers.loads(outcome.payload, outcome.content_type,
                                      outcome.content_encoding,
                                      accept=(*self.accept, "json", self.serializer))
        return self.compress_payload(
            serializers.dumps({**fields, "result": value}, self.serializer)[0])

    @reconnecting
    def mark_pending(self, records: Sequence[tuple[str, str]]) -> None:
        pipe = self.client.pipeline(transaction=False)
        self.queue_pending(pipe, records)
        pipe.execute()

    def queue_pending(self, pipe: Any, records: Sequence[tuple[str, str]]) -> None:
        """Add the PENDING writes (``SET NX``: never over a result) to a pipeline of this server."""
        for task_id, name in records:
            meta: dict[str, Any] = {
                "status": states.PENDING, "result": None, "traceback": None, "children": [],
                "date_done": None, "task_id": task_id, "name": name}
            data = json.dumps(meta).encode() if self.serializer == "json" else \
                serializers.dumps(meta, self.serializer)[0]
            pipe.set(self.key(task_id), self.compress_payload(data), nx=True, ex=self._ttl())

    @reconnecting
    def store_many(self, outcomes: Sequence[Outcome]) -> None:
        pipe = self.client.pipeline(transaction=False)
        ttl = self._ttl()
        for outcome in outcomes:
            data = self._encode(outcome)
            pipe.set(self.key(outcome.task_id), data, ex=ttl)
            pipe.publish(self.key(outcome.task_id), data)
        pipe.execute()

    # -- reading ---------------------------------------------------------------------------

    def decode_meta(self, task_id: str, data: bytes | None) -> dict[str, Any] | None:
        """The stored meta mapping, as Celery reads it (None for a missing key)."""
        return keyvalue.decode_meta(self, task_id, data)

    #: A decoded meta mapping (ours or a Celery worker's) as a ResultMeta.
    result_meta = staticmethod(keyvalue.result_meta)

    @reconnecting
    def get(self, task_id: str) -> ResultMeta | None:
        data = self.client.get(self.key(task_id))
        return self.result_meta(task_id, self.decode_meta(task_id, data))

    def _pubsub(self) -> Any:
        """This thread's subscriber connection, kept between waits (a new connection per
        ``get()`` would cost a connect and a handshake); a forked child makes its own."""
        local = self._local
        if getattr(local, "pid", None) != os.getpid():
            local.pubsub, local.pid = self.client.pubsub(), os.getpid()
        return local.pubsub

    def wait(self, task_id: str, timeout: float | None, interval: float = 0.5, *,
             on_interval: OnInterval | None = None,
             on_message: OnMessage | None = None) -> ResultMeta:
        """Subscribe to the task's channel, then read the key; wake on the PUBLISH of the result.

        ``interval`` has no effect (nothing polls); ``on_interval`` is called after each second
        without news and each message that does not finish the task; ``on_message`` with each
        new meta mapping seen, by the first read or a PUBLISH. On a Sentinel-managed client a
        lost connection (a failover) is waited out within ``timeout``, trying again up to
        FAILOVER_RETRIES times a second or less apart, as Celery's result consumer does (its
        retry policy: 20 tries); then BrokerConnectionError.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        sentinel = getattr(self.client.connection_pool, "sentinel_manager", None)
        with translated("wait"):
            for attempt in range(FAILOVER_RETRIES if sentinel else 0):
                try:
                    return self._wait(task_id, deadline, timeout, on_interval, on_message)
                except connection_errors():
                    pause = min(1.0, 0.1 * 2 ** attempt)
                    if deadline is not None and time.monotonic() + pause >= deadline:
                        raise
                    time.sleep(pause)
            return self._wait(task_id, deadline, timeout, on_interval, on_message)

    def _wait(self, task_id: str, deadline: float | None, timeout: float | None,
              on_interval: OnInterval | None, on_message: OnMessage | None) -> ResultMeta:
        channel = self.key(task_id).encode()
        pubsub = self._pubsub()
        try:
            self._subscribe(pubsub, channel, task_id, deadline, timeout)
            watch = _Watch(self, task_id, on_message)
            meta = watch.seen(self.client.get(self.key(task_id)))
            while not _ready(meta):
                _check(deadline, timeout, task_id, meta)
                message = pubsub.get_message(timeout=_left(deadline, 1.0))
                if message is None:  # a safety net should a message be missed
                    meta = watch.seen(self.client.get(self.key(task_id)))
                elif _is(message, "message", channel):
                    meta = watch.seen(message["data"])
                if on_interval is not None and not _ready(meta):
                    on_interval()
            self._local.channel = channel  # unsubscribed by the next wait, off this one's path
            return meta
        except BaseException:
            self._local.pid = None  # in an unknown state: the next wait starts afresh
            pubsub.close()
            raise

    def _subscribe(self, pubsub: Any, channel: bytes, task_id: str, deadline: float | None,
                   timeout: float | None) -> None:
        previous = getattr(self._local, "channel", None)
        if previous is not None:
            # Left subscribed by the last wait so that returning cost no round trip.
            pubsub.unsubscribe(previous)
            self._local.channel = None
        pubsub.subscribe(channel)
        # Only once the subscription is confirmed can no store slip between read and wait.
        # Replies left over from earlier waits (other channels) are skipped.
        while not _is(pubsub.get_message(timeout=_left(deadline, 5.0)), "subscribe", channel):
            _check(deadline, timeout, task_id, None)

    @reconnecting
    def forget(self, task_id: str) -> None:
        self.client.delete(self.key(task_id))

    # -- saved groups: Celery's ``{"result": [[gid, null], [[[tid, null], null], ...]]}`` ----

    @reconnecting
    def save_group(self, group_id: str, task_ids: Sequence[str]) -> None:
        """Write the group as Celery's ``GroupResult.save`` does (its ``as_tuple()`` under
        ``result``, with the results' TTL), so a Celery client restores it too."""
        meta = {"result": [[group_id, None], [[[task_id, None], None] for task_id in task_ids]]}
        self.client.set(f"{GROUP_KEY_PREFIX}{group_id}",
                        self.compress_payload(serializers.dumps(meta, self.serializer)[0]),
                        ex=self._ttl())

    @reconnecting
    def restore_group(self, group_id: str) -> list[str] | None:
        """The member ids of a group saved by us or by Celery; a member that is itself a group
        (Celery can nest them) gives its own members, in order."""
        meta = self.decode_meta(group_id, self.client.get(f"{GROUP_KEY_PREFIX}{group_id}"))
        if meta is None:
            return None
        try:
            _, members = meta["result"]
            return [task_id for member in members for task_id in self._member_ids(member)]
        except (KeyError, TypeError, ValueError) as exc:
            raise ResultBackendError(
                f"{GROUP_KEY_PREFIX}{group_id} does not hold a saved group: {meta!r:.200}") from exc

    @classmethod
    def _member_ids(cls, member: Any) -> list[str]:
        """The ids in one of Celery's result tuples: ``[[id, parent], nodes]`` (nodes for a
        group) or, from old Celery versions, ``[id, nodes]``."""
        node, nested = member
        if nested is not None:
            return [task_id for child in nested for task_id in cls._member_ids(child)]
        task_id = node[0] if isinstance(node, (list, tuple)) else node
        if not isinstance(task_id, str) or not task_id:
            raise ValueError(f"not a task id: {task_id!r}")
        return [task_id]

    @reconnecting
    def delete_group(self, group_id: str) -> None:
        self.client.delete(f"{GROUP_KEY_PREFIX}{group_id}")

    def cleanup(self) -> int:
        """Nothing to do: Redis expires results by their TTL."""
        return 0

    def close(self) -> None:
        if getattr(self._local, "pid", None) == os.getpid():
            self._local.pubsub.close()
        self._local = threading.local()
        self.client.close()


def _is(message: dict[str, Any] | None, kind: str, channel: bytes) -> bool:
    return message is not None and message.get("type") == kind and message.get("channel") == channel


def _ready(meta: ResultMeta | None) -> TypeGuard[ResultMeta]:
    return meta is not None and meta.state in states.READY_STATES


def _left(deadline: float | None, cap: float) -> float:
    if deadline is None:
        return cap
    return max(0.0, min(cap, deadline - time.monotonic()))


def _check(deadline: float | None, timeout: float | None, task_id: str,
           meta: ResultMeta | None) -> None:
    if deadline is not None and time.monotonic() >= deadline:
        raise TimeoutError(f"Task {task_id} did not finish within {timeout} seconds "
                           f"(state {meta.state if meta else states.PENDING}).")


class _Watch:
    """The metas one wait decodes, handed to ``on_message`` when they are new."""

    def __init__(self, backend: RedisResultBackend, task_id: str,
                 on_message: OnMessage | None) -> None:
        self.backend, self.task_id, self.on_message = backend, task_id, on_message
        self.last: dict[str, Any] | None = None

    def seen(self, data: bytes | None) -> ResultMeta | None:
        meta = self.backend.decode_meta(self.task_id, data)
        if self.on_message is not None and meta is not None and meta != self.last:
            self.on_message(meta)
        self.last = meta
        return self.backend.result_meta(self.task_id, meta)
