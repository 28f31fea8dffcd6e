"""A record of the task messages this process sends, taken from the publish signals.

A message is recorded when the broker has taken it (``after_task_publish``), with what a
worker would receive: the name, id and arguments after the enqueue middleware and the
``before_task_publish`` receivers. Eager runs (TASK_ALWAYS_EAGER) send nothing and so are not
recorded; neither are retries, which a worker sends straight to its broker.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, overload

from .. import signals


@dataclass(frozen=True, slots=True)
class SentTask:
    """One message as it was sent."""

    name: str
    id: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    #: The queue the message went to.
    queue: str
    priority: int
    eta: datetime | None = None
    expires: datetime | None = None
    headers: dict[str, Any] = field(default_factory=dict)


class SentTasks(Sequence[SentTask]):
    """Every message sent while the capture is on, oldest first (thread-safe)."""

    def __init__(self) -> None:
        self._sent: list[SentTask] = []
        self._priorities: dict[str, int] = {}
        self._lock = threading.Lock()
        self._uid = f"django_taskq.testing.sent.{id(self)}"

    @overload
    def __getitem__(self, index: int) -> SentTask: ...
    @overload
    def __getitem__(self, index: slice) -> list[SentTask]: ...

    def __getitem__(self, index: int | slice) -> SentTask | list[SentTask]:
        with self._lock:
            return self._sent[index]

    def __len__(self) -> int:
        with self._lock:
            return len(self._sent)

    def __iter__(self) -> Iterator[SentTask]:
        with self._lock:
            return iter(list(self._sent))

    def __repr__(self) -> str:
        return f"<SentTasks {self.names()!r}>"

    def names(self) -> list[str]:
        """The task names, in sending order."""
        return [sent.name for sent in self]

    def filter(self, name: Any = None, **fields: Any) -> list[SentTask]:
        """The messages for task ``name`` (a name or the task itself) whose other fields
        equal ``fields``, e.g. ``filter(send_receipt, queue="mail")``."""
        wanted = getattr(name, "name", name)
        return [sent for sent in self
                if (wanted is None or sent.name == wanted)
                and all(getattr(sent, key) == value for key, value in fields.items())]

    def clear(self) -> None:
        """Forget what was recorded so far."""
        with self._lock:
            self._sent.clear()
            self._priorities.clear()

    def start(self) -> None:
        """Record from now on (the receivers are held strongly until ``stop``)."""
        signals.before_task_publish.connect(self._before, weak=False, dispatch_uid=self._uid)
        signals.after_task_publish.connect(self._after, weak=False, dispatch_uid=self._uid)

    def stop(self) -> None:
        """Stop recording; what was recorded stays."""
        signals.before_task_publish.disconnect(dispatch_uid=self._uid)
        signals.after_task_publish.disconnect(dispatch_uid=self._uid)

    # The priority is a message property, which only before_task_publish is given.
    def _before(self, sender: Any = None, headers: Any = None, properties: Any = None,
                **kwargs: Any) -> None:
        if isinstance(headers, dict) and isinstance(properties, dict):
            with self._lock:
                self._priorities[str(headers.get("id"))] = int(properties.get("priority") or 0)

    def _after(self, sender: Any = None, body: Any = None, headers: Any = None,
               routing_key: str = "", queue: str | None = None, **kwargs: Any) -> None:
        headers = dict(headers or {})
        args, task_kwargs = (body[0], body[1]) if body else ((), {})
        task_id = str(headers.get("id", ""))
        with self._lock:
            self._sent.append(SentTask(
                name=str(headers.get("task", sender)), id=task_id, args=tuple(args),
                kwargs=dict(task_kwargs), queue=queue or routing_key,
                priority=self._priorities.pop(task_id, 0), eta=_time(headers.get("eta")),
                expires=_time(headers.get("expires")), headers=headers))


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


@contextlib.contextmanager
def capture_sent() -> Iterator[SentTasks]:
    """Record the messages sent inside the block::

        with capture_sent() as sent:
            place_order(...)
        assert sent.names() == ["shop.tasks.send_receipt"]
    """
    sent = SentTasks()
    sent.start()
    try:
        yield sent
    finally:
        sent.stop()
