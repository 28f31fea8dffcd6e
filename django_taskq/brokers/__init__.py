"""Brokers by URL scheme, and the process-wide broker built from BROKER_URL on first use."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

from ..conf import get_settings, on_reset
from ..exceptions import ConfigurationError
from ..urls import ParsedUrl, parse
from .base import Broker, DeadLetter, Delivery


def _database(url: ParsedUrl) -> Broker:
    from django.conf import settings

    from .database import DatabaseBroker

    alias = url.host or "default"
    if alias not in settings.DATABASES:
        raise ConfigurationError(
            f"BROKER_URL {url.original!r} names database alias {alias!r}, which is not in "
            f"DATABASES (aliases: {', '.join(settings.DATABASES)}).")
    try:
        poll = float(url.options.get("poll_interval", get_settings().POLL_INTERVAL))
    except ValueError:
        poll = -1.0
    if poll <= 0:
        raise ConfigurationError(
            f"BROKER_URL {url.original!r}: poll_interval must be a positive number of seconds.")
    return DatabaseBroker(alias=alias, poll_interval=poll)


_memory_brokers: dict[str, Broker] = {}


def _memory(url: ParsedUrl) -> Broker:
    from .memory import MemoryBroker

    # One broker per name in a process, so producers and an in-process worker share it.
    return _memory_brokers.setdefault(url.host or "default", MemoryBroker())


SCHEMES: dict[str, Callable[[ParsedUrl], Broker]] = {
    "db": _database,
    "memory": _memory,
}


def broker_from_url(url: str) -> Broker:
    """Build the broker for ``url``.

    Raises:
        ConfigurationError: unknown scheme or a URL that names something that does not exist.
    """
    parsed = parse(url, setting="BROKER_URL")
    factory = SCHEMES.get(parsed.scheme)
    if factory is None:
        raise ConfigurationError(
            f"BROKER_URL scheme {parsed.scheme!r} is not supported; use one of "
            f"{', '.join(s + '://' for s in SCHEMES)}.")
    return factory(parsed)


_lock = threading.Lock()
_broker: Broker | None = None


def get_broker() -> Broker:
    """The broker for the configured BROKER_URL, built once per process."""
    global _broker
    with _lock:
        if _broker is None:
            _broker = broker_from_url(get_settings().BROKER_URL)
        return _broker


@on_reset
def reset_broker() -> None:
    """Forget the process broker (settings changed, or a forked child needs its own)."""
    global _broker
    with _lock:
        if _broker is not None:
            _broker.close()
        _broker = None
    _memory_brokers.clear()


def _forget_after_fork() -> None:
    global _broker
    _broker = None  # the parent's sockets are not ours to close or share


os.register_at_fork(after_in_child=_forget_after_fork)

__all__ = ["Broker", "DeadLetter", "Delivery", "SCHEMES", "broker_from_url", "get_broker"]
