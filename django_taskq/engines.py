"""Engines chosen by URL scheme (brokers, result backends), one instance per process.

The instance is built on first use from its setting, dropped when the settings change, and
forgotten in a forked child (the parent's sockets are not the child's to use or close).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from .conf import get_settings, on_reset
from .exceptions import ConfigurationError
from .service_url import ParsedUrl, parse

T = TypeVar("T")


class EngineSlot(Generic[T]):
    """The process-wide engine configured by ``setting`` (e.g. BROKER_URL)."""

    def __init__(self, setting: str, schemes: dict[str, Callable[[ParsedUrl], T]],
                 close: Callable[[T], None]) -> None:
        self.setting = setting
        self.schemes = schemes
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
        factory = self.schemes.get(parsed.scheme)
        if factory is None:
            raise ConfigurationError(
                f"{self.setting} scheme {parsed.scheme!r} is not supported; use one of "
                f"{', '.join(s + '://' for s in self.schemes)}.")
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
            f"{setting} {url.original!r} names database alias {alias!r}, which is not in "
            f"DATABASES (aliases: {', '.join(settings.DATABASES)}).")
    return alias
