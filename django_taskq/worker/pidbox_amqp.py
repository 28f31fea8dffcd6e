"""Celery's pidbox on RabbitMQ: the worker's queue bound to the fanout exchange ``celery.pidbox``.

Declared as Celery 5's worker declares them: the exchange fanout and not durable; the queue
``<hostname>.celery.pidbox`` not durable, exclusive and auto-deleted, with ``x-expires`` 10 s
and ``x-message-ttl`` 300 s (``control_queue_expires``/``control_queue_ttl``). The queue belongs
to this connection: it goes when the connection does, and a second worker with the same
hostname is refused it (RESOURCE_LOCKED). Commands are fetched with ``basic.get`` (no ack, as
kombu's node consumes them), so a poll never waits; replies are published to the direct,
non-durable reply exchange, declared first as kombu declares it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..brokers.amqp_options import AmqpOptions, connect, disconnect, translated
from ..exceptions import BrokerError
from . import pidbox

#: Transient, as kombu's mailbox exchanges send.
DELIVERY_MODE = 1


def queue_arguments() -> dict[str, int]:
    """The pidbox queue's arguments, in RabbitMQ's milliseconds."""
    return {"x-expires": int(pidbox.QUEUE_EXPIRES * 1000),
            "x-message-ttl": int(pidbox.QUEUE_TTL * 1000)}


class AmqpPidbox:
    """A connection and channel of its own, holding the worker's pidbox queue."""

    def __init__(self, options: AmqpOptions, hostname: str) -> None:
        self.options = dataclasses.replace(
            options, connect_timeout=min(options.connect_timeout, pidbox.TIMEOUT),
            confirm_timeout=min(options.confirm_timeout, pidbox.TIMEOUT))
        self.queue = pidbox.queue_name(hostname)
        self._connection: Any = None
        self._channel: Any = None

    def _open(self) -> Any:
        if self._channel is None:
            from amqp.exceptions import PreconditionFailed, ResourceLocked

            self._connection = connect(self.options, heartbeat=0)
            channel = self._connection.channel()
            try:
                channel.exchange_declare(pidbox.EXCHANGE, "fanout", durable=False,
                                         auto_delete=False)
                channel.queue_declare(self.queue, durable=False, exclusive=True,
                                      auto_delete=True, arguments=queue_arguments())
            except ResourceLocked as exc:
                raise BrokerError(
                    f"RabbitMQ's queue {self.queue!r} is held by another connection: another "
                    f"worker runs with this hostname; give each worker its own (-n). {exc}"
                ) from exc
            except PreconditionFailed as exc:
                raise BrokerError(
                    f"RabbitMQ's {pidbox.EXCHANGE!r} exchange or {self.queue!r} queue exists "
                    f"with other attributes than Celery declares: delete it. {exc}") from exc
            channel.queue_bind(self.queue, pidbox.EXCHANGE, routing_key="")
            self._channel = channel
        return self._channel

    def receive(self, limit: int) -> list[pidbox.Incoming]:
        """The commands waiting in the queue (no wait).

        Raises:
            BrokerConnectionError: RabbitMQ unreachable or the connection lost.
            BrokerError: the queue or exchange cannot be declared as Celery does.
        """
        found: list[pidbox.Incoming] = []
        try:
            with translated("read Celery remote-control commands"):
                channel = self._open()
                while len(found) < limit:
                    message = channel.basic_get(self.queue, no_ack=True)
                    if message is None:
                        break
                    found.append(incoming(message))
        except BaseException:
            self.close()
            raise
        return found

    def reply(self, body: bytes, exchange: str, routing_key: str,
              headers: dict[str, Any]) -> None:
        """Declare the reply exchange and publish the reply to it.

        Raises:
            BrokerConnectionError: RabbitMQ unreachable or the connection lost.
        """
        import amqp

        try:
            with translated("reply to a Celery remote-control command"):
                channel = self._open()
                channel.exchange_declare(exchange, "direct", durable=False, auto_delete=False)
                channel.basic_publish(
                    amqp.Message(body, content_type=pidbox.CONTENT_TYPE,
                                 content_encoding=pidbox.CONTENT_ENCODING,
                                 application_headers=headers, delivery_mode=DELIVERY_MODE),
                    exchange=exchange, routing_key=routing_key)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        disconnect(connection)


def incoming(message: Any) -> pidbox.Incoming:
    """A py-amqp message as the bridge reads it."""
    properties = message.properties
    body = message.body
    if isinstance(body, str):
        body = body.encode(pidbox.CONTENT_ENCODING)
    return pidbox.Incoming(bytes(body), str(properties.get("content_type") or ""),
                           dict(properties.get("application_headers") or {}))
