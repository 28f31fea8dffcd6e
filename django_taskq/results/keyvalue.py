"""Celery's key/value result layout, for stores that keep one value per key (cache://, and a
third-party store that wants it).

A task's result is the meta mapping Celery's key/value backends write under
``celery-task-meta-<id>`` (``status``, ``result``, ``traceback``, ``children``, ``date_done``,
``task_id``, ``name``, ``worker``, ``retries``, ``date_started`` and, for extended results,
``args``, ``kwargs``, ``queue``), encoded with RESULT_SERIALIZER and compressed as
RESULT_COMPRESSION says. A saved group is ``{"result": [[gid, None], [[[tid, None], None], ...]]}``
under ``celery-taskset-meta-<gid>``; a chord part is ``[1, task_id, state, result]``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from .. import serializers, states
from ..exceptions import ResultBackendError, SerializationError
from .base import decompress_payload, plain_arguments
from .meta import PartResult, ResultMeta

if TYPE_CHECKING:
    from ..outcome import Outcome
    from .base import ResultBackend

__all__ = ["GROUP_KEY_PREFIX", "KEY_PREFIX", "decode_group", "decode_meta", "decode_part",
           "encode_group", "encode_meta", "encode_part", "encode_pending", "result_meta"]

KEY_PREFIX = "celery-task-meta-"
GROUP_KEY_PREFIX = "celery-taskset-meta-"


def iso(value: datetime | None) -> str | None:
    """A stored time as Celery writes it (ISO 8601), None kept."""
    return value.isoformat() if value is not None else None


def parse_when(value: Any) -> datetime | None:
    """A stored time read back; naive ones (older Celery versions, some producers) are UTC."""
    if isinstance(value, datetime):
        return value
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _value(backend: ResultBackend, outcome: Outcome) -> Any:
    """The outcome's decoded return value (or stored exception mapping)."""
    if outcome.payload is None:
        return None
    return serializers.loads(outcome.payload, outcome.content_type, outcome.content_encoding,
                             accept=(*backend.accept, "json", backend.serializer))


def _encodable(value: Any, serializer: str) -> Any:
    try:
        serializers.dumps(value, serializer)
    except SerializationError:
        return repr(value)  # arguments a pickle message carried: stored as their repr
    return value


def extended_fields(outcome: Outcome, serializer: str) -> dict[str, Any]:
    """Celery's ``result_extended`` keys that ``outcome`` carries (args, kwargs, queue);
    arguments ``serializer`` cannot encode are given as their repr, so that the result is
    stored all the same."""
    args, kwargs = plain_arguments(outcome)
    fields = {"args": args, "kwargs": kwargs, "queue": outcome.queue}
    return {name: _encodable(value, serializer) for name, value in fields.items()
            if value is not None}


def _dumps(backend: ResultBackend, value: Any) -> bytes:
    return backend.compress_payload(serializers.dumps(value, backend.serializer)[0])


def _loads(backend: ResultBackend, data: bytes) -> Any:
    codec = serializers.get(backend.serializer)
    return serializers.loads(decompress_payload(data), codec.content_type,
                             codec.content_encoding, backend.accept)


def encode_meta(backend: ResultBackend, outcome: Outcome) -> bytes:
    """The stored bytes of ``outcome``: Celery's meta mapping, encoded with the backend's
    serializer and compression.

    Raises:
        SerializationError: the result cannot be decoded or encoded.
    """
    meta = {"status": outcome.state, "result": _value(backend, outcome),
            "traceback": outcome.traceback, "children": [],
            "date_done": iso(outcome.date_done), "task_id": outcome.task_id,
            "name": outcome.task_name, "worker": outcome.worker or None,
            "retries": outcome.retries, "date_started": iso(outcome.date_started),
            **extended_fields(outcome, backend.serializer)}
    return _dumps(backend, meta)


def encode_pending(backend: ResultBackend, task_id: str, task_name: str) -> bytes:
    """The stored bytes of a PENDING record (what ``mark_pending`` writes)."""
    meta: dict[str, Any] = {"status": states.PENDING, "result": None, "traceback": None, "children": [],
            "date_done": None, "task_id": task_id, "name": task_name}
    return _dumps(backend, meta)


def decode_meta(backend: ResultBackend, task_id: str, data: bytes | None
                ) -> dict[str, Any] | None:
    """The stored meta mapping (None for no data).

    Raises:
        SerializationError: the data is not an accepted encoding of a mapping.
    """
    if data is None:
        return None
    meta = _loads(backend, data)
    if not isinstance(meta, dict):
        raise SerializationError(f"Result of {task_id} is not a mapping: {meta!r:.100}")
    return meta


def result_meta(task_id: str, meta: dict[str, Any] | None) -> ResultMeta | None:
    """A decoded meta mapping (ours or a Celery worker's) as a ResultMeta."""
    if meta is None:
        return None
    return ResultMeta(
        task_id=task_id, state=str(meta.get("status") or states.PENDING),
        result=meta.get("result"), traceback=meta.get("traceback"),
        task_name=meta.get("name"), date_started=parse_when(meta.get("date_started")),
        date_done=parse_when(meta.get("date_done")), worker=meta.get("worker"),
        retries=int(meta.get("retries") or 0), args=meta.get("args"),
        kwargs=meta.get("kwargs"), queue=meta.get("queue"))


def encode_group(backend: ResultBackend, group_id: str, task_ids: list[str]) -> bytes:
    """A saved group as Celery's ``GroupResult.save`` writes it."""
    return _dumps(backend, {"result": [[group_id, None],
                                       [[[task_id, None], None] for task_id in task_ids]]})


def decode_group(backend: ResultBackend, group_id: str, data: bytes | None) -> list[str] | None:
    """The member ids of a saved group (None for no data).

    Raises:
        ResultBackendError: the data is not a saved group.
    """
    meta = decode_meta(backend, group_id, data)
    if meta is None:
        return None
    try:
        _, members = meta["result"]
        ids = [member[0][0] for member in members]
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ResultBackendError(f"{GROUP_KEY_PREFIX}{group_id} does not hold a saved group: "
                                 f"{meta!r:.200}") from exc
    if not all(isinstance(task_id, str) and task_id for task_id in ids):
        raise ResultBackendError(f"{GROUP_KEY_PREFIX}{group_id} holds a member that is not a "
                                 f"task id: {meta!r:.200}")
    return ids


def encode_part(backend: ResultBackend, outcome: Outcome) -> bytes:
    """A chord header task's result as Celery keeps it: ``[1, task_id, state, result]``."""
    return _dumps(backend, [1, outcome.task_id, outcome.state, _value(backend, outcome)])


def decode_part(backend: ResultBackend, data: bytes) -> PartResult:
    """A stored chord part.

    Raises:
        ResultBackendError: the data is not a chord part.
    """
    found = _loads(backend, data)
    try:
        _, task_id, state, value = found
    except (TypeError, ValueError) as exc:
        raise ResultBackendError(f"not a chord part: {found!r:.200}") from exc
    return PartResult(str(task_id), str(state), value)
