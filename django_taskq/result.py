"""AsyncResult: the handle on a task's state and return value, usable from any process."""

from __future__ import annotations

import builtins
import time
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import exceptions, states

if TYPE_CHECKING:
    from .results.base import ResultBackend


@dataclass(frozen=True, slots=True)
class ResultMeta:
    """What a result backend knows about one task id."""

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


def rebuild_exception(value: Any, traceback: str | None = None) -> BaseException:
    """Turn a stored failure back into an exception, importing nothing named by the data.

    Builtin exception types and django_taskq's own are rebuilt; anything else becomes a
    RemoteTaskError carrying the remote type's name.
    """
    if not isinstance(value, dict) or "exc_type" not in value:
        return exceptions.RemoteTaskError("Exception", "", repr(value))
    name, module = str(value["exc_type"]), str(value.get("exc_module") or "")
    args = value.get("exc_message") or []
    args = args if isinstance(args, (list, tuple)) else [args]
    namespace = {"builtins": builtins, "django_taskq.exceptions": exceptions}.get(module)
    cls = getattr(namespace, name, None) if namespace else None
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            return cls(*args)
        except Exception:  # noqa: BLE001 - an exotic constructor; fall back to the generic error
            pass
    return exceptions.RemoteTaskError(name, module, " ".join(str(a) for a in args), traceback)


class AsyncResult:
    """A task's result, looked up by id in the result backend.

    ``state`` is ``PENDING`` both for a queued task and for an id nobody knows (as in Celery);
    ``known`` tells them apart.
    """

    def __init__(self, id: str, backend: ResultBackend | None = None,  # noqa: A002
                 task_name: str | None = None) -> None:
        self.id = id
        self.task_id = id
        self.task_name = task_name
        self._backend = backend
        self._cache: ResultMeta | None = None

    def __repr__(self) -> str:
        return f"<AsyncResult: {self.id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AsyncResult) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def backend(self) -> ResultBackend:
        """The result backend this handle reads from (the configured one by default)."""
        if self._backend is None:
            from .results import get_backend

            self._backend = get_backend()
        return self._backend

    def _meta(self) -> ResultMeta | None:
        if self._cache is not None:
            return self._cache
        meta = self.backend.get(self.id)
        if meta is not None and meta.state in states.READY_STATES:
            self._cache = meta  # a finished task never changes again
        return meta

    @property
    def state(self) -> str:
        """The task's state: PENDING, STARTED, RETRY, SUCCESS, FAILURE or REVOKED."""
        meta = self._meta()
        return meta.state if meta else states.PENDING

    status = state

    @property
    def known(self) -> bool:
        """Whether any producer or worker has recorded this id (False for an unknown id)."""
        return self._meta() is not None

    @property
    def result(self) -> Any:
        """The return value, or the exception for a failed task; None while not ready."""
        meta = self._meta()
        if meta is None:
            return None
        if meta.state in states.EXCEPTION_STATES:
            return rebuild_exception(meta.result, meta.traceback)
        return meta.result

    info = result

    @property
    def traceback(self) -> str | None:
        """The remote traceback of a failed task."""
        meta = self._meta()
        return meta.traceback if meta else None

    @property
    def date_done(self) -> datetime | None:
        """When the task finished."""
        meta = self._meta()
        return meta.date_done if meta else None

    @property
    def name(self) -> str | None:
        """The task name, when the backend recorded it."""
        meta = self._meta()
        return (meta.task_name if meta else None) or self.task_name

    def ready(self) -> bool:
        """Whether the task has finished (succeeded, failed or was revoked)."""
        return self.state in states.READY_STATES

    def successful(self) -> bool:
        """Whether the task finished with SUCCESS."""
        return self.state == states.SUCCESS

    def failed(self) -> bool:
        """Whether the task finished with FAILURE."""
        return self.state == states.FAILURE

    def get(self, timeout: float | None = None, propagate: bool = True,
            interval: float = 0.05) -> Any:
        """Wait for the task to finish and return its value.

        Args:
            timeout: seconds to wait; None waits forever.
            propagate: re-raise the task's exception when it failed or was revoked.
            interval: the first polling interval for backends that poll (it backs off).

        Raises:
            TimeoutError: the task did not finish within ``timeout``.
        """
        meta = self._cache or self.backend.wait(self.id, timeout=timeout, interval=interval)
        if meta.state in states.READY_STATES:
            self._cache = meta
        if meta.state in states.EXCEPTION_STATES:
            exc = rebuild_exception(meta.result, meta.traceback)
            if propagate:
                raise exc
            return exc
        return meta.result

    wait = get

    def forget(self) -> None:
        """Remove the stored result."""
        self._cache = None
        self.backend.forget(self.id)

    def revoke(self, connection: Any = None, terminate: bool = False, signal: Any = None,
               wait: bool = False, timeout: float | None = None) -> None:
        """Never run this task; with ``terminate=True`` also kill a running execution.

        See :func:`revoke`. ``connection``, ``signal``, ``wait`` and ``timeout`` are accepted for
        Celery compatibility; a terminated execution is always killed with SIGKILL.
        """
        revoke([self.id], terminate=terminate)


def revoke(task_ids: str | list[str], *, terminate: bool = False) -> None:
    """Revoke tasks by id: durable, so it holds for tasks still queued, for workers that start
    later, and across restarts (until REVOKE_EXPIRES). A revoked task never runs and ends in
    REVOKED; with ``terminate=True`` a running execution is killed too (prefork pool only).
    Workers see a revocation within REVOKE_POLL_INTERVAL seconds.
    """
    from .conf import get_settings
    from .control import get_control_store

    ids = [task_ids] if isinstance(task_ids, str) else list(task_ids)
    if not all(isinstance(i, str) and i for i in ids):
        raise ValueError(f"revoke() takes task ids (non-empty strings), not {task_ids!r}.")
    get_control_store().revoke(ids, terminate=terminate, expires=get_settings().REVOKE_EXPIRES)


class EagerResult(AsyncResult):
    """The result of a task run in this process (``Task.apply`` or TASK_ALWAYS_EAGER)."""

    def __init__(self, id: str, meta: ResultMeta | None) -> None:  # noqa: A002
        super().__init__(id, task_name=meta.task_name if meta else None)
        self._cache = meta

    def fill(self, other: EagerResult) -> None:
        """Take the outcome of a run that happened after this handle was returned."""
        self._cache = other._cache

    def _meta(self) -> ResultMeta | None:
        return self._cache

    def get(self, timeout: float | None = None, propagate: bool = True,
            interval: float = 0.05) -> Any:
        """The eager run's value; it has not run yet while its transaction is open."""
        if self._cache is None:
            raise exceptions.TimeoutError(
                f"Task {self.id} has not run: it runs when the transaction commits.")
        return super().get(timeout, propagate, interval)

    def forget(self) -> None:
        """Nothing is stored for an eager result."""


def wait_by_polling(fetch: Any, task_id: str, timeout: float | None,
                    interval: float, max_interval: float = 0.5) -> ResultMeta:
    """Poll ``fetch(task_id)`` until the result is ready, backing off up to ``max_interval``."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        meta = fetch(task_id)
        if meta is not None and meta.state in states.READY_STATES:
            return meta
        if deadline is not None and time.monotonic() >= deadline:
            raise exceptions.TimeoutError(
                f"Task {task_id} did not finish within {timeout} seconds "
                f"(state {meta.state if meta else states.PENDING}).")
        pause = interval if deadline is None else min(interval, max(deadline - time.monotonic(), 0))
        time.sleep(pause)
        interval = min(interval * 1.5, max_interval)
