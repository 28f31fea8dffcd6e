"""Serializers: turn task arguments and results into bytes and back.

JSON is the default and the only content accepted unless ACCEPT_CONTENT says otherwise. The JSON
flavour is kombu's: datetimes, dates, times, UUIDs and Decimals travel as
``{"__type__": ..., "__value__": ...}`` so they round-trip, and Celery decodes them the same way.
Only those fixed value types are ever rebuilt from data; no class is looked up by name.

A project adds its own codec with :func:`register` (kombu's arguments). Decoding checks the
content type against the accepted ones before anything else, and refuses JSON (also YAML and
msgpack) nested deeper than JSON_MAX_DEPTH.
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

from . import nesting
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


_BUILTIN = {
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
_SERIALIZERS: dict[str, Serializer] = {}
_BY_CONTENT_TYPE: dict[str, Serializer] = {}
#: The names of every serializer, built in or registered (rebound by register/unregister).
NAMES: tuple[str, ...] = ()


def _index() -> None:
    global NAMES
    _BY_CONTENT_TYPE.clear()
    _BY_CONTENT_TYPE.update({s.content_type: s for s in _SERIALIZERS.values()})
    if "json" in _SERIALIZERS:
        _BY_CONTENT_TYPE.setdefault("application/data", _SERIALIZERS["json"])  # some clients' JSON
    NAMES = tuple(_SERIALIZERS)


_SERIALIZERS.update(_BUILTIN)
_index()


def _no_codec(name: str, what: str) -> Callable[[Any], Any]:
    def refuse(value: Any) -> Any:
        raise TypeError(f"serializer {name!r} was registered without {what}")
    return refuse


def register(name: str, encoder: Callable[[Any], bytes | str] | None,
             decoder: Callable[[bytes], Any] | None, content_type: str,
             content_encoding: str = "utf-8") -> None:
    """Add a serializer, with kombu's ``register`` arguments (a project's codec moves over as
    it is). It can then be named per task (``serializer=``), per call and in TASK_SERIALIZER /
    RESULT_SERIALIZER; a worker decodes it only when ACCEPT_CONTENT lists it.

    ``encoder`` returns bytes (or text, encoded with ``content_encoding``; ``"binary"`` for
    bytes); ``decoder`` is given the bytes. Registering a name again with the same content
    type replaces it (a built-in one too: :func:`unregister` brings that back).

    Raises:
        TypeError: an argument of the wrong kind.
        ValueError: the name has another content type, or the content type another name.
    """
    if not isinstance(name, str) or not name or "/" in name:
        raise TypeError(f"The serializer name must be a non-empty string without '/': {name!r}.")
    if not isinstance(content_type, str) or "/" not in content_type.strip("/"):
        raise TypeError(f"content_type must be a MIME type such as 'application/x-{name}', "
                        f"not {content_type!r}.")
    if not isinstance(content_encoding, str) or not content_encoding:
        raise TypeError("content_encoding must be a character set such as 'utf-8', or "
                        f"'binary' for bytes, not {content_encoding!r}.")
    if encoder is None and decoder is None or not all(
            f is None or callable(f) for f in (encoder, decoder)):
        raise TypeError(f"Serializer {name!r} needs a callable encoder, decoder, or both.")
    _check_conflicts(name, content_type)
    _SERIALIZERS[name] = Serializer(
        name, content_type, content_encoding,
        _text_to_bytes(encoder, content_encoding) if encoder else _no_codec(name, "an encoder"),
        decoder or _no_codec(name, "a decoder"))
    _index()


def _check_conflicts(name: str, content_type: str) -> None:
    existing = _SERIALIZERS.get(name)
    if existing is not None and existing.content_type != content_type:
        raise ValueError(
            f"Serializer {name!r} is already registered with content type "
            f"{existing.content_type!r}, not {content_type!r}; unregister({name!r}) first.")
    owner = _BY_CONTENT_TYPE.get(content_type)
    if owner is not None and owner.name != name and content_type != "application/data":
        raise ValueError(f"Content type {content_type!r} belongs to serializer {owner.name!r}: a "
                         "worker picks the decoder by content type, so each has one name.")


def _text_to_bytes(encoder: Callable[[Any], bytes | str],
                   content_encoding: str) -> Callable[[Any], bytes]:
    charset = "utf-8" if content_encoding in ("binary", "ascii-8bit") else content_encoding

    def encode(value: Any) -> bytes:
        data = encoder(value)
        return data.encode(charset) if isinstance(data, str) else bytes(data)
    return encode


def unregister(name: str) -> None:
    """Remove a registered serializer (kombu's ``unregister``); a built-in one that it replaced
    comes back.

    Raises:
        ValueError: the name is not registered, or is a built-in one never replaced (to refuse
            one, leave it out of ACCEPT_CONTENT).
    """
    current = _SERIALIZERS.get(name)
    if current is None:
        raise ValueError(f"No serializer {name!r} is registered; known: {', '.join(NAMES)}.")
    builtin = _BUILTIN.get(name)
    if current is builtin:
        raise ValueError(f"{name!r} is built in and cannot be unregistered; to refuse it, "
                         "leave it out of ACCEPT_CONTENT.")
    if builtin is not None:
        _SERIALIZERS[name] = builtin
    else:
        del _SERIALIZERS[name]
    _index()


def get(name: str) -> Serializer:
    """The serializer called ``name`` (or with that content type)."""
    found = _SERIALIZERS.get(name) or _BY_CONTENT_TYPE.get(name)
    if found is None:
        raise SerializationError(
            f"Unknown serializer {name!r}; known serializers: {', '.join(NAMES)} "
            "(add one with django_taskq.serializers.register).")
    return found


def dumps(value: Any, name: str = "json") -> tuple[bytes, str, str]:
    """Encode ``value``; returns the bytes, their content type and content encoding."""
    serializer = get(name)
    try:
        data = serializer.encode(value)
    except SerializationError:
        raise
    except Exception as exc:  # a codec's own error class (a registered one may raise anything)
        raise SerializationError(f"Cannot encode with {serializer.name}: {exc}") from exc
    return data, serializer.content_type, serializer.content_encoding


def accepted(content_type: str, accept: Iterable[str]) -> Serializer:
    """The serializer of ``content_type`` when ``accept`` (names or content types) allows it.
    Nothing is decoded: this is the check made before anything else.

    Raises:
        ContentDisallowed: the content type is not in ``accept``, or no serializer has it.
    """
    allowed = [found.name for found in map(_lookup, accept) if found is not None]
    # Not hashable (a list from a broker's JSON) would raise TypeError: refused like the rest.
    serializer = _BY_CONTENT_TYPE.get(content_type) if isinstance(content_type, str) else None
    if serializer is None or serializer.name not in allowed:
        what = (f"{serializer.name} content ({content_type})" if serializer is not None else
                f"content of unknown type {content_type!r} (no serializer has it)")
        raise ContentDisallowed(f"Refusing {what}: ACCEPT_CONTENT allows "
                                f"{', '.join(sorted(allowed)) or 'nothing'}.")
    return serializer


def _lookup(name: str) -> Serializer | None:
    return _SERIALIZERS.get(name) or _BY_CONTENT_TYPE.get(name)


def loads(data: bytes, content_type: str, content_encoding: str = "utf-8",
          accept: Iterable[str] = ("json",), *, max_depth: int | None = None) -> Any:
    """Decode bytes of ``content_type``, refusing any serializer not in ``accept`` (before
    decoding) and JSON, YAML or msgpack nested deeper than ``max_depth`` (default:
    JSON_MAX_DEPTH).

    Raises:
        ContentDisallowed: the content type is not accepted.
        SerializationError: the bytes do not decode, or are nested too deep.
    """
    return decode(accepted(content_type, accept), data, content_encoding, max_depth=max_depth)


def decode(serializer: Serializer, data: bytes, content_encoding: str = "utf-8", *,
           max_depth: int | None = None) -> Any:
    """Decode bytes with an already accepted serializer (see :func:`accepted`)."""
    limit = _max_depth() if max_depth is None else max_depth
    try:
        if content_encoding == "base64":
            data = base64.b64decode(data, validate=True)
        if serializer.content_type == "application/json":
            nesting.check_json(data, limit)  # before decoding: a deep document is never parsed
        value = serializer.decode(data)
        if serializer.content_type in _WALKED:
            nesting.check_value(value, limit)
        return value
    except SerializationError:
        raise
    except Exception as exc:  # any codec failure is bad input, never a crash
        raise SerializationError(f"Cannot decode {serializer.name} body: {exc}") from exc


#: Decoded (not pre-scanned) for their depth: YAML's nesting is by indentation too, and
#: msgpack's container markers are ordinary bytes.
_WALKED = frozenset({"application/x-yaml", "application/x-msgpack"})


def _max_depth() -> int:
    from .conf import get_settings

    return get_settings().JSON_MAX_DEPTH
