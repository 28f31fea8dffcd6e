"""The in-memory result backend: one process, for tests."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.utils import timezone

from .. import states
from ..outcome import Outcome
from .base import ResultBackend, encode_argument, plain_arguments
from .meta import PartResult, ResultMeta


class MemoryResultBackend(ResultBackend):
    """Results in a dict, guarded by a lock (``wait`` polls, like the database backend)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._results: dict[str, ResultMeta] = {}
        self._changed = threading.Lock()
        self._groups: dict[str, list[str]] = {}
        self._chords: dict[str, _Chord] = {}

    def mark_pending(self, records: Sequence[tuple[str, str]]) -> None:
        now = timezone.now()
        with self._changed:
            for task_id, name in records:
                self._results.setdefault(task_id, ResultMeta(task_id, states.PENDING,
                                                             task_name=name, date_created=now))

    def store_many(self, outcomes: Sequence[Outcome]) -> None:
        with self._changed:
            for o in outcomes:
                previous = self._results.get(o.task_id)
                args, kwargs = (self._stored(value, o) for value in plain_arguments(o))
                meta = ResultMeta(
                    task_id=o.task_id, state=o.state, task_name=o.task_name,
                    result=self.decode(o.payload, o.content_type, o.content_encoding),
                    traceback=o.traceback, date_started=o.date_started, date_done=o.date_done,
                    worker=o.worker, retries=o.retries, args=args, kwargs=kwargs,
                    queue=o.queue, date_created=previous.date_created if previous else
                    o.date_started)
                self._results[o.task_id] = meta

    def _stored(self, value: Any, outcome: Outcome) -> Any:
        """What a stored and decoded argument would be, as the other backends return it."""
        data = encode_argument(value, outcome.content_type)
        return self.decode(data, outcome.content_type, outcome.content_encoding)

    def get(self, task_id: str) -> ResultMeta | None:
        with self._changed:
            return self._results.get(task_id)

    def forget(self, task_id: str) -> None:
        with self._changed:
            self._results.pop(task_id, None)

    def cleanup(self) -> int:
        cutoff = timezone.now().timestamp() - self.expires
        with self._changed:
            old = [k for k, m in self._results.items()
                   if m.date_done and m.date_done.timestamp() < cutoff]
            for key in old:
                del self._results[key]
            return len(old)

    def save_group(self, group_id: str, task_ids: Sequence[str]) -> None:
        with self._changed:
            self._groups[group_id] = list(task_ids)

    def restore_group(self, group_id: str) -> list[str] | None:
        with self._changed:
            saved = self._groups.get(group_id)
            return None if saved is None else list(saved)

    def delete_group(self, group_id: str) -> None:
        with self._changed:
            self._groups.pop(group_id, None)

    def set_chord_size(self, group_id: str, size: int) -> None:
        with self._changed:
            chord = self._chords.get(group_id)
            if chord is None or chord.sent:  # new, or sent again after it completed
                self._chords[group_id] = _Chord(size)
            else:
                chord.size = size

    def add_chord_part(self, group_id: str, index: int | None,
                       outcome: Outcome) -> list[PartResult] | None:
        value = self.decode(outcome.payload, outcome.content_type, outcome.content_encoding)
        with self._changed:
            chord = self._chords.get(group_id)
            if chord is None:
                return None
            place = -1 if index is None else index
            chord.parts.setdefault((outcome.task_id, place),
                                   (place, PartResult(outcome.task_id, outcome.state, value)))
            if len(chord.parts) < chord.size or chord.sent \
                    or chord.completed_by not in (None, outcome.task_id):
                return None
            chord.completed_by = outcome.task_id
            return [part for _, part in sorted(chord.parts.values(), key=lambda p: p[0])]

    def chord_sent(self, group_id: str) -> None:
        with self._changed:
            if group_id in self._chords:
                self._chords[group_id].sent = True


@dataclass
class _Chord:
    size: int
    parts: dict[tuple[str, int], tuple[int, PartResult]] = field(default_factory=dict)
    completed_by: str | None = None
    sent: bool = False
