"""The result backend interface: state and encoded return value per task id."""

from __future__ import annotations

import base64
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from .. import compression, exceptions, serializers, states
from ..exceptions import ConfigurationError, SerializationError
from ..outcome import Outcome
from .meta import PartResult, ResultMeta

#: The first pause of a polling wait; it backs off (x1.5) up to ``get(interval=)``.
FIRST_POLL = 0.05

OnMessage = Callable[[dict[str, Any]], Any]
OnInterval = Callable[[], Any]

#: Celery's marker of a compressed stored result (celery/backends/base.py): the result has no
#: header to say how it was compressed, so it says so in front,
#: ``MAGIC + kombu header value + NUL + compressed bytes``. No serializer's output starts with
#: a NUL byte, so an uncompressed result is never mistaken for one.
COMPRESSED_MAGIC = b"\x00celery-compressed\x00"


class ResultBackend(ABC):
    """Stores outcomes and answers AsyncResult look-ups."""

    def __init__(self, accept: Sequence[str] = ("json",), expires: float = 86400.0,
                 serializer: str = "json", compression: str | None = None) -> None:
        self.accept = tuple(accept)
        self.expires = expires
        self.serializer = serializer
        self.compression = self._check_compression(compression)

    def _check_compression(self, name: str | None) -> str | None:
        if not name:
            return None
        try:
            compression.check(name)
        except SerializationError as exc:
            raise ConfigurationError(f"RESULT_COMPRESSION: {exc}") from exc
        return name

    def compress_payload(self, data: bytes) -> bytes:
        """Encoded result bytes as they are stored: compressed in Celery's format when
        RESULT_COMPRESSION is set; a result larger than MESSAGE_MAX_BYTES is stored as it is,
        so that it stays readable (reading inflates no more than that)."""
        if not self.compression or len(data) > _max_bytes():
            return data
        body, header = compression.compress(self.compression, data)
        return b"".join((COMPRESSED_MAGIC, header.encode("ascii"), b"\x00", body))

    @abstractmethod
    def mark_pending(self, records: Sequence[tuple[str, str]]) -> None:
        """Record ``(task_id, task_name)`` pairs as PENDING, leaving existing records alone."""

    @abstractmethod
    def store_many(self, outcomes: Sequence[Outcome]) -> None:
        """Store final (or intermediate) states, replacing what was there."""

    def store(self, outcome: Outcome) -> None:
        """Store one outcome."""
        self.store_many([outcome])

    @abstractmethod
    def get(self, task_id: str) -> ResultMeta | None:
        """What is known of ``task_id``, or None for an id never recorded."""

    def wait(self, task_id: str, timeout: float | None, interval: float = 0.5, *,
             on_interval: OnInterval | None = None,
             on_message: OnMessage | None = None) -> ResultMeta:
        """Block until ``task_id`` is ready; backends with push notification override this.

        ``interval`` is the longest pause between polls; ``on_interval`` is called after each
        poll that found the task not ready, ``on_message`` with each new state seen.
        """
        return wait_by_polling(self.get, task_id, timeout, interval,
                               on_interval=on_interval, on_message=on_message)

    @abstractmethod
    def forget(self, task_id: str) -> None:
        """Delete the record of ``task_id``."""

    @abstractmethod
    def cleanup(self) -> int:
        """Delete finished results older than the expiry; returns how many."""

    def close(self) -> None:
        """Release connections."""

    def reply_address(self) -> str | None:
        """Where this process's tasks ask for their results (the ``reply_to`` property a sent
        message carries), ready to receive them; None for a store every process reads (all
        but rpc://)."""
        return None

    # Saved groups (GroupResult.save/restore/delete): optional, every backend here has them.

    def save_group(self, group_id: str, task_ids: Sequence[str]) -> None:
        """Store the ids of a group's tasks, in member order, replacing any saved before."""
        raise NotImplementedError(f"{type(self).__name__} does not store group results.")

    def restore_group(self, group_id: str) -> list[str] | None:
        """The task ids saved for ``group_id``, in member order; None if none are."""
        raise NotImplementedError(f"{type(self).__name__} does not store group results.")

    def delete_group(self, group_id: str) -> None:
        """Forget the saved group (its tasks' results stay)."""
        raise NotImplementedError(f"{type(self).__name__} does not store group results.")

    # Chords (canvas): counting the finished header tasks, atomically in the store.

    def set_chord_size(self, group_id: str, size: int) -> None:
        """Record that the chord of ``group_id`` waits for ``size`` header tasks (before any
        of them is sent; Celery's ``set_chord_size``)."""
        raise NotImplementedError(f"{type(self).__name__} does not count chords.")

    def add_chord_part(self, group_id: str, index: int | None,
                       outcome: Outcome) -> list[PartResult] | None:
        """Record header task ``outcome`` (counted once, however often it is redelivered).
        When every header task is recorded and this call completes the chord, return their
        results in header order: the caller then starts the body and calls ``chord_sent``. A
        call for the same task again before ``chord_sent`` (its worker died in between)
        completes it again; any other returns None."""
        raise NotImplementedError(f"{type(self).__name__} does not count chords.")

    def add_chord_parts(self, parts: Sequence[tuple[str, int | None, Outcome]]
                        ) -> list[list[PartResult] | None]:
        """``add_chord_part`` for each ``(group_id, index, outcome)``, in order (a settled
        batch at once: Redis sends them in one round trip)."""
        return [self.add_chord_part(group_id, index, outcome)
                for group_id, index, outcome in parts]

    def chord_sent(self, group_id: str) -> None:
        """The chord's body was started: it is never completed again; its counts may go."""
        raise NotImplementedError(f"{type(self).__name__} does not count chords.")

    def decode(self, payload: bytes | str | None, content_type: str,
               content_encoding: str) -> Any:
        """Decode a stored payload with the accepted serializers."""
        if payload is None:
            return None
        data = payload.encode("utf-8") if isinstance(payload, str) else payload
        return serializers.loads(data, content_type, content_encoding, self.accept)


