"""Celery's remote-control mailbox ("pidbox") on Redis and RabbitMQ, answered by our workers.

``celery inspect``/``celery control``, ``app.control`` and Flower broadcast each command to
the fanout exchange ``celery.pidbox``: a JSON body ``{method, arguments, destination, pattern,
matcher}`` (plus ``ticket`` and ``reply_to`` when a reply is wanted) with the headers ``clock``
and ``expires``. Every worker reads them from its queue ``<hostname>.celery.pidbox`` and, as
kombu's ``Node`` does, runs the ones addressed to it; the reply ``{hostname: reply}`` goes to the
direct exchange ``reply_to["exchange"]`` (``reply.celery.pidbox``) with the caller's routing key
and the ``ticket`` header, where the caller collects it.

The bridge has a broker connection of its own (never the worker's consuming one) and is polled
by the monitor thread each tick: a poll takes what has arrived without waiting. Commands run
through :class:`~django_taskq.worker.remote.RemoteControl`, so they answer as our own control
store's do. A broken connection is logged once, dropped, and opened again at the next poll.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..exceptions import TaskqError

if TYPE_CHECKING:
    from .remote import RemoteControl
    from .worker import Worker

logger = logging.getLogger(__name__)

#: Celery's ``control_exchange`` default, and kombu's names built from it.
NAMESPACE = "celery"
EXCHANGE = f"{NAMESPACE}.pidbox"
REPLY_EXCHANGE = f"reply.{NAMESPACE}.pidbox"
#: Celery's ``control_queue_ttl`` and ``control_queue_expires`` (seconds).
QUEUE_TTL = 300.0
QUEUE_EXPIRES = 10.0
CONTENT_TYPE = "application/json"
CONTENT_ENCODING = "utf-8"
#: Seconds any pidbox call may wait on the broker (the monitor thread also heart-beats).
TIMEOUT = 3.0
#: Commands read per poll at most (the rest wait for the next tick).
BATCH = 100
#: kombu stamps each command with ``expires`` = the caller's clock + its timeout (1 s by
#: default). A command read later than that has no one waiting for its reply, and a late
#: ``pool_grow`` would surprise; the grace keeps a caller whose clock is a little behind ours
#: from being ignored.
EXPIRES_GRACE = 5.0
#: Seconds between attempts while the broker fails (each one may open a connection).
RETRY_AFTER = 2.0
#: Distinct skipped-command warnings logged per worker (odd traffic cannot flood the log).
WARNED_MAX = 50


def queue_name(hostname: str) -> str:
    """The worker's pidbox queue, as kombu names it."""
    return f"{hostname}.{EXCHANGE}"


@dataclass(frozen=True, slots=True)
class Incoming:
    """One command message as it came off the broker."""

    body: bytes
    content_type: str
    headers: dict[str, Any] = field(default_factory=dict)


class Transport(Protocol):
    """A broker's side of the mailbox (``pidbox_redis``, ``pidbox_amqp``)."""

    def receive(self, limit: int) -> list[Incoming]:
        """The commands that have arrived, up to ``limit``, without waiting."""

    def reply(self, body: bytes, exchange: str, routing_key: str,
              headers: dict[str, Any]) -> None:
        """Send one reply as kombu's ``Mailbox._publish_reply`` does."""

    def close(self) -> None:
        """Drop the connection (the next call opens a new one)."""


def addressed(body: dict[str, Any], hostname: str) -> bool:
    """Whether a command is for ``hostname``, as kombu's ``Node.handle_message`` decides:
    a ``destination`` list names it, else a ``pattern`` matches (``glob`` or ``pcre``), else
    every worker."""
    destination = body.get("destination")
    if destination:
        return hostname in destination
    pattern, matcher = body.get("pattern"), body.get("matcher")
    if pattern and matcher:
        if matcher == "glob":
            return fnmatch.fnmatch(hostname, pattern)
        if matcher == "pcre":
            try:
                return re.match(pattern, hostname) is not None
            except re.error as exc:
                raise ValueError(f"bad pcre pattern {pattern!r}: {exc}") from exc
        raise ValueError(f"unknown matcher {matcher!r} (kombu's are 'glob' and 'pcre')")
    return True


