"""Celery's pidbox on Redis, as kombu's Redis transport carries it.

``celery.pidbox`` is a fanout exchange: kombu PUBLISHes each command (a whole kombu message,
body in base64) on the channel ``/<db>.celery.pidbox`` and every worker subscribed there gets
it; nothing is kept for a worker that is not listening. The reply exchange is a direct one:
kombu looks the caller's routing key up in the binding set ``_kombu.binding.reply.celery.pidbox``
(members ``routing key, pattern, queue`` joined by ``\\x06\\x16``) and LPUSHes the reply onto
each bound queue, which the caller pops. No binding means the caller is gone: the reply is
dropped, as kombu drops it.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from ..redisconn import client_from_url, translated
from ..service_url import ParsedUrl
from . import pidbox

#: kombu's Redis transport: binding sets, and the separator of their members.
BINDING_KEY = "_kombu.binding.{exchange}"
SEPARATOR = "\x06\x16"
#: Replies go as kombu's producer sends them through the transient reply exchange.
DELIVERY_MODE = 1
PRIORITY = 0


def channel_name(db: int) -> str:
    """The PUB/SUB channel kombu broadcasts commands on in database ``db``."""
    return f"/{db}.{pidbox.EXCHANGE}"


def parse(data: bytes | str) -> pidbox.Incoming:
    """One kombu message from the channel.

    Raises:
        ValueError: not a kombu message.
    """
    message = json.loads(data)
    if not isinstance(message, dict) or "body" not in message:
        raise ValueError(f"not a kombu message: {str(message)[:200]}")
    body = message["body"]
    properties = message.get("properties") or {}
    raw = (base64.b64decode(body) if properties.get("body_encoding") == "base64"
           else str(body).encode(pidbox.CONTENT_ENCODING))
    return pidbox.Incoming(raw, str(message.get("content-type") or ""),
                           dict(message.get("headers") or {}))


def reply_message(body: bytes, exchange: str, routing_key: str,
                  headers: dict[str, Any]) -> str:
    """The kombu message kombu's producer LPUSHes for one reply."""
    return json.dumps({
        "body": base64.b64encode(body).decode("ascii"),
        "content-encoding": pidbox.CONTENT_ENCODING,
        "content-type": pidbox.CONTENT_TYPE,
        "headers": headers,
        "properties": {
            "delivery_mode": DELIVERY_MODE,
            "delivery_info": {"exchange": exchange, "routing_key": routing_key},
            "priority": PRIORITY,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    })


def bound_queues(members: set[Any], routing_key: str) -> list[str]:
    """The queues of a binding set's members that ``routing_key`` reaches (direct exchange)."""
    queues = set()
    for member in members:
        parts = (member.decode() if isinstance(member, bytes) else str(member)).split(SEPARATOR)
        if len(parts) == 3 and parts[0] == routing_key:
            queues.add(parts[2])
    return sorted(queues)


class RedisPidbox:
    """A subscription to the command channel, and a client for replies."""

    def __init__(self, url: ParsedUrl, hostname: str) -> None:
        self.url = url
        self.hostname = hostname
        self._client: Any = None
        self._pubsub: Any = None

    def _open(self) -> Any:
        if self._pubsub is None:
            client = client_from_url(self.url, "BROKER_URL")
            options = client.connection_pool.connection_kwargs
            for option in ("socket_timeout", "socket_connect_timeout"):
                options[option] = min(options.get(option) or pidbox.TIMEOUT, pidbox.TIMEOUT)
            self._client = client
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(channel_name(int(options.get("db") or 0)))
            self._pubsub = pubsub
        return self._pubsub

    def receive(self, limit: int) -> list[pidbox.Incoming]:
        """What the subscription has buffered (no wait).

        Raises:
            BrokerConnectionError: Redis unreachable or the connection lost.
        """
        found: list[pidbox.Incoming] = []
        with translated("read Celery remote-control commands"):
            pubsub = self._open()
            while len(found) < limit:
                event = pubsub.get_message(timeout=0.0)
                if event is None:
                    break
                if event.get("type") != "message":
                    continue
                try:
                    found.append(parse(event["data"]))
                except ValueError:  # someone else's traffic on the channel
                    continue
        return found

    def reply(self, body: bytes, exchange: str, routing_key: str,
              headers: dict[str, Any]) -> None:
        """LPUSH the reply onto every queue bound to ``exchange`` with ``routing_key``.

        Raises:
            BrokerConnectionError: Redis unreachable or the connection lost.
        """
        with translated("reply to a Celery remote-control command"):
            self._open()
            members = self._client.smembers(BINDING_KEY.format(exchange=exchange))
            queues = bound_queues(members, routing_key)
            message = reply_message(body, exchange, routing_key, headers)
            for queue in queues:
                self._client.lpush(queue, message)

    def close(self) -> None:
        pubsub, client, self._pubsub, self._client = self._pubsub, self._client, None, None
        for resource in (pubsub, client):
            if resource is not None:
                try:
                    resource.close()
                except Exception:  # noqa: BLE001 - it is going away either way
                    pass
