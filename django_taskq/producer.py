"""Sending task messages: envelopes → middleware → publish signals → seal → broker.

``send`` is the one road every message takes out of a process (``delay``, ``apply_async``,
``send_task``, retries sent by a worker are the exception: they go straight to the broker in the
worker's settle transaction). The last step before the broker, ``seal``, is where the final
envelope is fixed: nothing may change it afterwards. It checks MESSAGE_MAX_BYTES and, with
SIGNING_KEYS set, signs (signing.py). Every road to a broker seals: this one, the worker's
settle (retries, follow-ups, chord bodies) and the dead letters' requeue.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from . import signals, signing
from .calloptions import arguments, new_task_id, resolve
from .clock import clock_now
from .exceptions import (
    BrokerConnectionError,
    MessageTooLarge,
    ResultBackendConnectionError,
    TaskqError,
)
from .message import Envelope, SendOptions, build_envelope, decode_body
from .registry import registry

if TYPE_CHECKING:
    from .result import AsyncResult

logger = logging.getLogger(__name__)

#: Seconds: a send that failed after this long hit a deadline; it is not tried again.
SLOW_FAILURE = 1.0

__all__ = ["SendOptions", "envelope_for", "new_task_id", "seal", "seal_all", "send",
           "send_task"]


def envelope_for(task_name: str, task_id: str, args: Sequence[Any], kwargs: dict[str, Any],
                 options: SendOptions) -> Envelope:
    """Build the message for one call."""
    if not isinstance(args, (list, tuple)):
        raise TypeError(f"args must be a list or tuple, not {type(args).__name__}.")
    if not isinstance(kwargs, dict):
        raise TypeError(f"kwargs must be a dict, not {type(kwargs).__name__}.")
    return build_envelope(task_name, tuple(args), kwargs, task_id, options)


def send_task(name: str, args: Sequence[Any] | None = None, kwargs: dict[str, Any] | None = None,
              **options: Any) -> AsyncResult:
    """Send task ``name`` by name, without importing its code (Celery's ``app.send_task``).

    When the task is registered in this process its own options apply (as Celery 5.7 does)
    and, with TASK_ALWAYS_EAGER, it runs here; a name nobody registered is simply sent.

    Returns:
        The AsyncResult (an EagerResult for an eager run).
    """
    from .result import AsyncResult

    task = registry.get(name) if name in registry else None
    if task is not None:
        return task.apply_async(args, kwargs, **options)
    args, kwargs = arguments(None, args, kwargs)
    task_id = options.pop("task_id", None) or new_task_id()
    send_options = resolve(name, None, args, kwargs, options)
    send([envelope_for(name, task_id, args, kwargs, send_options)],
         record_results=not send_options.ignore_result, options=send_options)
    return AsyncResult(task_id, task_name=name)


def send(envelopes: list[Envelope], record_results: bool,
         options: SendOptions | None = None) -> None:
    """Send through the configured middleware (``TASKQ["MIDDLEWARE"]``), then to the broker."""
    from . import middleware

    middleware.send_through(envelopes, lambda current: _publish(current, record_results, options))


def seal(envelope: Envelope) -> Envelope:
    """The last step before the broker: the envelope is final from here on.

    Raises:
        MessageTooLarge: the body is over MESSAGE_MAX_BYTES (nothing is sent).
        MessageError: SIGNING_KEYS is set and a header value cannot be signed.
    """
    return seal_all([envelope])[0]


def seal_all(envelopes: Sequence[Envelope]) -> list[Envelope]:
    """``seal`` each of ``envelopes`` (the settings read once); all or none: an error is raised
    before any is returned."""
    from .conf import get_settings

    settings = get_settings()
    limit, keys = settings.MESSAGE_MAX_BYTES, settings.SIGNING_KEYS
    for envelope in envelopes:
        if len(envelope.body) > limit:
            raise too_large(envelope, limit)
    if not keys:
        return list(envelopes)
    now = clock_now().timestamp()  # a worker's clock in a worker: its own checks use it too
    return [signing.sign(envelope, keys, now) for envelope in envelopes]


def too_large(envelope: Envelope, limit: int) -> MessageTooLarge:
    """The error for a body over ``limit`` bytes, naming the setting to change."""
    return MessageTooLarge(
        f"The message of task {envelope.task_name!r} (id {envelope.message_id}) is "
        f"{len(envelope.body)} bytes, over MESSAGE_MAX_BYTES ({limit} bytes): pass a reference "
        "to the data (a primary key, a file name) instead of the data, or raise "
        "TASKQ['MESSAGE_MAX_BYTES'] on producers and workers alike.")


def _publish(envelopes: Sequence[Envelope], record_results: bool,
             options: SendOptions | None) -> None:
    retry = options.retry if options is not None else True
    policy = options.retry_policy if options is not None and options.retry_policy else None
    if record_results:
        envelopes = _with_reply_to(envelopes, lambda send: _with_retries(send, retry, policy))
    if signals.before_task_publish.receivers:
        envelopes = [_before_publish(e, options) for e in envelopes]
    sealed = seal_all(envelopes)
    try:
        _with_retries(lambda: _send(sealed, record_results), retry, policy)
    except BrokerConnectionError as exc:
        raise BrokerConnectionError(f"could not enqueue {len(sealed)} message(s): {exc}") from exc
    _sent_events(sealed)
    if signals.after_task_publish.receivers:
        for envelope in sealed:
            signals.send(signals.after_task_publish, envelope.task_name, body=_body(envelope),
                         exchange=_delivery(envelope).get("exchange", ""),
                         routing_key=_delivery(envelope).get("routing_key", envelope.queue),
                         headers=envelope.headers, queue=envelope.queue)


def _with_reply_to(envelopes: Sequence[Envelope],
                   retried: Callable[[Callable[[], None]], None]) -> Sequence[Envelope]:
    """With results on rpc://, each message names this process's reply queue in ``reply_to``
    (as Celery's ``thread_oid``), unless the caller chose one; the queue is declared first, on
    the broker's RabbitMQ: tried again as a send is, its failure the send's."""
    from .results import ResultBackend, get_backend

    if type(get_backend()).reply_address is ResultBackend.reply_address:
        return envelopes  # every store but rpc:// (skips the retry wrapper on each send)
    found: list[str | None] = []

    def declare() -> None:
        try:
            found.append(get_backend().reply_address())
        except ResultBackendConnectionError as exc:
            raise BrokerConnectionError(f"could not enqueue {len(envelopes)} message(s): the "
                                        f"reply queue cannot be declared: {exc}") from exc

    retried(declare)
    address = found[-1]
    if address is None:
        return envelopes
    return [e if e.properties.get("reply_to") else
            e.replace(properties={**e.properties, "reply_to": address}) for e in envelopes]


def _sent_events(envelopes: Sequence[Envelope]) -> None:
    """Celery's ``task-sent`` (TASK_SEND_SENT_EVENT), stored at once in EVENTS_DATABASE: one
    INSERT per send, in the caller's transaction when there is one. The message is out: a
    failure here is logged, never raised (raising would invite a resend)."""
    from .conf import get_settings

    settings = get_settings()
    if not settings.TASK_SEND_SENT_EVENT or settings.EVENTS_DATABASE is None:
        return
    from .events import build
    from .events.store import DatabaseEventSink

    stamper = _producer_events()
    events = [stamper.stamp("task-sent", build.sent(e)) for e in envelopes]
    try:
        DatabaseEventSink(settings.EVENTS_DATABASE).publish(events)
    except TaskqError as exc:
        logger.warning("sent %d message(s) but could not store their task-sent events: %s",
                       len(events), exc)


#: This process's producer identity for events, by pid (a forked child is a producer of its
#: own): Celery names a process that is not a worker ``gen<pid>@<host>``.
_producers: dict[int, Any] = {}


def _producer_events() -> Any:
    """The EventDispatcher (no sinks: it only stamps) of this process's producer."""
    from .events.dispatcher import EventDispatcher

    pid = os.getpid()
    if pid not in _producers:
        _producers[pid] = EventDispatcher(f"gen{pid}@{socket.gethostname()}", ())
    return _producers[pid]


def _delivery(envelope: Envelope) -> dict[str, Any]:
    info = envelope.properties.get("delivery_info")
    return info if isinstance(info, dict) else {}


def _body(envelope: Envelope) -> Any:
    """The decoded ``(args, kwargs, embed)``, as Celery's publish signals pass it (decompressed:
    this process built it)."""
    return tuple(decode_body(envelope))


def _before_publish(envelope: Envelope, options: SendOptions | None) -> Envelope:
    """Celery's ``before_task_publish``: receivers may change the headers and properties they
    are given (as Celery's do); the envelope is rebuilt with their changes."""
    headers, properties = dict(envelope.headers), dict(envelope.properties)
    delivery = _delivery(envelope)
    signals.send(signals.before_task_publish, envelope.task_name, body=_body(envelope),
                 exchange=delivery.get("exchange", ""),
                 routing_key=delivery.get("routing_key", envelope.queue), headers=headers,
                 properties=properties, declare=[],
                 retry_policy=options.retry_policy if options is not None else None)
    if headers == envelope.headers and properties == envelope.properties:
        return envelope
    return envelope.replace(headers=headers, properties=properties)


def _with_retries(send: Callable[[], None], retry: bool,
                  policy: Mapping[str, float] | None) -> None:
    """Call ``send``; while the broker refuses connections, try again per Celery's publish
    retry policy (``max_retries`` more tries, waiting ``interval_start`` growing by
    ``interval_step`` up to ``interval_max`` seconds).

    Only quick failures are tried again (a refused or reset connection: the broker is
    restarting). A try that failed after waiting out a deadline (SLOW_FAILURE seconds or more)
    is not repeated, so a hung broker is still an error within one deadline, not four.
    """
    policy = policy or {}
    tries = int(policy.get("max_retries", 3)) if retry else 0
    wait = float(policy.get("interval_start", 0.0))
    while True:
        started = time.monotonic()
        try:
            send()
            return
        except BrokerConnectionError as exc:
            if tries <= 0 or time.monotonic() - started >= SLOW_FAILURE:
                raise
            tries -= 1
            logger.warning("broker unreachable while sending (%s); trying again in %.1fs",
                           exc, wait)
            time.sleep(wait)
            wait = min(wait + float(policy.get("interval_step", 0.2)),
                       float(policy.get("interval_max", 1.0)))


def _send(envelopes: Sequence[Envelope], record_results: bool) -> None:
    """Hand the envelopes to the broker and record PENDING results (unless ignored).

    On the database broker both writes join the caller's transaction (or form one of their
    own), so a PENDING record never exists without its message. Elsewhere the message goes
    first — the PENDING record is written only if absent, so a worker's faster result is never
    overwritten, and a PENDING record never names a message that was not sent; a failure to
    write it after the message went out is logged, not raised (raising would invite a resend).
    """
    from .brokers import get_broker
    from .results import get_backend

    broker = get_broker()
    records = [(e.message_id, e.task_name) for e in envelopes] if record_results else []
    if records and not broker.transactional and \
            broker.enqueue_recording(envelopes, get_backend(), records):
        return  # one round trip: broker and result backend share a Redis
    with broker.atomic():
        broker.enqueue_many(envelopes)
        if records and broker.transactional:
            get_backend().mark_pending(records)
    if records and not broker.transactional:
        try:
            get_backend().mark_pending(records)
        except TaskqError as exc:
            logger.warning("sent %d message(s) but could not record them as PENDING: %s",
                           len(records), exc)


def pair_calls(calls: Any) -> list[tuple[Sequence[Any], dict[str, Any]]]:
    """Normalise ``apply_many`` input: each item is ``(args, kwargs)``."""
    pairs = []
    for item in calls:
        if not (isinstance(item, (list, tuple)) and len(item) == 2):
            raise TypeError("apply_many takes (args, kwargs) pairs; use delay_many for args only.")
        pairs.append((item[0], item[1] or {}))
    return pairs
