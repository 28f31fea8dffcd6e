"""The task registry: task name → Task, filled as tasks modules are imported."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .exceptions import NotRegistered

if TYPE_CHECKING:
    from .task import Task


class TaskRegistry:
    """Names of the tasks this process can run, and the Task object behind each."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task[Any, Any]] = {}

    def register(self, task: Task[Any, Any]) -> Task[Any, Any]:
        """Add ``task`` under its name and return the task registered under it.

        A module imported again replaces its own tasks. Another definition under a name that
        is taken keeps the first one, as Celery does, with a warning naming both.
        """
        existing = self._tasks.get(task.name)
        if existing is not None and _origin(existing) != _origin(task):
            warnings.warn(f"Task name {task.name!r} is already registered by {_origin(existing)}; "
                          f"{_origin(task)} is not registered. Give one of them another name=.",
                          UserWarning, stacklevel=3)
            return existing
        self._tasks[task.name] = task
        return task

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

    def check_options(self) -> None:
        """Resolve every task's options now (``TASK_ANNOTATIONS`` apply on first use), so a bad
        one stops a worker as it starts, not when that task's first message arrives.

        Raises:
            ConfigurationError: naming the task and the option.
        """
        from .exceptions import ConfigurationError, TaskqError

        for name in self:
            try:
                self._tasks[name].options  # noqa: B018 - resolved for its check
            except TaskqError as exc:
                raise ConfigurationError(f"{exc} (from TASKQ['TASK_ANNOTATIONS']?)") from exc

    def keys(self) -> list[str]:
        """The registered names, sorted (Celery's ``app.tasks.keys()``)."""
        return list(self)

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._tasks))

    def __len__(self) -> int:
        return len(self._tasks)


def _origin(task: Any) -> str:
    """Where a task was defined: its function's (or its class's) module and name."""
    defined = getattr(task, "__wrapped__", None) or type(task)
    return f"{defined.__module__}.{defined.__qualname__}"


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
