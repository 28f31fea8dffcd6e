"""The cache result backend (``cache://<alias>``): results in a Django cache of CACHES.

Each result is one cache value, ``celery-task-meta-<id>``, holding Celery's meta mapping encoded
with RESULT_SERIALIZER (keyvalue.py) and compressed as RESULT_COMPRESSION says, stored with the
cache timeout RESULT_EXPIRES; the cache's own KEY_PREFIX and VERSION apply. Saved groups are
``celery-taskset-meta-<gid>``; chords are counted with ``add`` and ``incr`` (cache_chords.py),
which memcached and Redis do atomically. ``get()`` polls. A value the cache refuses (memcached's
item size limit, 1 MB by default) is an error, never a result that silently is not there.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
from collections.abc import Iterator, Sequence
from typing import Any

from ..exceptions import (
    ConfigurationError,
    ResultBackendConnectionError,
    ResultBackendError,
    SerializationError,
    TaskqError,
)
from ..outcome import Outcome
from ..service_url import ParsedUrl, mask_text
from .base import ResultBackend
from .cache_chords import CacheChords
from .keyvalue import (
    GROUP_KEY_PREFIX,
    KEY_PREFIX,
    decode_group,
    decode_meta,
    encode_group,
    encode_meta,
    encode_pending,
    result_meta,
)
from .meta import ResultMeta

#: Cache backends that hold nothing between calls: every result would be lost.
DUMMY = ("django.core.cache.backends.dummy.DummyCache",)
#: Kept in one process's memory: other processes (the workers) never see its results.
LOCAL = ("django.core.cache.backends.locmem.LocMemCache",)
#: Caches whose ``add`` and ``incr`` are atomic across processes (chords count exactly once).
ATOMIC = ("django.core.cache.backends.memcached.PyMemcacheCache",
          "django.core.cache.backends.memcached.PyLibMCCache",
          "django.core.cache.backends.redis.RedisCache",
          "django_redis.cache.RedisCache")
#: Errors of the cache clients that mean "unreachable", by class name (not imported here).
_CONNECTION_ERRORS = frozenset({"ConnectionError", "TimeoutError", "ConnectionInterrupted",
                                "MemcacheUnexpectedCloseError", "ServerDown"})
#: What to install for a cache backend whose client library is missing, by its path.
_INSTALL = {"PyMemcacheCache": "pip install 'django-taskq[memcached]' (pymemcache)",
            "PyLibMCCache": "pip install pylibmc",
            "redis": "pip install 'django-taskq[redis]' (redis-py)"}
#: Longest task id kept as it is in a key; memcached takes keys of 250 bytes, without spaces.
_PLAIN_ID = 160


def cache_alias(url: ParsedUrl) -> str:
    """The CACHES alias of a ``cache://<alias>`` URL (``default`` when empty).

    Raises:
        ConfigurationError: options given, the alias is not in CACHES, or a DummyCache.
    """
    from django.conf import settings

    alias = url.host or "default"
    if url.rest or url.options:
        raise ConfigurationError(
            f"RESULT_BACKEND {url.masked!r}: cache:// takes a CACHES alias and nothing else "
            "(the cache's own options go in its CACHES entry).")
    caches = getattr(settings, "CACHES", {})
    if alias not in caches:
        raise ConfigurationError(
            f"RESULT_BACKEND {url.masked!r} names cache alias {alias!r}, which is not in "
            f"CACHES (aliases: {', '.join(caches) or 'none'}). Add it to CACHES, e.g. "
            f"{{{alias!r}: {{'BACKEND': 'django.core.cache.backends.memcached.PyMemcacheCache', "
            "'LOCATION': '127.0.0.1:11211'}}.")
    path = _backend_path(alias)
    if path in DUMMY:
        raise ConfigurationError(
            f"RESULT_BACKEND {url.masked!r}: cache {alias!r} is a DummyCache, which stores "
            "nothing: every result would be lost. Name a memcached or Redis cache.")
    _load(url, alias, path)
    return alias


def _load(url: ParsedUrl, alias: str, path: str) -> None:
    """Build the cache object (no connection yet): its client library must be installed."""
    from django.core.cache import caches

    try:
        caches[alias]
    except Exception as exc:  # noqa: BLE001 - ImportError, InvalidCacheBackendError, ...
        install = next((hint for key, hint in _INSTALL.items() if key in path),
                       "install the library it needs")
        raise ConfigurationError(
            f"RESULT_BACKEND {url.masked!r}: cache {alias!r} ({path}) cannot be loaded: "
            f"{mask_text(str(exc))}. Fix its CACHES entry, or {install}.") from exc


def _backend_path(alias: str) -> str:
    from django.conf import settings

    return str(settings.CACHES.get(alias, {}).get("BACKEND", ""))


def cache_warnings(alias: str) -> list[tuple[str, str, str]]:
    """What a system check says of the cache ``alias`` as a result store: ``(id, message,
    hint)`` for a cache not shared between processes (W020) or without atomic ``add`` and
    ``incr`` (W021)."""
    path = _backend_path(alias)
    if path in LOCAL:
        return [("W020", f"RESULT_BACKEND names cache {alias!r}, a LocMemCache: results stay in "
                 "the memory of the process that stored them, so a client never sees what a "
                 "worker process stored.", "Use a memcached or Redis cache (CACHES) for "
                 "results; a LocMemCache serves only tests in one process.")]
    if path not in ATOMIC:
        return [("W021", f"RESULT_BACKEND names cache {alias!r} ({path}), whose add() and "
                 "incr() are not atomic between processes: a chord's header tasks finishing "
                 "at once may never complete it.", "Use a memcached or Redis cache for "
                 "results when you use chords.")]
    return []


class CacheResultBackend(CacheChords, ResultBackend):
    """Results in the Django cache ``alias`` (``django.core.cache.caches[alias]``)."""

    def __init__(self, alias: str = "default", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alias = alias
        _forget_after_fork(alias)

    @property
    def cache(self) -> Any:
        """This thread's connection to the cache (Django keeps one per thread)."""
        from django.core.cache import caches

        return caches[self.alias]

    @staticmethod
    def key(task_id: str) -> str:
        """The cache key of ``task_id``'s result (hashed when memcached could not take it)."""
        return f"{KEY_PREFIX}{_safe(task_id)}"

    def ttl(self) -> int:
        """The cache timeout of what is stored: RESULT_EXPIRES, whole seconds."""
        return max(1, math.ceil(self.expires))

    @contextlib.contextmanager
    def errors(self, what: str) -> Iterator[None]:
        """The cache client's errors as ours: unreachable, or a refused value."""
        try:
            yield
        except (TaskqError, SerializationError):
            raise
        except Exception as exc:
            kind = ResultBackendConnectionError if _unreachable(exc) else ResultBackendError
            raise kind(f"cache {self.alias!r} failed ({what}): {type(exc).__name__}: "
                       f"{mask_text(str(exc))}{_size_hint(exc)}") from exc

    def mark_pending(self, records: Sequence[tuple[str, str]]) -> None:
        with self.errors("mark pending"):
            for task_id, name in records:  # add: never over a result
                self.cache.add(self.key(task_id), encode_pending(self, task_id, name),
                               self.ttl())

    def store_many(self, outcomes: Sequence[Outcome]) -> None:
        latest = {o.task_id: o for o in outcomes}
        values = {self.key(task_id): encode_meta(self, o) for task_id, o in latest.items()}
        if not values:
            return
        sizes = ", ".join(f"{task_id} ({len(values[self.key(task_id)])} bytes)"
                          for task_id in latest)
        with self.errors(f"store the results of {sizes[:300]}"):
            failed = self.cache.set_many(values, self.ttl())
        if failed:
            # pymemcache's HashClient answers for a server it found failing a moment ago
            # without trying it: the values were not stored.
            raise ResultBackendConnectionError(
                f"cache {self.alias!r} did not store {len(failed)} result(s) (is the cache "
                f"server reachable?): {', '.join(map(str, failed))[:300]}")

    def get(self, task_id: str) -> ResultMeta | None:
        with self.errors("read a result"):
            data = self.cache.get(self.key(task_id))
        return result_meta(task_id, decode_meta(self, task_id, self.stored(task_id, data)))

    def stored(self, key: str, data: Any) -> bytes | None:
        """``data`` read from the cache, which must be bytes we wrote (or nothing)."""
        if data is None or isinstance(data, bytes):
            return data
        raise ResultBackendError(f"cache {self.alias!r} holds a {type(data).__name__} under "
                                 f"the key of {key}, not a stored result")

    def forget(self, task_id: str) -> None:
        with self.errors("forget a result"):
            self.cache.delete(self.key(task_id))

    def cleanup(self) -> int:
        """Nothing to do: the cache drops results when their timeout (RESULT_EXPIRES) ends."""
        return 0

    def close(self) -> None:
        """Nothing to do: Django closes its caches at the end of each request (and the
        worker after each task)."""

    def save_group(self, group_id: str, task_ids: Sequence[str]) -> None:
        with self.errors("save a group"):
            self.cache.set(self._group_key(group_id),
                           encode_group(self, group_id, list(task_ids)), self.ttl())

    def restore_group(self, group_id: str) -> list[str] | None:
        with self.errors("restore a group"):
            data = self.cache.get(self._group_key(group_id))
        return decode_group(self, group_id, self.stored(group_id, data))

    def delete_group(self, group_id: str) -> None:
        with self.errors("delete a group"):
            self.cache.delete(self._group_key(group_id))

    @staticmethod
    def _group_key(group_id: str) -> str:
        return f"{GROUP_KEY_PREFIX}{_safe(group_id)}"


