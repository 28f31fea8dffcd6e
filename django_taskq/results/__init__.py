"""Result backends by URL scheme, and the process-wide backend built from RESULT_BACKEND."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..conf import get_settings
from ..engines import EngineSlot, database_alias
from ..outcome import Outcome
from ..service_url import ParsedUrl
from .base import ResultBackend
from .meta import PartResult, ResultMeta


def _common() -> dict[str, Any]:
    """The options every result store's constructor takes (docs/result-backends.md)."""
    settings = get_settings()
    accept = tuple(dict.fromkeys((*settings.ACCEPT_CONTENT, settings.RESULT_SERIALIZER)))
    return {"accept": accept, "expires": settings.RESULT_EXPIRES,
            "serializer": settings.RESULT_SERIALIZER, "compression": settings.RESULT_COMPRESSION}


def _database(url: ParsedUrl) -> ResultBackend:
    from .database import DatabaseResultBackend

    return DatabaseResultBackend(alias=database_alias(url, "RESULT_BACKEND"), **_common())


def _memory(url: ParsedUrl) -> ResultBackend:
    from .memory import MemoryResultBackend

    return slot.named.setdefault(url.host or "default", MemoryResultBackend(**_common()))


def _redis(url: ParsedUrl) -> ResultBackend:
    from ..use_ssl import with_tls
    from .redis import RedisResultBackend

    # Celery's redis_backend_use_ssl, translated to TASKQ['REDIS_BACKEND_USE_SSL'].
    url = with_tls(url, get_settings().REDIS_BACKEND_USE_SSL, "RESULT_BACKEND",
                   "REDIS_BACKEND_USE_SSL")
    return RedisResultBackend(url, **_common())


def _rpc(url: ParsedUrl) -> ResultBackend:
    from .rpc import rpc_backend

    return rpc_backend(url, **_common())


def _cache(url: ParsedUrl) -> ResultBackend:
    from .cache import CacheResultBackend, cache_alias

    return CacheResultBackend(alias=cache_alias(url), **_common())


def _plugged() -> dict[str, Callable[[ParsedUrl], ResultBackend]]:
    """The schemes of TASKQ['RESULT_BACKEND_SCHEMES'] (plugins.py)."""
    from . import plugins

    return plugins.factories(get_settings().RESULT_BACKEND_SCHEMES, SCHEMES, _common)


slot: EngineSlot[ResultBackend] = EngineSlot(
    "RESULT_BACKEND", {"db": _database, "memory": _memory, "redis": _redis, "rediss": _redis,
                     "sentinel": _redis, "rpc": _rpc, "cache": _cache},
    close=lambda backend: backend.close(), plugins=_plugged)
SCHEMES = slot.schemes
backend_from_url = slot.from_url
get_backend = slot.get

__all__ = ["Outcome", "ParsedUrl", "PartResult", "ResultBackend", "ResultMeta", "SCHEMES",
           "backend_from_url", "get_backend"]
