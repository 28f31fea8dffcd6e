"""Chord counting in Redis, in the keys of Celery 5.7's Redis result backend.

For chord ``<gid>`` Celery keeps, under ``celery-taskset-meta-<gid>``: ``.s`` (the header's size,
set before the header is sent), ``.t`` (a size adjustment), ``.j`` (a sorted set of the finished
header tasks, ``[1, task_id, state, result]`` encoded with the result serializer, scored by the
task's index in the header), ``.d`` (the ``<task_id>:<index>`` already counted) and ``.c`` (the
claim of the body's dispatch; ``done`` once the body is sent). A chord a Celery client sends
therefore completes on our worker, ours on Celery's, and workers of both kinds may share one.

One Lua script records a header task and decides, atomically:

- a task already in ``.d`` (redelivered after its worker died) is not counted again;
- the task that completes the count claims ``.c`` with its own task id for CLAIM_TTL seconds;
  only a call for that same task (its redelivery, when its worker died before sending the
  body) may complete it again meanwhile, and after that one on any worker, Celery's too;
- ``chord_sent`` deletes the counts and leaves ``done``, which ends the chord for good (a
  late duplicate finds it and does nothing).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from .. import serializers
from ..exceptions import ResultBackendError
from ..outcome import Outcome
from ..redisconn import reconnecting, redis_module
from .base import decompress_payload
from .meta import PartResult

GROUP_KEY_PREFIX = "celery-taskset-meta-"
DONE = "done"
#: Seconds a completion claim holds when its body is not sent: then the completing task's
#: redelivery may complete the chord on any worker, Celery's included (Celery's claims expire
#: too). A body is sent within a settle, far sooner.
CLAIM_TTL = 300
#: The suffixes of one chord's keys, in the order the scripts take them.
SUFFIXES = (".j", ".t", ".s", ".d", ".c")

#: KEYS: .j .t .s .d .c — ARGV: the encoded part, its index ('+inf' when unknown), its task id,
#: the TTL in seconds (0: none), the claim's TTL. Returns the encoded parts in index order when this call
#: completes the chord, else nil.
ADD_PART = """
local jkey, tkey, skey, dkey, ckey = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local value, index, tid, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
if redis.call('GET', ckey) == 'done' then
  return nil
end
local member = tid .. ':' .. index
if redis.call('SISMEMBER', dkey, member) == 0 then
  redis.call('ZADD', jkey, index, value)
  redis.call('SADD', dkey, member)
end
if ttl > 0 then
  for _, key in ipairs({jkey, tkey, skey, dkey}) do
    redis.call('EXPIRE', key, ttl)
  end
end
local size = redis.call('GET', skey)
if not size then
  return nil
end
local total = tonumber(size) + tonumber(redis.call('GET', tkey) or '0')
if redis.call('ZCARD', jkey) < total then
  return nil
end
local owner = redis.call('GET', ckey)
if owner and owner ~= tid then
  return nil
end
redis.call('SET', ckey, tid, 'EX', tonumber(ARGV[5]))
return redis.call('ZRANGE', jkey, 0, -1)
"""


def chord_key(group_id: str, suffix: str) -> str:
    """Celery's ``get_key_for_group``: ``celery-taskset-meta-<gid><suffix>``."""
    return f"{GROUP_KEY_PREFIX}{group_id}{suffix}"


class RedisChords:
    """The chord methods of the Redis result backend (mixed into it)."""

    client: Any
    serializer: str
    accept: tuple[str, ...]
    compress_payload: Callable[[bytes], bytes]  # ResultBackend's

    def _ttl(self) -> int | None:
        raise NotImplementedError

    @reconnecting
    def set_chord_size(self, group_id: str, size: int) -> None:
        # A chord sent again after it completed is a new run (as Celery 5.7 starts one).
        if self.client.get(chord_key(group_id, ".c")) == DONE.encode():
            self.client.delete(chord_key(group_id, ".c"))
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
            keys = [chord_key(group_id, suffix) for suffix in SUFFIXES]
            script(keys=keys, args=[self._part(outcome), "+inf" if index is None else index,
                                    outcome.task_id, ttl, CLAIM_TTL], client=pipe)
        try:
            counted = pipe.execute()
        except redis_module().ResponseError as exc:  # e.g. WRONGTYPE: the keys hold other data
            raise ResultBackendError(f"Redis refused to count chord parts: {exc}") from exc
        return [None if found is None else self._parts(found) for found in counted]

    def _part(self, outcome: Outcome) -> bytes:
        """Celery's ``[1, task_id, state, result]``, encoded with the result serializer and,
        with RESULT_COMPRESSION, compressed as Celery compresses these entries too."""
        return self.compress_payload(self._plain_part(outcome))

    def _plain_part(self, outcome: Outcome) -> bytes:
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
            _, task_id, state, result = serializers.loads(  # a Celery worker's compressed too
                decompress_payload(item), codec.content_type, codec.content_encoding,
                accept=(self.serializer,))
            parts.append(PartResult(task_id, state, result))
        return parts

    @reconnecting
    def chord_sent(self, group_id: str) -> None:
        pipe = self.client.pipeline()
        pipe.delete(*(chord_key(group_id, suffix) for suffix in SUFFIXES[:-1]))
        pipe.set(chord_key(group_id, ".c"), DONE, ex=self._ttl())
        pipe.execute()