#: The aliases of result caches, whose connections a forked child must not share.
_USED: set[str] = set()


def _forget_after_fork(alias: str) -> None:
    """Make a forked child (a prefork pool's) open its own connection to ``alias``: Django keeps
    one per thread, and the forking thread's would be the parent's socket, shared."""
    if not _USED:
        os.register_at_fork(after_in_child=_forget_connections)
    _USED.add(alias)


def _forget_connections() -> None:
    from django.core.cache import caches

    for alias in _USED:
        with contextlib.suppress(AttributeError):  # never opened in this thread
            del caches[alias]  # dropped, not closed: closing could end the parent's too


def _safe(name: str) -> str:
    """``name`` as a part of a memcached key: kept when it is short printable ASCII without
    spaces (every uuid), else its SHA-256."""
    if len(name) <= _PLAIN_ID and name.isascii() and name.isprintable() and " " not in name:
        return name
    return "sha256-" + hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()


def _unreachable(exc: BaseException) -> bool:
    names = {cls.__name__ for cls in type(exc).__mro__}
    return isinstance(exc, OSError) or bool(names & _CONNECTION_ERRORS) \
        or "servers seem to be down" in str(exc)


def _size_hint(exc: BaseException) -> str:
    text = f"{type(exc).__name__} {exc}".lower()
    if "too large" in text or "toobig" in text:
        return (" — memcached refuses items larger than its item size limit (1 MB unless "
                "started with -I): return less from the task, set RESULT_COMPRESSION, start "
                "memcached with a larger -I, or store results in db:// or redis://.")
    return ""
