"""Compression of message bodies and stored results, with kombu's names and header values.

A compressed message keeps its serializer's content type and says how its body was compressed
in the ``compression`` header, as kombu writes it (``application/x-gzip`` for zlib, ...), so
Celery producers and workers read ours and we read theirs. Decompression is always bounded: a
body that would inflate beyond MESSAGE_MAX_BYTES is refused before it is ever held in memory
(a "decompression bomb" costs at most that much).
"""

from __future__ import annotations

import importlib
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .exceptions import SerializationError

#: A stream decompressor with the ``decompress(data, max_length)`` / ``eof`` / ``unused_data``
#: interface of the standard library's.
Decompressor = Any


@dataclass(frozen=True, slots=True)
class Method:
    """One compression method: its name, kombu's header value and aliases, and where it lives."""

    name: str
    content_type: str
    aliases: tuple[str, ...]
    #: Imports the module that does the work; raises ImportError when it is not installed.
    load: Callable[[], Any]
    #: What to ``pip install`` when ``load`` fails (None: the standard library's).
    package: str | None = None


def _zstd() -> Any:
    if sys.version_info >= (3, 14):
        return importlib.import_module("compression.zstd")
    return importlib.import_module("backports.zstd")  # what kombu imports before 3.14


def _brotli() -> Any:
    module = importlib.import_module("brotli")
    if not hasattr(module.Decompressor, "can_accept_more_data"):
        # Before 1.2 the decompressor cannot stop at a size: bounded decompression needs it.
        raise ImportError("brotli>=1.2 is needed (bounded decompression)")
    return module


#: kombu's methods (kombu/compression.py), with its header values and aliases.
METHODS = (
    Method("zlib", "application/x-gzip", ("gzip",), lambda: zlib),
    Method("bzip2", "application/x-bz2", ("bzip",), lambda: importlib.import_module("bz2")),
    Method("lzma", "application/x-lzma", ("xz",), lambda: importlib.import_module("lzma")),
    Method("zstd", "application/zstd", ("zstandard",), _zstd,
           "backports.zstd" if sys.version_info < (3, 14) else None),
    Method("brotli", "application/x-brotli", (), _brotli, "brotli>=1.2"),
)
_BY_NAME = {key: m for m in METHODS for key in (m.name, m.content_type, *m.aliases)}


def known() -> str:
    """The names a setting or option may use, for error messages."""
    return ", ".join(f"{m.name} ({', '.join(m.aliases)})" if m.aliases else m.name
                     for m in METHODS)


def method(name: str) -> Method:
    """The method called ``name`` (a name, an alias or its header value), usable here.

    Raises:
        SerializationError: the name is unknown (the message lists the known ones), or the
            method's package is not installed (the message names the pip package).
    """
    found = _BY_NAME.get(name) if isinstance(name, str) else None
    if found is None:
        raise SerializationError(f"Unknown compression {name!r}; known: {known()}.")
    try:
        found.load()
    except ImportError as exc:
        fix = (f"pip install '{found.package}'" if found.package
               else "this Python was built without it")
        raise SerializationError(
            f"Compression {found.name!r} is not available: {fix} ({exc}).") from exc
    return found


def check(name: str) -> str:
    """``name`` if it names a usable method (settings and task options check with it).

    Raises:
        SerializationError: as :func:`method`.
    """
    method(name)
    return name


def compress(name: str, data: bytes) -> tuple[bytes, str]:
    """``data`` compressed with method ``name``; returns the bytes and the header value to send.

    Raises:
        SerializationError: as :func:`method`.
    """
    found = method(name)
    return found.load().compress(data), found.content_type


def _decompressor(found: Method) -> Callable[[], Decompressor]:
    module = found.load()
    if found.name == "zlib":
        # 32 + 15: a zlib stream (what kombu writes) or a gzip one, by its header.
        return lambda: zlib.decompressobj(wbits=32 + zlib.MAX_WBITS)
    if found.name == "brotli":
        return lambda: _BrotliStream(module)
    stream: Callable[[], Decompressor] = getattr(module, _STREAMS[found.name])
    return stream


_STREAMS = {"bzip2": "BZ2Decompressor", "lzma": "LZMADecompressor", "zstd": "ZstdDecompressor"}


def decompress(header: str, data: bytes, max_bytes: int) -> bytes:
    """Undo :func:`compress`: ``header`` is the message's ``compression`` header.

    Never inflates more than ``max_bytes`` (plus one byte, to tell that it would).

    Raises:
        SerializationError: unknown method, missing package, corrupt or truncated data, or a
            body larger than ``max_bytes`` once inflated (MESSAGE_MAX_BYTES).
    """
    found = method(header)
    make = _decompressor(found)
    out = bytearray()
    try:
        while True:  # one stream after another: gzip members, xz streams, zstd frames
            stream = make()
            out += stream.decompress(data, max_bytes + 1 - len(out))
            if len(out) > max_bytes:
                raise SerializationError(
                    f"The {found.name}-compressed body inflates to more than MESSAGE_MAX_BYTES "
                    f"({max_bytes} bytes); refused (a decompression bomb, or raise "
                    f"TASKQ['MESSAGE_MAX_BYTES']).")
            if not stream.eof:
                raise SerializationError(f"The {found.name}-compressed body ends early "
                                         "(truncated or corrupt).")
            data = stream.unused_data
            if not data:
                return bytes(out)
    except SerializationError:
        raise
    except Exception as exc:  # each library has its own error class; all are bad input
        raise SerializationError(f"Cannot decompress the {found.name} body: {exc}") from exc


class _BrotliStream:
    """brotli's decompressor behind the standard library's stream interface."""

    unused_data = b""

    def __init__(self, module: Any) -> None:
        self._inner = module.Decompressor()

    @property
    def eof(self) -> bool:
        return bool(self._inner.is_finished())

    def decompress(self, data: bytes, max_length: int) -> bytes:
        out = bytearray(self._inner.process(data, output_buffer_limit=max_length))
        # Past the limit the input is held inside; draining it a bounded slice at a time.
        while len(out) < max_length and not self._inner.can_accept_more_data():
            more = self._inner.process(b"", output_buffer_limit=max_length - len(out))
            if not more:
                break
            out += more
        return bytes(out)
