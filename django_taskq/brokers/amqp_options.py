"""RabbitMQ broker settings from the URL, queue arguments, connections.

``amqp://user:pass@host:5672/vhost?queue_type=quorum&confirm_timeout=5``; ``amqps://`` is TLS
with the server certificate and host name verified unless ``cert_reqs=none`` says otherwise.
kombu parses the address, picks the port and builds the py-amqp connection; the options below
are ours and never reach kombu.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ..exceptions import BrokerConnectionError, ConfigurationError
from ..service_url import ParsedUrl, mask_text

#: Seconds: open a connection; wait for any reply (a declare, a publisher confirm).
CONNECT_TIMEOUT = 5.0
CONFIRM_TIMEOUT = 5.0
#: Seconds of AMQP heartbeat on the consuming connection (a dead peer is noticed in twice that).
HEARTBEAT = 10.0
MAX_PRIORITY = 10
DELIVERY_LIMIT = 5
DEAD_LETTER_QUEUE = "taskq.dead"
QUEUE_TYPES = ("classic", "quorum")
_CERT_REQS = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}
_TLS_FILES = ("ca_certs", "certfile", "keyfile")
_WHOLE = ("max_priority", "delivery_limit", "prefetch_count")
_NUMBERS = ("connect_timeout", "confirm_timeout", "heartbeat", *_WHOLE)
_TEXTS = ("queue_type", "dead_letter_queue", "cert_reqs", *_TLS_FILES)
#: poll_interval is accepted for symmetry with the other brokers; RabbitMQ pushes, it is unused.
KNOWN = frozenset({"poll_interval", *_TEXTS, *_NUMBERS})


@dataclass(frozen=True, slots=True)
class AmqpOptions:
    """What the URL says, checked, with defaults."""

    url: str = field(repr=False)  # may hold a password
    tls: bool = False
    queue_type: str = "classic"
    max_priority: int = MAX_PRIORITY
    delivery_limit: int = DELIVERY_LIMIT
    dead_letter_queue: str = DEAD_LETTER_QUEUE
    connect_timeout: float = CONNECT_TIMEOUT
    confirm_timeout: float = CONFIRM_TIMEOUT
    heartbeat: float = HEARTBEAT
    prefetch_count: int = 0  # 0: twice what the worker asks for
    cert_reqs: str = "required"
    ca_certs: str | None = None
    certfile: str | None = None
    keyfile: str | None = None

    @property
    def quorum(self) -> bool:
        return self.queue_type == "quorum"


def parse_options(url: ParsedUrl) -> AmqpOptions:
    """Check the query options of an ``amqp://``/``amqps://`` URL.

    Raises:
        ConfigurationError: an unknown option or a value out of range.
    """
    given = url.options
    unknown = sorted(set(given) - KNOWN)
    problem = (f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(KNOWN))}."
               if unknown else None)
    values: dict[str, Any] = {"url": url.original.split("?", 1)[0], "tls": url.scheme == "amqps"}
    values.update({name: given[name] for name in _TEXTS if name in given})
    for name in _NUMBERS:
        if name in given and problem is None:
            values[name], problem = _number(given[name], name)
    problem = problem or _check_choices(values)
    if problem:
        raise ConfigurationError(f"BROKER_URL {_masked(url)}: {problem}")
    return AmqpOptions(**values)


def _number(text: str, name: str) -> tuple[Any, str | None]:
    """``text`` as the number option ``name`` wants, or the problem with it."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    whole = name in _WHOLE
    if value < 0 or (value == 0 and name not in ("heartbeat", "prefetch_count")) or (
            whole and value != int(value)):
        kind = "whole number" if whole else "number"
        return None, f"{name} must be a positive {kind}, not {text!r}."
    return (int(value) if whole else value), None


def _check_choices(values: dict[str, Any]) -> str | None:
    if values.get("queue_type", "classic") not in QUEUE_TYPES:
        return f"queue_type must be one of {', '.join(QUEUE_TYPES)}."
    if values.get("cert_reqs", "required") not in _CERT_REQS:
        return f"cert_reqs must be one of {', '.join(_CERT_REQS)}."
    if not values.get("dead_letter_queue", DEAD_LETTER_QUEUE):
        return "dead_letter_queue must be a queue name."
    if not 1 <= values.get("max_priority", MAX_PRIORITY) <= 255:
        return "max_priority must be from 1 to 255."
    return None


def _masked(url: ParsedUrl) -> str:
    return repr(url.masked)


def queue_arguments(options: AmqpOptions) -> dict[str, Any]:
    """The ``x-`` arguments every task queue is declared with, by us and (to match) by Celery.

    Classic: ``x-max-priority`` only (Celery: ``task_queue_max_priority = 10``). Quorum: the queue
    type, a delivery limit and dead-lettering to the dead letter queue; no priorities.
    """
    if options.quorum:
        return {"x-queue-type": "quorum", "x-delivery-limit": options.delivery_limit,
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": options.dead_letter_queue}
    return {"x-max-priority": options.max_priority}


def tls_settings(options: AmqpOptions, host: str) -> dict[str, Any] | bool:
    """py-amqp's ``ssl`` argument: verify the certificate and host name unless told not to."""
    if not options.tls:
        return False
    settings: dict[str, Any] = {"cert_reqs": _CERT_REQS[options.cert_reqs]}
    if options.cert_reqs != "none":
        settings["server_hostname"] = host
    settings.update({name: getattr(options, name) for name in _TLS_FILES
                     if getattr(options, name)})
    return settings


def connect(options: AmqpOptions, *, heartbeat: float) -> Any:
    """An open py-amqp connection (through kombu), every wait on it bounded.

    Raises:
        BrokerConnectionError: unreachable, refused, or no handshake within ``connect_timeout``.
    """
    try:
        from kombu.connection import Connection
    except ImportError as exc:
        raise ConfigurationError(
            "The RabbitMQ broker needs kombu: pip install 'django-taskq[amqp]'.") from exc
    # pyamqp:// forces py-amqp even where librabbitmq is installed.
    address = "pyamqp://" + options.url.split("://", 1)[1]
    client = Connection(
        address, ssl=tls_settings(options, urlsplit(options.url).hostname or "localhost"),
        connect_timeout=options.connect_timeout, heartbeat=heartbeat,
        transport_options={"read_timeout": options.confirm_timeout,
                           "write_timeout": options.confirm_timeout})
    with translated("connect"):
        client.ensure_connection(max_retries=0)
    return client.connection


def disconnect(connection: Any) -> None:
    """Close ``connection`` politely, or drop it when that fails (it is going away either way)."""
    if connection is None:
        return
    try:
        connection.close()
    except Exception:  # noqa: BLE001 - a broken connection cannot say goodbye
        connection.collect()


def connection_errors() -> tuple[type[BaseException], ...]:
    """What py-amqp and kombu raise when the broker is unreachable or the connection broke."""
    import amqp
    from kombu.exceptions import OperationalError

    return (OSError, amqp.exceptions.AMQPError, OperationalError)


@contextlib.contextmanager
def translated(what: str) -> Iterator[None]:
    """Re-raise connection-level failures as BrokerConnectionError naming ``what``."""
    try:
        yield
    except BrokerConnectionError:
        raise
    except connection_errors() as exc:
        detail = "no answer in time" if isinstance(exc, TimeoutError) else mask_text(str(exc))
        raise BrokerConnectionError(
            f"RabbitMQ unreachable or connection lost ({what}): {type(exc).__name__}: {detail}"
        ) from exc
