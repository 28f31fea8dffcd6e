"""Chord counting in Redis, in the keys of Celery's Redis result backend.

For chord ``<gid>`` Celery keeps ``celery-taskset-meta-<gid>.s`` (the header's size, set before
the header is sent), ``.t`` (a size adjustment) and ``.j`` (a sorted set of the finished header
tasks, ``[1, task_id, state, result]`` encoded with the result serializer, scored by the task's
index in the header). A chord a Celery client sends therefore completes on our worker, and ours
on Celery's.

Unlike Celery's pipeline, one Lua script records a header task and decides, atomically:

- a task already recorded at its index (redelivered after its worker died) is not counted twice
  (Celery would count it again and start the body early);
- the task that completes the count claims the chord in ``.c`` with its own task id; only a
  call for that same task (its redelivery, when its worker died before starting the body) may
  complete it again, and ``chord_sent`` closes it for good.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from .. import serializers
from ..outcome import Outcome
from ..redisconn import reconnecting
from .meta import PartResult

GROUP_KEY_PREFIX = "celery-taskset-meta-"
SENT = "sent"

#: KEYS: .j .t .s .c — ARGV: the encoded part, its index ('+inf' when unknown), its task id,
#: the TTL in seconds (0: none). Returns the encoded parts in index order when this call
#: completes the chord, else nil.
ADD_PART = """
local index = ARGV[2]
if index == '+inf' or redis.call('ZCOUNT', KEYS[1], index, index) == 0 then
  redis.call('ZADD', KEYS[1], index, ARGV[1])
end
local ttl = tonumber(ARGV[4])
if ttl > 0 then
  redis.call('EXPIRE', KEYS[1], ttl)
end
local size = redis.call('GET', KEYS[3])
if not size then
  return nil
end
local total = tonumber(size) + tonumber(redis.call('GET', KEYS[2]) or '0')
if redis.call('ZCARD', KEYS[1]) < total then
  return nil
end
local owner = redis.call('GET', KEYS[4])
if owner and owner ~= ARGV[3] then
  return nil
end
if ttl > 0 then
  redis.call('SET', KEYS[4], ARGV[3], 'EX', ttl)
else
  redis.call('SET', KEYS[4], ARGV[3])
end
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""


def chord_key(group_id: str, suffix: str) -> str:
    """Celery's ``get_key_for_group``: ``celery-taskset-meta-<gid><suffix>``."""
    return f"{GROUP_KEY_PREFIX}{group_id}{suffix}"


class RedisChords:
    """The chord methods of the Redis result backend (mixed into it)."""

    client: Any
    serializer: str
    accept: tuple[str, ...]

    def _ttl(self) -> int | None:
        raise NotImplementedError

    @reconnecting
    def set_chord_size(self, group_id: str, size: int) -> None:
        self.client.set(chord_key(group_id, ".s"), size, ex=self._ttl())

    @reconnecting
    def add_chord_part(self, group_id: str, index: int | None,
                       outcome: Outcome) -> list[PartResult] | None:
        return self.add_chord_parts([(group_id, index, outcome)])[0]

    @reconnecting
    def add_chord_parts(self, parts: Sequence[tuple[str, int | None, Outcome]]
                        ) -> list[list[PartResult] | None]:
        script = getattr(self, "_add_part", None)
        if script is None:
            script = self._add_part = self.client.register_script(ADD_PART)
        pipe = self.client.pipeline(transaction=False)
        ttl = self._ttl() or 0
        for group_id, index, outcome in parts:
            keys = [chord_key(group_id, suffix) for suffix in (".j", ".t", ".s", ".c")]
            script(keys=keys, args=[self._part(outcome), "+inf" if index is None else index,
                                    outcome.task_id, ttl], client=pipe)
        return [None if found is None else self._parts(found) for found in pipe.execute()]

    def _part(self, outcome: Outcome) -> bytes:
        """Celery's ``[1, task_id, state, result]``, encoded with the result serializer."""
        if self.serializer == "json" and outcome.content_type == "application/json" \
                and outcome.content_encoding == "utf-8" and outcome.payload is not None:
            # Splice the already-encoded value in rather than decoding and encoding it again.
            head = json.dumps([1, outcome.task_id, outcome.state])[:-1].encode()
            return head + b", " + outcome.payload + b"]"
        value = None
        if outcome.payload is not None:
            value = serializers.loads(outcome.payload, outcome.content_type,
                                      outcome.content_encoding,
                                      accept=(*self.accept, "json", self.serializer))
        return serializers.dumps([1, outcome.task_id, outcome.state, value], self.serializer)[0]

    def _parts(self, found: list[bytes]) -> list[PartResult]:
        codec = serializers.get(self.serializer)
        parts = []
        for item in found:
            _, task_id, state, result = serializers.loads(
                item, codec.content_type, codec.content_encoding, accept=(self.serializer,))
            parts.append(PartResult(task_id, state, result))
        return parts

    @reconnecting
    def chord_sent(self, group_id: str) -> None:
        pipe = self.client.pipeline()
        pipe.set(chord_key(group_id, ".c"), SENT, ex=self._ttl())
        pipe.delete(*(chord_key(group_id, suffix) for suffix in (".j", ".t", ".s")))
        pipe.execute()
