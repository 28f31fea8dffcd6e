"""Messages in Celery task protocol v2: build them on the producer, check and decode them on the worker.

Spec: Celery ``docs/internals/protocol.rst`` ("Version 2"). Headers carry the routing and control
fields; the body is ``[args, kwargs, embed]`` where embed holds callbacks, errbacks, chain, chord.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import reprlib
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from . import compression, serializers
from .exceptions import MessageError

#: What ``argsrepr``/``kwargsrepr`` say for a task marked ``sensitive=True``.
SENSITIVE = "<sensitive>"
#: Set (True) when the sender chose argsrepr/kwargsrepr (or the task is sensitive): only those
#: are shown or stored, never the arguments (sensitive.py).
HIDDEN_ARGS_HEADER = "taskq_hidden_args"

_repr = reprlib.Repr()
_repr.maxstring = 256
_repr.maxother = 256
_repr.maxlevel = 4


@dataclass(frozen=True, slots=True)
class Envelope:
    """What a broker stores and moves: opaque body bytes plus headers and routing data."""

    queue: str
    body: bytes
    headers: dict[str, Any]
    content_type: str = "application/json"
    content_encoding: str = "utf-8"
    priority: int = 0
    eta: datetime | None = None
    properties: dict[str, Any] = field(default_factory=dict)

    @property
    def message_id(self) -> str:
        """The task id; protocol v2 keeps it in the ``id`` header."""
        return str(self.headers.get("id", ""))

    @property
    def task_name(self) -> str:
        """The registered task name from the ``task`` header."""
        return str(self.headers.get("task", ""))

    def with_headers(self, **headers: Any) -> Envelope:
        """A copy with ``headers`` added or replaced (envelopes are values: never mutate one)."""
        return dataclasses.replace(self, headers={**self.headers, **headers})

    def replace(self, **changes: Any) -> Envelope:
        """A copy with the given fields replaced (``body``, ``headers``, ``queue``, ...)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, slots=True)
class DecodedMessage:
    """A message the worker can act on: names, ids, arguments and options, all checked."""

    task_name: str
    task_id: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    embed: dict[str, Any]
    headers: dict[str, Any]
    eta: datetime | None
    expires: datetime | None
    retries: int


#: The headers of Celery's protocol v2 itself; any other header is a custom one
#: (``apply_async(headers=...)``, middleware, ``before_task_publish`` receivers).
PROTOCOL_HEADERS = frozenset({
    "lang", "task", "id", "shadow", "eta", "expires", "group", "group_index", "retries",
    "timelimit", "root_id", "parent_id", "argsrepr", "kwargsrepr", "origin", "ignore_result",
    "replaced_task_nesting", "stamped_headers", "stamps", "compression", HIDDEN_ARGS_HEADER})


def custom_headers(headers: dict[str, Any]) -> dict[str, Any]:
    """The custom headers of a message: not protocol v2's, not a broker's bookkeeping."""
    if headers.keys() <= PROTOCOL_HEADERS:
        return {}  # the common case, without a look at each key
    return {key: value for key, value in headers.items()
            if key not in PROTOCOL_HEADERS and not key.startswith("x-taskq-")}


@functools.lru_cache(maxsize=1)
def _hostname() -> str:
    return socket.gethostname()  # a system call; asked once, not per message


def origin() -> str:
    """Who sent a message: ``gen<pid>@<host>``, as Celery writes it (the pid changes on fork)."""
    return f"gen{os.getpid()}@{_hostname()}"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


@dataclass(frozen=True, slots=True)
class SendOptions:
    """One call's options, resolved to absolute values (calloptions.resolve builds them)."""

    queue: str
    priority: int = 0
    eta: datetime | None = None
    expires: datetime | None = None
    serializer: str = "json"
    compression: str | None = None
    ignore_result: bool = False
    headers: dict[str, Any] = field(default_factory=dict)
    timelimit: tuple[float | None, float | None] = (None, None)
    parent_id: str | None = None
    root_id: str | None = None
    group_id: str | None = None
    group_index: int | None = None
    shadow: str | None = None
    argsrepr: str | None = None
    kwargsrepr: str | None = None
    exchange: str = ""
    routing_key: str | None = None
    reply_to: str = ""
    correlation_id: str | None = None
    retry: bool = True
    retry_policy: Mapping[str, float] = field(default_factory=dict)
    #: The body's workflow fields, as Celery writes them: lists of signature dicts
    #: (``callbacks`` = link, ``errbacks`` = link_error, ``chain`` reversed), ``chord`` a dict.
    callbacks: list[dict[str, Any]] | None = None
    errbacks: list[dict[str, Any]] | None = None
    chain: list[dict[str, Any]] | None = None
    chord: dict[str, Any] | None = None


