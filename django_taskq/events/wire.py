"""Celery's event message format on a Redis or RabbitMQ broker (for Flower, ``celery events``).

Each event goes out as Celery 5's ``EventDispatcher`` publishes it: to the ``celeryev`` exchange,
routing key = the type with ``-`` → ``.`` (``task-succeeded`` → ``task.succeeded``), the event
dict as the JSON body, header ``hostname``, transient (delivery mode 1), priority 0. On RabbitMQ
the exchange is a durable topic exchange (``wire_amqp``); on Redis Celery makes it a fanout
exchange, which kombu's Redis transport carries over PUBLISH on ``/<db>.celeryev/<routing key>``
(``wire_redis``). Receivers (Flower, ``celery events``, ``app.events.Receiver``) read ours and
Celery's alike.

Each sink has connections of its own (never the worker's consuming one), opened on first use
from the monitor thread, with short deadlines: a publish that fails raises, and the dispatcher
keeps the batch for the next flush.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from .dispatcher import Sink

logger = logging.getLogger(__name__)

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


def body(event: dict[str, Any]) -> bytes:
    """The JSON body of one event (a value JSON cannot hold goes as its text: one odd field
    must not keep a whole batch from ever being sent)."""
    return json.dumps(celery_fields(event), default=str).encode(CONTENT_ENCODING)


def headers(event: dict[str, Any]) -> dict[str, Any]:
    """Celery's dispatcher headers: the sending worker's hostname."""
    return {"hostname": event.get("hostname", "")}


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
