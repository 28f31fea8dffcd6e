"""The Redis control store: a key per bucket, a sorted set and a hash of revocations.

Keys (``prefix`` is ``taskq`` unless the URL says ``?prefix=``):

- ``<prefix>:rate:<bucket>``: the time the bucket is full again (Unix seconds, as text), with a
  TTL until then plus a second, so idle buckets disappear by themselves.
- ``<prefix>:revoked``: sorted set of revoked task ids scored by their expiry time.
- ``<prefix>:revoked:terminate``: hash of the same ids to ``1`` (terminate) or ``0``.

Every script reads the server's ``TIME``, so workers on machines whose clocks differ still agree
(this needs Redis 5 or later, where scripts replicate their effects).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ..redisconn import client_from_url, reconnecting
from ..service_url import ParsedUrl
from .base import ControlStore, check_burst
from .mailboxes import RedisMailbox
from .rate import Rate

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

# KEYS: bucket. ARGV: interval, tolerance. Returns "0" (taken) or the seconds to wait.
TAKE = _NOW + """
local interval, tolerance = tonumber(ARGV[1]), tonumber(ARGV[2])
local start = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
local wait = start - tolerance - now
if wait > 1e-6 then return tostring(wait) end  -- base.EPSILON
local full_at = start + interval
redis.call('SET', KEYS[1], string.format('%.6f', full_at),
           'PX', math.ceil((full_at - now) * 1000) + 1000)
return '0'
"""

# KEYS: revoked, terminate flags. ARGV: expires (seconds), terminate ('1'/'0'), ids...
REVOKE = _NOW + """
local expires_at = now + tonumber(ARGV[1])
for i = 3, #ARGV do
    local id, expiry, flag = ARGV[i], expires_at, ARGV[2]
    local old = tonumber(redis.call('ZSCORE', KEYS[1], id))
    if old and old > now then
        if old > expiry then expiry = old end
        if redis.call('HGET', KEYS[2], id) == '1' then flag = '1' end
    end
    redis.call('ZADD', KEYS[1], string.format('%.6f', expiry), id)
    redis.call('HSET', KEYS[2], id, flag)
end
return #ARGV - 2
"""

_PRUNE = _NOW + """
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for i = 1, #expired, 1000 do
    redis.call('HDEL', KEYS[2], unpack(expired, i, math.min(i + 999, #expired)))
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
"""

# KEYS: revoked, terminate flags. Drops expired ids, returns the others' flags (HGETALL).
REVOCATIONS = _PRUNE + "return redis.call('HGETALL', KEYS[2])"
PRUNE = _PRUNE + "return #expired"

# KEYS: revoked. ARGV: id. Returns 1 when revoked and unexpired.
IS_REVOKED = _NOW + """
local expiry = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]))
if expiry and expiry > now then return 1 end
return 0
"""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisControlStore(RedisMailbox, ControlStore):
    """Buckets and revocations in Redis, each operation one script call."""

    def __init__(self, url: ParsedUrl, *, prefix: str = "taskq") -> None:
        self.client = client_from_url(url, "CONTROL_URL")
        self.prefix = prefix
        self.now = time.time
        self.revoked_key = f"{prefix}:revoked"
        self.terminate_key = f"{prefix}:revoked:terminate"
        self._scripts = {name: self.client.register_script(source) for name, source in (
            ("take", TAKE), ("revoke", REVOKE), ("revocations", REVOCATIONS),
            ("prune", PRUNE), ("is_revoked", IS_REVOKED))}

    def bucket_key(self, bucket: str) -> str:
        """The key holding ``bucket``."""
        return f"{self.prefix}:rate:{bucket}"

    @reconnecting
    def take(self, bucket: str, rate: Rate, burst: int = 1) -> float:
        check_burst(burst)
        wait = self._scripts["take"](keys=[self.bucket_key(bucket)],
                                     args=[repr(rate.interval), repr((burst - 1) * rate.interval)])
        return max(0.0, float(_text(wait)))

    @reconnecting
    def revoke(self, task_ids: Sequence[str], *, terminate: bool = False,
               expires: float) -> None:
        ids = list(dict.fromkeys(task_ids))
        for start in range(0, len(ids), 1000):  # bounded script arguments per call
            self._scripts["revoke"](keys=[self.revoked_key, self.terminate_key],
                                    args=[repr(float(expires)), "1" if terminate else "0",
                                          *ids[start:start + 1000]])

    @reconnecting
    def revocations(self) -> dict[str, bool]:
        flat = self._scripts["revocations"](keys=[self.revoked_key, self.terminate_key])
        return {_text(flat[i]): _text(flat[i + 1]) == "1" for i in range(0, len(flat), 2)}

    @reconnecting
    def is_revoked(self, task_id: str) -> bool:
        return bool(self._scripts["is_revoked"](keys=[self.revoked_key], args=[task_id]))

    @reconnecting
    def prune(self) -> int:
        return int(self._scripts["prune"](keys=[self.revoked_key, self.terminate_key]))

    def close(self) -> None:
        self.client.close()


def from_url(url: ParsedUrl) -> RedisControlStore:
    """The store for a ``redis://`` or ``rediss://`` CONTROL_URL (``?prefix=`` optional)."""
    return RedisControlStore(url, prefix=url.options.get("prefix") or "taskq")
