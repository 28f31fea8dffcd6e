"""What a result backend knows about one task id, and how a stored failure is rebuilt."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .. import states
from ..outcome import rebuild_exception

__all__ = ["PROPAGATE_STATES", "PartResult", "ResultMeta", "rebuild_exception"]

PROPAGATE_STATES = states.PROPAGATE_STATES


@dataclass(frozen=True, slots=True)
class ResultMeta:
    """What a result backend knows about one task id.

    ``args``, ``kwargs`` and ``queue`` are filled only for extended results (RESULT_EXTENDED).
    """

    task_id: str
    state: str
    result: Any = None
    traceback: str | None = None
    task_name: str | None = None
    date_created: datetime | None = None
    date_started: datetime | None = None
    date_done: datetime | None = None
    worker: str | None = None
    retries: int = 0
    args: Any = None
    kwargs: Any = None
    queue: str | None = None

    def celery_meta(self) -> dict[str, Any]:
        """This record as Celery's meta mapping (what ``get(on_message=...)`` receives)."""
        meta = {"task_id": self.task_id, "status": self.state, "result": self.result,
                "traceback": self.traceback, "children": [], "date_done": _iso(self.date_done),
                "name": self.task_name, "worker": self.worker, "retries": self.retries,
                "date_started": _iso(self.date_started)}
        extended = {"args": self.args, "kwargs": self.kwargs, "queue": self.queue}
        return {**meta, **{k: v for k, v in extended.items() if v is not None}}


@dataclass(frozen=True, slots=True)
class PartResult:
    """A chord header task's result as the chord's body gets it: its value, or (for a failure)
    the stored exception mapping."""

    task_id: str
    state: str
    value: Any = None

    def failed(self) -> bool:
        """Whether this part fails the chord (FAILURE or REVOKED)."""
        return self.state in PROPAGATE_STATES


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
