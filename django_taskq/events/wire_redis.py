"""Celery events on Redis: kombu's fanout exchange, i.e. PUBLISH on ``/<db>.celeryev/<key>``.

Celery turns the ``celeryev`` exchange into a fanout exchange on Redis; kombu's Redis transport
(``fanout_prefix`` and ``fanout_patterns`` on, their defaults) publishes a fanout message as a
whole kombu message (body base64, delivery info, a delivery tag) on the channel
``/<db>.<exchange>/<routing key>``, and a receiver bound with ``#`` subscribes to the pattern
``/<db>.celeryev/*``. One ``publish`` call is one pipeline: one round trip per flush.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from typing import Any

from ..redisconn import client_from_url, translated
from ..service_url import ParsedUrl
from . import wire


def channel_name(db: int, routing_key: str) -> str:
    """kombu's PUB/SUB channel for a fanout message to ``celeryev`` in database ``db``."""
    return f"/{db}.{wire.EXCHANGE}/{routing_key}"


def to_message(message: wire.Message) -> str:
    """The kombu message kombu's Redis transport publishes for one event message."""
    return json.dumps({
        "body": base64.b64encode(message.body).decode("ascii"),
        "content-encoding": wire.CONTENT_ENCODING,
        "content-type": wire.CONTENT_TYPE,
        "headers": message.headers,
        "properties": {
            "delivery_mode": wire.DELIVERY_MODE,
            "delivery_info": {"exchange": wire.EXCHANGE, "routing_key": message.routing_key},
            "priority": wire.PRIORITY,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    })


class RedisEventSink:
    """Publishes events where kombu's Redis transport carries Celery's event exchange."""

    def __init__(self, url: ParsedUrl) -> None:
        self.url = url
        self._client: Any = None
        self._db = 0

    def _connect(self) -> Any:
        if self._client is None:
            client = client_from_url(self.url, "BROKER_URL")
            pool_options = client.connection_pool.connection_kwargs
            # Shorter deadlines than the broker's: the monitor thread also sends heartbeats.
            for option in ("socket_timeout", "socket_connect_timeout"):
                pool_options[option] = min(pool_options.get(option) or wire.TIMEOUT,
                                           wire.TIMEOUT)
            self._db = int(pool_options.get("db") or 0)
            self._client = client
        return self._client

    def publish(self, events: Sequence[dict[str, Any]]) -> None:
        """PUBLISH every event in one pipeline.

        Raises:
            BrokerConnectionError: Redis unreachable or too slow.
        """
        with translated("publish events"):
            pipe = self._connect().pipeline(transaction=False)
            for message in wire.messages(events):
                pipe.publish(channel_name(self._db, message.routing_key), to_message(message))
            pipe.execute()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
