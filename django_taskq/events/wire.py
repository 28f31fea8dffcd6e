"""Celery's event message format on a Redis or RabbitMQ broker (for Flower, ``celery events``).

Each event goes out as Celery 5's ``EventDispatcher`` publishes it: to the ``celeryev`` exchange,
routing key = the type with ``-`` → ``.`` (``task-succeeded`` → ``task.succeeded``), the event
dict as the JSON body, header ``hostname``, transient (delivery mode 1), priority 0. Task events
that come together go as one list under ``task.multi``, as Celery's worker sends them. On
RabbitMQ the exchange is a durable topic exchange (``wire_amqp``); on Redis Celery makes it a
fanout exchange, which kombu's Redis transport carries over PUBLISH on
``/<db>.celeryev/<routing key>`` (``wire_redis``). Receivers (Flower, ``celery events``,
``app.events.Receiver``) read ours and Celery's alike.

Each sink has connections of its own (never the worker's consuming one), opened on first use
from the monitor thread, with short deadlines: a publish that fails raises, and the dispatcher
keeps the batch for the next flush.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .dispatcher import TASK_EVENT_PREFIX, Sink

#: Celery's ``event_exchange`` default.
EXCHANGE = "celeryev"
#: Celery's dispatcher sends events transient (``delivery_mode=1``) and unprioritised.
DELIVERY_MODE = 1
PRIORITY = 0
CONTENT_TYPE = "application/json"
CONTENT_ENCODING = "utf-8"
#: Seconds any event publish may wait on the broker (the monitor thread also heart-beats).
TIMEOUT = 3.0
#: Celery always sends three load averages (zeros where the system has none).
NO_LOADAVG = [0.0, 0.0, 0.0]
#: Celery's worker sends task events in lists of up to ``buffer_limit`` (24) under the routing
#: key ``task.multi``; receivers (Celery 4+, Flower) unpack them. One message per event costs
#: ~3x more on the broker and in the monitor thread.
MULTI_LIMIT = 24
MULTI_KEY = "task.multi"


def routing_key(event: dict[str, Any]) -> str:
    """The routing key Celery publishes an event with: its type, dashes made dots."""
    return str(event.get("type", "")).replace("-", ".")


def celery_fields(event: dict[str, Any]) -> dict[str, Any]:
    """The event as Celery's receivers expect it: worker events carry three load averages
    (our extra worker fields, ``pool``/``concurrency``/``queues``, are kept: receivers store
    unknown fields as attributes and ignore them)."""
    if str(event.get("type", "")).startswith("worker-") and not event.get("loadavg"):
        return {**event, "loadavg": NO_LOADAVG}
    return event


@dataclass(frozen=True, slots=True)
class Message:
    """One event message: its routing key, JSON body and ``hostname`` header."""

    routing_key: str
    body: bytes
    hostname: str

    @property
    def headers(self) -> dict[str, Any]:
        """Celery's dispatcher headers: the sending worker's hostname."""
        return {"hostname": self.hostname}


def _encode(value: Any) -> bytes:
    # A value JSON cannot hold goes as its text: one odd field must not keep a whole batch
    # from ever being sent.
    return json.dumps(value, default=str).encode(CONTENT_ENCODING)


def _message(chunk: list[dict[str, Any]]) -> Message:
    first = chunk[0]
    hostname = str(first.get("hostname", ""))
    if len(chunk) == 1:
        return Message(routing_key(first), _encode(celery_fields(first)), hostname)
    return Message(MULTI_KEY, _encode(chunk), hostname)


def messages(events: Sequence[dict[str, Any]]) -> list[Message]:
    """The messages for a batch, in order: each worker event alone (as
    ``EventDispatcher.send``), consecutive task events of one worker in lists of up to
    ``MULTI_LIMIT`` (as Celery's worker buffers them), a list of one sent as the plain event."""
    result: list[Message] = []
    chunk: list[dict[str, Any]] = []
    for event in events:
        grouped = str(event.get("type", "")).startswith(TASK_EVENT_PREFIX)
        joins = (grouped and chunk and len(chunk) < MULTI_LIMIT
                 and chunk[0].get("hostname") == event.get("hostname"))
        if not joins and chunk:
            result.append(_message(chunk))
            chunk = []
        if grouped:
            chunk.append(event)
        else:
            result.append(_message([event]))
    if chunk:
        result.append(_message(chunk))
    return result


def celery_sink_for(broker: Any) -> Sink | None:
    """The sink that publishes Celery event messages on ``broker``'s server, or None (the
    database and memory brokers have no event exchange)."""
    from ..brokers.amqp import AmqpBroker
    from ..brokers.redis import RedisBroker

    if isinstance(broker, RedisBroker):
        from .wire_redis import RedisEventSink

        return RedisEventSink(broker.url)
    if isinstance(broker, AmqpBroker):
        from .wire_amqp import AmqpEventSink

        return AmqpEventSink(broker.options)
    return None