def decompress_payload(data: bytes) -> bytes:
    """Stored result bytes, decompressed when they carry Celery's marker (ours or a Celery
    worker's, whatever RESULT_COMPRESSION says here), inflated to MESSAGE_MAX_BYTES at most.

    Raises:
        SerializationError: the compressed result is corrupt, of an unknown method or too large.
    """
    if not data.startswith(COMPRESSED_MAGIC):
        return data
    header, _, body = data[len(COMPRESSED_MAGIC):].partition(b"\x00")
    return compression.decompress(header.decode("ascii", "replace"), body, _max_bytes())


def _max_bytes() -> int:
    from ..conf import get_settings

    return get_settings().MESSAGE_MAX_BYTES


def wait_by_polling(fetch: Callable[[str], ResultMeta | None], task_id: str,
                    timeout: float | None, interval: float = 0.5, *,
                    on_interval: OnInterval | None = None,
                    on_message: OnMessage | None = None) -> ResultMeta:
    """Poll ``fetch(task_id)`` until the result is ready, from FIRST_POLL backing off to
    ``interval``."""
    deadline = None if timeout is None else time.monotonic() + timeout
    pause, seen = min(FIRST_POLL, interval), None
    while True:
        meta = fetch(task_id)
        if on_message is not None and meta is not None and meta != seen:
            on_message(meta.celery_meta())
        seen = meta
        if meta is not None and meta.state in states.READY_STATES:
            return meta
        if deadline is not None and time.monotonic() >= deadline:
            raise exceptions.TimeoutError(
                f"Task {task_id} did not finish within {timeout} seconds "
                f"(state {meta.state if meta else states.PENDING}).")
        if on_interval is not None:
            on_interval()
        time.sleep(pause if deadline is None else min(pause, max(deadline - time.monotonic(), 0)))
        pause = min(pause * 1.5, interval)


def as_text(data: bytes | None, content_encoding: str) -> tuple[str | None, str]:
    """Encoded bytes as text for a text column (base64 unless UTF-8), and their encoding."""
    if content_encoding == "utf-8":
        return (data.decode("utf-8") if data is not None else None), "utf-8"
    return (base64.b64encode(data).decode("ascii") if data is not None else None), "base64"


def payload_text(outcome: Outcome) -> tuple[str | None, str]:
    """The payload as text for a text column, and the encoding to record with it."""
    return as_text(outcome.payload, outcome.content_encoding)


def plain_arguments(outcome: Outcome) -> tuple[list[Any] | str | None,
                                                dict[str, Any] | str | None]:
    """An extended outcome's arguments as plain data: a list and a dict (None when absent;
    the reprs, as text, when they are hidden: sensitive.py)."""
    args, kwargs = outcome.args, outcome.kwargs
    return (args if args is None or isinstance(args, str) else list(args),
            kwargs if kwargs is None or isinstance(kwargs, str) else dict(kwargs))


def encode_argument(value: Any, content_type: str) -> bytes | None:
    """Arguments encoded with the serializer of the result's ``content_type``; when they cannot
    be (say, objects a pickle message carried), their repr, so the result is still stored."""
    if value is None:
        return None
    name = serializers.get(content_type).name
    try:
        return serializers.dumps(value, name)[0]
    except SerializationError:
        return serializers.dumps(repr(value), name)[0]