def build_envelope(task_name: str, args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any],
                   task_id: str, options: SendOptions) -> Envelope:
    """Build the protocol v2 message for one task call.

    Raises:
        SerializationError: the arguments cannot be encoded with ``options.serializer``.
    """
    embed = {"callbacks": options.callbacks, "errbacks": options.errbacks,
             "chain": options.chain, "chord": options.chord}
    body, content_type, content_encoding = serializers.dumps([list(args), kwargs, embed],
                                                             options.serializer)
    headers: dict[str, Any] = dict(options.headers)
    if options.compression:
        # kombu's way: the body compressed, the method in the ``compression`` header, the
        # content type still the serializer's.
        body, headers["compression"] = compression.compress(options.compression, body)
    headers.update({
        "lang": "py", "task": task_name, "id": task_id, "shadow": options.shadow,
        "eta": _iso(options.eta), "expires": _iso(options.expires), "group": options.group_id,
        "group_index": options.group_index, "retries": 0, "timelimit": list(options.timelimit),
        "root_id": options.root_id or task_id, "parent_id": options.parent_id,
        "argsrepr": _repr.repr(tuple(args)) if options.argsrepr is None else options.argsrepr,
        "kwargsrepr": _repr.repr(kwargs) if options.kwargsrepr is None else options.kwargsrepr,
        "origin": origin(), "ignore_result": options.ignore_result,
    })
    if options.argsrepr is not None or options.kwargsrepr is not None:
        headers[HIDDEN_ARGS_HEADER] = True
    properties = {
        "correlation_id": options.correlation_id or task_id, "reply_to": options.reply_to,
        "delivery_mode": 2, "priority": options.priority,
        "delivery_info": {"exchange": options.exchange,
                          "routing_key": options.routing_key or options.queue},
    }
    return Envelope(queue=options.queue, body=body, headers=headers, content_type=content_type,
                    content_encoding=content_encoding, priority=options.priority,
                    eta=options.eta, properties=properties)


def _parse_time(headers: dict[str, Any], key: str) -> datetime | None:
    value = headers.get(key)
    if value in (None, ""):
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise MessageError(f"Header {key!r} is not an ISO 8601 time: {value!r}.") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def decode_body(envelope: Envelope, accept: tuple[str, ...] | None = None,
                max_bytes: int | None = None) -> Any:
    """The decoded body of a message, checked in this order: its content type is accepted
    (before anything else: a refused body is never decompressed or decoded), it is
    decompressed per its ``compression`` header (never beyond ``max_bytes``), then decoded with
    the JSON depth limit (JSON_MAX_DEPTH).

    ``accept`` (serializer names or content types): None trusts the envelope's own content
    type, for a message this process built or already accepted; a worker decoding a delivery
    passes ACCEPT_CONTENT. ``max_bytes``: default MESSAGE_MAX_BYTES.

    Raises:
        ContentDisallowed: the content type is not accepted.
        SerializationError: it does not decompress or decode, inflates beyond ``max_bytes`` or
            nests too deep.
    """
    serializer = serializers.accepted(
        envelope.content_type, (envelope.content_type,) if accept is None else accept)
    body = envelope.body
    method = envelope.headers.get("compression") if isinstance(envelope.headers, dict) else None
    if method:
        if max_bytes is None:
            from .conf import get_settings

            max_bytes = get_settings().MESSAGE_MAX_BYTES
        body = compression.decompress(str(method), body, max_bytes)
    return serializers.decode(serializer, body, envelope.content_encoding)


