"""Result backends by URL scheme, and the process-wide backend built from RESULT_BACKEND."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from ..conf import get_settings, on_reset
from ..exceptions import ConfigurationError
from ..urls import ParsedUrl, parse
from .base import ResultBackend


def _common() -> dict[str, Any]:
    settings = get_settings()
    accept = tuple(dict.fromkeys((*settings.ACCEPT_CONTENT, settings.RESULT_SERIALIZER)))
    return {"accept": accept, "expires": settings.RESULT_EXPIRES}


def _database(url: ParsedUrl) -> ResultBackend:
    from django.conf import settings

    from .database import DatabaseResultBackend

    alias = url.host or "default"
    if alias not in settings.DATABASES:
        raise ConfigurationError(
            f"RESULT_BACKEND {url.original!r} names database alias {alias!r}, which is not in "
            f"DATABASES (aliases: {', '.join(settings.DATABASES)}).")
    return DatabaseResultBackend(alias=alias, **_common())


_memory_backends: dict[str, ResultBackend] = {}


def _memory(url: ParsedUrl) -> ResultBackend:
    from .memory import MemoryResultBackend

    return _memory_backends.setdefault(url.host or "default", MemoryResultBackend(**_common()))


SCHEMES: dict[str, Callable[[ParsedUrl], ResultBackend]] = {
    "db": _database,
    "memory": _memory,
}


def backend_from_url(url: str) -> ResultBackend:
    """Build the result backend for ``url``.

    Raises:
        ConfigurationError: unknown scheme, or a URL naming something that does not exist.
    """
    parsed = parse(url, setting="RESULT_BACKEND")
    factory = SCHEMES.get(parsed.scheme)
    if factory is None:
        raise ConfigurationError(
            f"RESULT_BACKEND scheme {parsed.scheme!r} is not supported; use one of "
            f"{', '.join(s + '://' for s in SCHEMES)}.")
    return factory(parsed)


_lock = threading.Lock()
_backend: ResultBackend | None = None


def get_backend() -> ResultBackend:
    """The result backend for the configured RESULT_BACKEND, built once per process."""
    global _backend
    with _lock:
        if _backend is None:
            _backend = backend_from_url(get_settings().RESULT_BACKEND)
        return _backend


@on_reset
def reset_backend() -> None:
    """Forget the process result backend."""
    global _backend
    with _lock:
        if _backend is not None:
            _backend.close()
        _backend = None
    _memory_backends.clear()


def _forget_after_fork() -> None:
    global _backend
    _backend = None


os.register_at_fork(after_in_child=_forget_after_fork)

__all__ = ["ResultBackend", "SCHEMES", "backend_from_url", "get_backend"]