def expired(headers: dict[str, Any], now: float) -> bool:
    """Whether the caller stopped waiting for this command long ago (``expires`` header)."""
    expires = headers.get("expires")
    return isinstance(expires, (int, float)) and expires > 0 and now > expires + EXPIRES_GRACE


def decode(message: Incoming) -> dict[str, Any]:
    """The command's body.

    Raises:
        ValueError: not JSON (Celery's default ``accept_content``) or not a command.
    """
    if message.content_type != CONTENT_TYPE:
        raise ValueError(f"content type {message.content_type!r}: only JSON commands are read "
                         "(Celery's task_serializer/accept_content 'json')")
    body = json.loads(message.body.decode(CONTENT_ENCODING))
    if not isinstance(body, dict) or not isinstance(body.get("method"), str):
        raise ValueError(f"not a remote-control command: {str(body)[:200]}")
    return body


class PidboxBridge:
    """Answers Celery's mailbox for one worker (see the module docstring)."""

    def __init__(self, worker: Worker, remote: RemoteControl, transport: Transport, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.hostname = worker.options.hostname
        self.worker = worker
        self.remote = remote
        self.transport = transport
        self._clock = clock
        self._failing = False
        self._retry_at = 0.0
        self._warned: set[str] = set()

    def poll(self) -> int:
        """Answer what has arrived; how many commands were run. Never raises."""
        if self._failing and time.monotonic() < self._retry_at:
            return 0
        try:
            ran = sum(self.handle(message) for message in self.transport.receive(BATCH))
        except Exception as exc:  # noqa: BLE001 - remote control never stops the worker
            if not self._failing:  # our own errors say what is wrong; others get a traceback
                logger.warning("Celery remote control (pidbox): %s; retrying every %.0f s",
                               exc, RETRY_AFTER, exc_info=not isinstance(exc, TaskqError))
            self._failing, self._retry_at = True, time.monotonic() + RETRY_AFTER
            self.close()
            return 0
        if self._failing:
            logger.info("Celery remote control (pidbox): connected again")
        self._failing = False
        return ran

    def handle(self, message: Incoming) -> bool:
        """Run one command if it is for this worker and not expired, and send its reply."""
        try:
            body = decode(message)
            if expired(message.headers, self._clock()) or not addressed(body, self.hostname):
                return False
            arguments = body.get("arguments") or {}
            if not isinstance(arguments, dict):
                raise ValueError(f"arguments must be an object, not {arguments!r}")
        except ValueError as exc:  # a malformed command is skipped, not retried
            self._warn_once(str(exc))
            return False
        reply = self.remote.run(body["method"], arguments)
        reply_to = body.get("reply_to")
        if isinstance(reply_to, dict) and reply_to.get("exchange"):
            payload = json.dumps({self.hostname: reply}, default=str).encode(CONTENT_ENCODING)
            self.transport.reply(payload, str(reply_to["exchange"]),
                                 str(reply_to.get("routing_key") or ""),
                                 {"ticket": body.get("ticket"),
                                  "clock": self.worker.events_clock()})
        return True

    def _warn_once(self, problem: str) -> None:
        key = problem[:80]
        if key not in self._warned and len(self._warned) < WARNED_MAX:
            self._warned.add(key)
            logger.warning("Celery remote control (pidbox): command skipped: %s", problem)

    def close(self) -> None:
        try:
            self.transport.close()
        except Exception:  # noqa: BLE001 - it is going away either way
            logger.debug("pidbox close failed", exc_info=True)


def bridge_for(worker: Worker, remote: RemoteControl) -> PidboxBridge | None:
    """The bridge for ``worker``: on a Redis or RabbitMQ broker with EVENTS_CELERY on (where
    Flower sees the worker), else None."""
    from ..brokers.amqp import AmqpBroker
    from ..brokers.redis import RedisBroker
    from ..conf import get_settings

    if not get_settings().EVENTS_CELERY:
        return None
    transport: Transport
    if isinstance(worker.broker, RedisBroker):
        from .pidbox_redis import RedisPidbox

        transport = RedisPidbox(worker.broker.url, worker.options.hostname)
    elif isinstance(worker.broker, AmqpBroker):
        from .pidbox_amqp import AmqpPidbox

        transport = AmqpPidbox(worker.broker.options, worker.options.hostname)
    else:
        return None
    return PidboxBridge(worker, remote, transport)
