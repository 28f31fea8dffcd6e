"""Engines chosen by URL scheme (brokers, result backends), one instance per process.

The instance is built on first use from its setting, dropped when the settings change, and
forgotten in a forked child (the parent's sockets are not the child's to use or close).
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from .conf import get_settings, on_reset
from .exceptions import ConfigurationError, ServiceError
from .service_url import ParsedUrl, parse

T = TypeVar("T")


class EngineSlot(Generic[T]):
    """The process-wide engine configured by ``setting`` (e.g. BROKER_URL)."""

    def __init__(self, setting: str, schemes: dict[str, Callable[[ParsedUrl], T]],
                 close: Callable[[T], None],
                 plugins: Callable[[], dict[str, Callable[[ParsedUrl], T]]] | None = None
                 ) -> None:
        self.setting = setting
        self.schemes = schemes
        #: More schemes, read from the settings when a URL is built (RESULT_BACKEND_SCHEMES).
        self.plugins = plugins
        self._close = close
        self._lock = threading.Lock()
        self._engine: T | None = None
        self.named: dict[str, T] = {}  # engines shared by name within a process (memory://)
        on_reset(self.reset)
        os.register_at_fork(after_in_child=self._forget)

    def from_url(self, url: str) -> T:
        """Build the engine for ``url``.

        Raises:
            ConfigurationError: unknown scheme, or a URL naming something that does not exist.
        """
        parsed = parse(url, setting=self.setting)
        schemes = self.schemes if parsed.scheme in self.schemes or self.plugins is None \
            else {**self.plugins(), **self.schemes}
        factory = schemes.get(parsed.scheme)
        if factory is None:
            raise ConfigurationError(
                f"{self.setting} scheme {parsed.scheme!r} is not supported; use one of "
                f"{', '.join(s + '://' for s in schemes)}.")
        return factory(parsed)

    def get(self) -> T:
        """The engine for the configured URL, built once per process."""
        with self._lock:
            if self._engine is None:
                self._engine = self.from_url(getattr(get_settings(), self.setting))
            return self._engine

    def reset(self) -> None:
        """Close and forget the engine (and the named ones)."""
        with self._lock:
            if self._engine is not None:
                self._close(self._engine)
            self._engine = None
        self.named.clear()

    def _forget(self) -> None:
        self._engine = None


def database_alias(url: ParsedUrl, setting: str) -> str:
    """The Django database alias a ``db://<alias>`` URL names (``default`` when empty)."""
    from django.conf import settings

    alias = url.host or "default"
    if alias not in settings.DATABASES:
        raise ConfigurationError(
            f"{setting} {url.masked!r} names database alias {alias!r}, which is not in "
            f"DATABASES (aliases: {', '.join(settings.DATABASES)}).")
    return alias


@contextlib.contextmanager
def database_errors(alias: str, what: str, error: type[ServiceError],
                    connection_error: type[ServiceError] | None = None) -> Iterator[None]:
    """The one place where Django's database errors become ours: a lost connection is
    ``connection_error`` (the connection is closed, outside an atomic block, so the next call
    reconnects); any other database error is ``error``. Callers never see DatabaseError."""
    from django.db import DatabaseError, InterfaceError, OperationalError, connections

    try:
        yield
    except (OperationalError, InterfaceError) as exc:
        connection = connections[alias]
        if not connection.in_atomic_block:
            connection.close()
        raise (connection_error or error)(
            f"database {alias!r} unreachable or failing ({what}): {exc}{_migrate_hint(exc)}"
        ) from exc
    except DatabaseError as exc:
        raise error(f"database {alias!r} failed ({what}): {exc}{_migrate_hint(exc)}") from exc


def _migrate_hint(exc: BaseException) -> str:
    text = str(exc).lower()
    missing = ("no such table" in text or "does not exist" in text or "doesn't exist" in text)
    return " (run manage.py migrate)" if missing and "taskq_" in text else ""


def translating(error: type[ServiceError], connection_error: type[ServiceError] | None = None
                ) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Decorate a method of an engine that has an ``alias``: see :func:`database_errors`."""
    def decorate(method: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(method)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> T:
            with database_errors(self.alias, method.__name__, error, connection_error):
                return method(self, *args, **kwargs)
        return wrapper
    return decorate
