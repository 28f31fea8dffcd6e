"""The result backend interface: state and encoded return value per task id."""

from __future__ import annotations

import base64
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from .. import serializers
from ..outcome import Outcome
from ..result import ResultMeta, wait_by_polling


class ResultBackend(ABC):
    """Stores outcomes and answers AsyncResult look-ups."""

    def __init__(self, accept: Sequence[str] = ("json",), expires: float = 86400.0) -> None:
        self.accept = tuple(accept)
        self.expires = expires

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

    def wait(self, task_id: str, timeout: float | None, interval: float = 0.05) -> ResultMeta:
        """Block until ``task_id`` is ready; backends with push notification override this."""
        return wait_by_polling(self.get, task_id, timeout, interval)

    @abstractmethod
    def forget(self, task_id: str) -> None:
        """Delete the record of ``task_id``."""

    @abstractmethod
    def cleanup(self) -> int:
        """Delete finished results older than the expiry; returns how many."""

    def close(self) -> None:
        """Release connections."""

    def decode(self, payload: bytes | str | None, content_type: str,
               content_encoding: str) -> Any:
        """Decode a stored payload with the accepted serializers."""
        if payload is None:
            return None
        data = payload.encode("utf-8") if isinstance(payload, str) else payload
        return serializers.loads(data, content_type, content_encoding, self.accept)


def payload_text(outcome: Outcome) -> tuple[str | None, str]:
    """The payload as text for a text column, and the encoding to record with it."""
    if outcome.payload is None:
        return None, outcome.content_encoding
    if outcome.content_encoding == "utf-8":
        return outcome.payload.decode("utf-8"), "utf-8"
    return base64.b64encode(outcome.payload).decode("ascii"), "base64"