def decode(envelope: Envelope, accept: tuple[str, ...] | None = None) -> DecodedMessage:
    """Check and decode a delivered message (``accept``: default ACCEPT_CONTENT).

    Raises:
        MessageError: headers are missing or malformed, or the body is not ``[args, kwargs, embed]``.
        ContentDisallowed, SerializationError: the body's content type is refused, or it is
            undecodable, too large once inflated (MESSAGE_MAX_BYTES) or too deep (JSON_MAX_DEPTH).
    """
    headers = envelope.headers
    if not isinstance(headers, dict):
        raise MessageError("Message headers are not a mapping.")
    task_name, task_id = headers.get("task"), headers.get("id")
    if not isinstance(task_name, str) or not task_name:
        raise MessageError("Message has no 'task' header (not Celery protocol v2).")
    if not isinstance(task_id, str) or not task_id:
        raise MessageError("Message has no 'id' header (not Celery protocol v2).")
    if accept is None:
        from .conf import get_settings

        accept = get_settings().ACCEPT_CONTENT
    body = decode_body(envelope, accept)
    if not (isinstance(body, (list, tuple)) and len(body) == 3):
        raise MessageError("Message body is not [args, kwargs, embed] (Celery protocol v2).")
    args, kwargs, embed = body
    if not isinstance(args, (list, tuple)) or not isinstance(kwargs, dict):
        raise MessageError("Message body has args that are not a list or kwargs not a mapping.")
    retries = headers.get("retries") or 0
    if not isinstance(retries, int):
        raise MessageError(f"Header 'retries' is not an integer: {retries!r}.")
    return DecodedMessage(
        task_name=task_name, task_id=task_id, args=tuple(args), kwargs=kwargs,
        embed=embed if isinstance(embed, dict) else {}, headers=headers,
        eta=_parse_time(headers, "eta"), expires=_parse_time(headers, "expires"), retries=retries,
    )


def retry_envelope(original: Envelope, *, eta: datetime | None, args: Any = None,
                   kwargs: Any = None, options: Mapping[str, Any] | None = None) -> Envelope:
    """The next delivery of a retried task: same id, queue and priority, ``retries + 1``.

    The body is kept byte for byte unless new ``args``/``kwargs`` are given (then it is encoded
    again with the original content type and compression, keeping the embedded workflow
    fields). ``options``
    (``self.retry(queue=, priority=, headers=)``) change where and how it goes.
    """
    options = options or {}
    headers = {key: value for key, value in original.headers.items()
               if not key.startswith("x-taskq-")}  # broker bookkeeping starts afresh
    headers.update(options.get("headers") or {})
    headers["retries"] = int(headers.get("retries") or 0) + 1
    headers["eta"] = _iso(eta)
    body, content_type, encoding = original.body, original.content_type, original.content_encoding
    if args is not None or kwargs is not None:
        old_args, old_kwargs, embed = decode_body(original)
        new_args = list(old_args if args is None else args)
        new_kwargs = dict(old_kwargs if kwargs is None else kwargs)
        body, content_type, encoding = serializers.dumps(
            [new_args, new_kwargs, embed], serializers.get(content_type).name)
        if headers.get("compression"):
            body, headers["compression"] = compression.compress(headers["compression"], body)
        if not headers.get(HIDDEN_ARGS_HEADER):  # the sender's argsrepr stays for every retry
            headers["argsrepr"] = _repr.repr(tuple(new_args))
            headers["kwargsrepr"] = _repr.repr(new_kwargs)
    queue = options.get("queue") or original.queue
    priority = options.get("priority", original.priority)
    properties = {key: value for key, value in original.properties.items()
                  if key in ("correlation_id", "reply_to", "delivery_mode")}
    properties["priority"] = priority
    delivery = original.properties.get("delivery_info") or {}
    same_route = queue == original.queue and isinstance(delivery, dict)
    properties["delivery_info"] = {  # a custom routing key stays with its queue
        "exchange": delivery.get("exchange", "") if same_route else "",
        "routing_key": delivery.get("routing_key") or queue if same_route else queue}
    return Envelope(queue=queue, body=body, headers=headers, content_type=content_type,
                    content_encoding=encoding, priority=priority, eta=eta,
                    properties=properties)
