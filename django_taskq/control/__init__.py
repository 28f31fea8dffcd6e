"""The control store every worker shares: global rate limits and durable revocations.

``get_control_store()`` builds it once per process from CONTROL_URL, or when that is None from
the broker (db://, redis://, rediss://, memory://), else from RESULT_BACKEND (db:// or Redis),
else ``db://default``. See docs/control-store.md.
"""

from __future__ import annotations

from ..conf import TaskqSettings, get_settings
from ..engines import EngineSlot, database_alias
from ..exceptions import ConfigurationError
from ..service_url import ParsedUrl, parse
from .base import ControlStore
from .rate import Rate, parse_rate

SETTING = "CONTROL_URL"
#: Schemes whose URL, as BROKER_URL or RESULT_BACKEND, also serves as the control store.
SHARED_SCHEMES = ("db", "redis", "rediss", "sentinel")


def _database(url: ParsedUrl) -> ControlStore:
    from .database import DatabaseControlStore

    return DatabaseControlStore(alias=database_alias(url, SETTING))


def _redis(url: ParsedUrl) -> ControlStore:
    from . import redis

    prefix = url.options.get("prefix", "taskq")
    if not prefix or "\n" in prefix:
        raise ConfigurationError(f"{SETTING} {url.masked!r}: prefix must be a non-empty name.")
    return redis.from_url(_tls(url))


def _tls(url: ParsedUrl) -> ParsedUrl:
    """On the broker's or result backend's URL, TLS as their USE_SSL setting turns it on."""
    from ..use_ssl import with_tls

    settings = get_settings()
    for setting, option in (("BROKER_URL", "BROKER_USE_SSL"),
                            ("RESULT_BACKEND", "REDIS_BACKEND_USE_SSL")):
        if url.original == getattr(settings, setting):
            return with_tls(url, getattr(settings, option), SETTING, option)
    return url


def _memory(url: ParsedUrl) -> ControlStore:
    from .memory import MemoryControlStore

    # One store per name in a process, like the memory broker it serves.
    return slot.named.setdefault(url.host or "default", MemoryControlStore())


def control_url(settings: TaskqSettings) -> str:
    """The URL of the control store these settings choose (see the module docstring)."""
    if settings.CONTROL_URL is not None:
        return settings.CONTROL_URL
    if _scheme(settings.BROKER_URL) in (*SHARED_SCHEMES, "memory"):
        return settings.BROKER_URL
    if _scheme(settings.RESULT_BACKEND) in SHARED_SCHEMES:
        return settings.RESULT_BACKEND
    return "db://default"


def _scheme(url: str) -> str | None:
    try:
        return parse(url, setting="URL").scheme
    except ConfigurationError:
        return None


class _ControlSlot(EngineSlot[ControlStore]):
    def get(self) -> ControlStore:
        with self._lock:
            if self._engine is None:
                self._engine = self.from_url(control_url(get_settings()))
            return self._engine


slot = _ControlSlot(SETTING, {"db": _database, "redis": _redis, "rediss": _redis,
                              "sentinel": _redis, "memory": _memory}, close=lambda store: store.close())
SCHEMES = slot.schemes


def control_store_from_url(url: str) -> ControlStore:
    """A new store for ``url`` (``db://<alias>``, ``redis://...``, ``rediss://...``, ``memory://``).

    Raises:
        ConfigurationError: not a URL, an unknown scheme, or an unknown database alias.
    """
    return slot.from_url(url)


def get_control_store() -> ControlStore:
    """The process-wide control store, built on first use and dropped when settings change.

    Raises:
        ConfigurationError: CONTROL_URL (or the URL it falls back to) is not usable.
    """
    return slot.get()


__all__ = ["ControlStore", "Rate", "SCHEMES", "control_store_from_url", "control_url",
           "get_control_store", "parse_rate"]
