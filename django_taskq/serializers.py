"""Serializers: turn task arguments and results into bytes and back.

JSON is the default and the only content accepted unless ACCEPT_CONTENT says otherwise. The JSON
flavour is kombu's: datetimes, dates, times, UUIDs and Decimals travel as
``{"__type__": ..., "__value__": ...}`` so they round-trip, and Celery decodes them the same way.
Only those fixed value types are ever rebuilt from data; no class is looked up by name.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import json
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .exceptions import ContentDisallowed, SerializationError


@dataclass(frozen=True, slots=True)
class Serializer:
    """A named codec: content type, encoding, and the two functions."""

    name: str
    content_type: str
    content_encoding: str
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]


_TYPED_ENCODERS: dict[type, tuple[str, Callable[[Any], str]]] = {
    datetime.datetime: ("datetime", lambda v: v.isoformat()),
    datetime.date: ("date", lambda v: v.isoformat()),
    datetime.time: ("time", lambda v: v.isoformat()),
    uuid.UUID: ("uuid", str),
    decimal.Decimal: ("decimal", str),
}

_TYPED_DECODERS: dict[str, Callable[[str], Any]] = {
    "datetime": datetime.datetime.fromisoformat,
    "date": datetime.date.fromisoformat,
    "time": datetime.time.fromisoformat,
    "uuid": uuid.UUID,
    "decimal": decimal.Decimal,
    "bytes": lambda v: v.encode("utf-8"),
}


def _json_default(value: Any) -> Any:
    typed = _TYPED_ENCODERS.get(type(value))
    if typed is None:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
    name, to_text = typed
    return {"__type__": name, "__value__": to_text(value)}


def _json_object_hook(obj: dict[str, Any]) -> Any:
    if len(obj) == 2 and "__type__" in obj and "__value__" in obj:
        decoder = _TYPED_DECODERS.get(obj["__type__"])
        if decoder is not None:
            return decoder(obj["__value__"])
    return obj


def _json_encode(value: Any) -> bytes:
    return json.dumps(value, default=_json_default, separators=(",", ":")).encode("utf-8")


def _json_decode(data: bytes) -> Any:
    return json.loads(data, object_hook=_json_object_hook)


def _msgpack_codec() -> tuple[Callable[[Any], bytes], Callable[[bytes], Any]]:
    import msgpack

    return (lambda v: msgpack.packb(v, use_bin_type=True),
            lambda d: msgpack.unpackb(d, raw=False))


def _yaml_codec() -> tuple[Callable[[Any], bytes], Callable[[bytes], Any]]:
    import yaml

    return (lambda v: yaml.safe_dump(v).encode("utf-8"), yaml.safe_load)


def _pickle_codec() -> tuple[Callable[[Any], bytes], Callable[[bytes], Any]]:
    import pickle

    # Only reachable when the user lists "pickle" in ACCEPT_CONTENT (promise 7).
    return pickle.dumps, pickle.loads  # noqa: S301


def _lazy(loader: Callable[[], tuple[Callable[[Any], bytes], Callable[[bytes], Any]]],
          index: int) -> Callable[[Any], Any]:
    def call(value: Any) -> Any:
        return loader()[index](value)
    return call


_SERIALIZERS = {
    s.name: s
    for s in (
        Serializer("json", "application/json", "utf-8", _json_encode, _json_decode),
        Serializer("msgpack", "application/x-msgpack", "binary",
                   _lazy(_msgpack_codec, 0), _lazy(_msgpack_codec, 1)),
        Serializer("yaml", "application/x-yaml", "utf-8",
                   _lazy(_yaml_codec, 0), _lazy(_yaml_codec, 1)),
        Serializer("pickle", "application/x-python-serialize", "binary",
                   _lazy(_pickle_codec, 0), _lazy(_pickle_codec, 1)),
    )
}
_BY_CONTENT_TYPE = {s.content_type: s for s in _SERIALIZERS.values()}
_BY_CONTENT_TYPE["application/data"] = _SERIALIZERS["json"]  # what some clients send for JSON

NAMES = tuple(_SERIALIZERS)


def get(name: str) -> Serializer:
    """The serializer called ``name`` (or with that content type)."""
    found = _SERIALIZERS.get(name) or _BY_CONTENT_TYPE.get(name)
    if found is None:
        raise SerializationError(
            f"Unknown serializer {name!r}; known serializers: {', '.join(NAMES)}.")
    return found


def dumps(value: Any, name: str = "json") -> tuple[bytes, str, str]:
    """Encode ``value``; returns the bytes, their content type and content encoding."""
    serializer = get(name)
    try:
        data = serializer.encode(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise SerializationError(f"Cannot encode with {name}: {exc}") from exc
    return data, serializer.content_type, serializer.content_encoding


def loads(data: bytes, content_type: str, content_encoding: str = "utf-8",
          accept: Iterable[str] = ("json",)) -> Any:
    """Decode bytes of ``content_type``, refusing any serializer not in ``accept``."""
    serializer = _BY_CONTENT_TYPE.get(content_type)
    if serializer is None:
        raise ContentDisallowed(f"Unknown content type {content_type!r}.")
    accepted = {get(a).name for a in accept}
    if serializer.name not in accepted:
        raise ContentDisallowed(
            f"Refusing {serializer.name} content ({content_type}): ACCEPT_CONTENT allows "
            f"{', '.join(sorted(accepted))}.")
    try:
        if content_encoding == "base64":
            data = base64.b64decode(data, validate=True)
        return serializer.decode(data)
    except Exception as exc:  # any codec failure is bad input, never a crash
        raise SerializationError(f"Cannot decode {serializer.name} body: {exc}") from exc
