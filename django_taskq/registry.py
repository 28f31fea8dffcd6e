"""The task registry: task name → Task, filled as tasks modules are imported."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .exceptions import NotRegistered

if TYPE_CHECKING:
    from .task import Task


class TaskRegistry:
    """Names of the tasks this process can run, and the Task object behind each."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task[Any, Any]] = {}

    def register(self, task: Task[Any, Any]) -> None:
        """Add ``task`` under its name; a module imported again replaces its own tasks."""
        self._tasks[task.name] = task

    def unregister(self, name: str) -> None:
        """Remove the task called ``name``; unknown names are ignored."""
        self._tasks.pop(name, None)

    def get(self, name: str) -> Task[Any, Any]:
        """The task called ``name``.

        Raises:
            NotRegistered: no such task in this process.
        """
        try:
            return self._tasks[name]
        except KeyError:
            raise NotRegistered(
                f"Task {name!r} is not registered in this worker; is its app in INSTALLED_APPS "
                "and is the task defined in the app's tasks.py?") from None

    __getitem__ = get  # Celery's app.tasks[name]

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._tasks))

    def __len__(self) -> int:
        return len(self._tasks)


registry = TaskRegistry()


class _CurrentTask:
    """Celery's ``current_task``: the task running in this context; false outside one."""

    __slots__ = ()

    def _get(self) -> Task[Any, Any] | None:
        from .context import current_request

        request = current_request()
        if request is None or not request.task or request.task not in registry:
            return None
        return registry.get(request.task)

    def __getattr__(self, name: str) -> Any:
        running = self._get()
        if running is None:
            raise AttributeError(f"no task is running here, so current_task has no {name!r}")
        return getattr(running, name)

    def __bool__(self) -> bool:
        return self._get() is not None

    def __repr__(self) -> str:
        return f"<current_task: {self._get()!r}>"


current_task = _CurrentTask()
