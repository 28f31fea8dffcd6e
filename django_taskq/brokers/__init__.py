"""Brokers by URL scheme, and the process-wide broker built from BROKER_URL on first use."""

from __future__ import annotations

from ..conf import get_settings
from ..engines import EngineSlot, database_alias
from ..exceptions import ConfigurationError
from ..service_url import ParsedUrl
from .base import Broker, DeadLetter, DeadLetterStore, Delivery, dead_letter_store


def _poll_interval(url: ParsedUrl) -> float:
    """How long an idle worker waits per round: ``?poll_interval=`` or POLL_INTERVAL."""
    try:
        poll = float(url.options.get("poll_interval", get_settings().POLL_INTERVAL))
    except ValueError:
        poll = -1.0
    if poll <= 0:
        raise ConfigurationError(
            f"BROKER_URL {url.masked!r}: poll_interval must be a positive number of seconds.")
    return poll


def _database(url: ParsedUrl) -> Broker:
    from .database import DatabaseBroker

    return DatabaseBroker(alias=database_alias(url, "BROKER_URL"), poll_interval=_poll_interval(url),
                          max_deliveries=get_settings().MAX_DELIVERIES)


def _tls(url: ParsedUrl) -> ParsedUrl:
    """``url`` with TLS on when TASKQ['BROKER_USE_SSL'] (Celery's broker_use_ssl) says so."""
    from ..use_ssl import with_tls

    return with_tls(url, get_settings().BROKER_USE_SSL, "BROKER_URL", "BROKER_USE_SSL")


def _redis(url: ParsedUrl) -> Broker:
    from . import redis

    url = _tls(url)
    return redis.from_url(url, poll_interval=_poll_interval(url),
                          max_deliveries=get_settings().MAX_DELIVERIES)


def _amqp(url: ParsedUrl) -> Broker:
    from . import amqp

    return amqp.from_url(_tls(url), max_deliveries=get_settings().MAX_DELIVERIES)


def _sqs(url: ParsedUrl) -> Broker:
    from . import sqs

    settings = get_settings()
    return sqs.from_url(url, poll_interval=_poll_interval(url),
                        transport_options=getattr(settings, "BROKER_TRANSPORT_OPTIONS", None),
                        max_deliveries=settings.MAX_DELIVERIES)


def _memory(url: ParsedUrl) -> Broker:
    from .memory import MemoryBroker

    # One broker per name in a process, so producers and an in-process worker share it.
    return slot.named.setdefault(url.host or "default",
                                 MemoryBroker(max_deliveries=get_settings().MAX_DELIVERIES))


slot: EngineSlot[Broker] = EngineSlot(
    "BROKER_URL",
    {"db": _database, "memory": _memory, "redis": _redis, "rediss": _redis, "sentinel": _redis,
     "amqp": _amqp, "amqps": _amqp, "pyamqp": _amqp, "sqs": _sqs},
    close=lambda broker: broker.close())
SCHEMES = slot.schemes
broker_from_url = slot.from_url
get_broker = slot.get

__all__ = ["Broker", "DeadLetter", "DeadLetterStore", "Delivery", "SCHEMES", "broker_from_url",
           "dead_letter_store", "get_broker"]
