"""Celery events on RabbitMQ: the durable topic exchange ``celeryev``.

A connection and channel of its own (no heartbeats: the monitor thread publishes at least every
EVENTS_HEARTBEAT seconds, and a broken connection shows on the next write), no publisher
confirms (Celery's events are fire-and-forget too). Each ``publish`` call declares the exchange
first, as Celery's producer does: that re-creates it if it was deleted, and its reply surfaces a
channel the server closed since the last call instead of publishing into the void.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from ..brokers.amqp_options import AmqpOptions, connect, disconnect, translated
from ..exceptions import BrokerError
from . import wire


def to_message(message: wire.Message) -> Any:
    """The AMQP message Celery's dispatcher publishes (py-amqp's Message)."""
    import amqp

    return amqp.Message(message.body, content_type=wire.CONTENT_TYPE,
                        content_encoding=wire.CONTENT_ENCODING,
                        application_headers=message.headers,
                        delivery_mode=wire.DELIVERY_MODE, priority=wire.PRIORITY)


def declare(channel: Any) -> None:
    """Declare ``celeryev`` as Celery does (durable topic).

    Raises:
        BrokerError: it exists with other attributes (RabbitMQ refuses to redeclare it).
    """
    from amqp.exceptions import PreconditionFailed

    try:
        channel.exchange_declare(wire.EXCHANGE, "topic", durable=True, auto_delete=False)
    except PreconditionFailed as exc:
        raise BrokerError(
            f"RabbitMQ's exchange {wire.EXCHANGE!r} exists, but not as Celery declares it (a "
            f"durable topic exchange): delete it, or set EVENTS_CELERY to False. {exc}") from exc


class AmqpEventSink:
    """Publishes events to Celery's event exchange on RabbitMQ."""

    def __init__(self, options: AmqpOptions) -> None:
        self.options = dataclasses.replace(
            options, connect_timeout=min(options.connect_timeout, wire.TIMEOUT),
            confirm_timeout=min(options.confirm_timeout, wire.TIMEOUT))
        self._connection: Any = None
        self._channel: Any = None

    def _open(self) -> Any:
        if self._channel is None:
            self._connection = connect(self.options, heartbeat=0)
            self._channel = self._connection.channel()
        return self._channel

    def publish(self, events: Sequence[dict[str, Any]]) -> None:
        """Declare the exchange, then publish every event on the one channel.

        Raises:
            BrokerConnectionError: RabbitMQ unreachable, the connection lost, or no answer in
                time (the connection is dropped; the next call opens a new one).
        """
        try:
            with translated("publish events"):
                channel = self._open()
                declare(channel)
                for message in wire.messages(events):
                    channel.basic_publish(to_message(message), exchange=wire.EXCHANGE,
                                          routing_key=message.routing_key)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        disconnect(connection)
