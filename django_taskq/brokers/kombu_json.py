"""kombu's JSON message layout, as its Redis and SQS transports keep a message: the body
base64-encoded beside the content type and encoding, the headers and the properties.

Celery producers and workers on those transports read and write exactly this, so queues are
shared both ways.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from ..message import Envelope


def dumps(envelope: Envelope, headers: dict[str, Any] | None = None) -> str:
    """The kombu JSON message for ``envelope`` (body base64, a fresh delivery tag), with
    ``headers`` in place of the envelope's when given."""
    properties = dict(envelope.properties)
    properties.setdefault("delivery_info", {"exchange": "", "routing_key": envelope.queue})
    properties.update(priority=envelope.priority, body_encoding="base64",
                      delivery_tag=str(uuid.uuid4()))
    return json.dumps({
        "body": base64.b64encode(envelope.body).decode("ascii"),
        "content-encoding": envelope.content_encoding,
        "content-type": envelope.content_type,
        "headers": envelope.headers if headers is None else headers,
        "properties": properties,
    })


def loads(raw: bytes | str, queue: str) -> Envelope:
    """The envelope of a kombu JSON message; a malformed one keeps its bytes and no headers, so
    the worker rejects it with a clear reason instead of crashing."""
    try:
        message = json.loads(raw)
        properties = message.get("properties") or {}
        body = message["body"]
        if properties.get("body_encoding") == "base64":
            body = base64.b64decode(body)
        elif isinstance(body, str):
            body = body.encode(message.get("content-encoding") or "utf-8")
        headers = message.get("headers")
        return Envelope(queue=queue, body=body, headers=headers if isinstance(headers, dict) else {},
                        content_type=message.get("content-type") or "application/json",
                        content_encoding=message.get("content-encoding") or "utf-8",
                        priority=int(properties.get("priority") or 0),
                        properties=properties if isinstance(properties, dict) else {})
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):  # deep: a bomb
        data = raw.encode("utf-8", "replace") if isinstance(raw, str) else raw
        return Envelope(queue=queue, body=data, headers={}, content_type="application/x-unknown")
