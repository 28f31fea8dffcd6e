"""AsyncResult: the handle on a task's state and return value, usable from any process."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import exceptions, states
from .context import current_request
from .outcome import rebuild_exception
from .results.meta import PROPAGATE_STATES, ResultMeta
from .revoking import revoke, workflow_ids

if TYPE_CHECKING:
    from .results.base import ResultBackend

__all__ = ["PROPAGATE_STATES", "AsyncResult", "EagerResult", "ResultMeta", "allow_join_result",
           "assert_will_not_block", "rebuild_exception", "revoke"]

#: Celery's words, so that a search for the message finds Celery's explanation.
E_WOULDBLOCK = ("Never call result.get() within a task! See https://docs.celeryq.dev/en/latest/"
                "userguide/tasks.html#avoid-launching-synchronous-subtasks")

_join_allowed: ContextVar[bool] = ContextVar("django_taskq_join_allowed", default=False)


def assert_will_not_block() -> None:
    """Refuse to wait for a result from inside a running task (Celery's rule).

    A worker slot blocked on another task's result can deadlock the pool: the awaited task may
    be queued behind this one. Eager runs (``Task.apply``) do not count as inside a task.

    Raises:
        RuntimeError: called inside a task, outside ``allow_join_result()``.
    """
    request = current_request()
    if request is not None and not request.is_eager and not _join_allowed.get():
        raise RuntimeError(E_WOULDBLOCK)


@contextlib.contextmanager
def allow_join_result() -> Iterator[None]:
    """Allow ``get()`` inside a task for the ``with`` block, as Celery's helper does."""
    token = _join_allowed.set(True)
    try:
        yield
    finally:
        _join_allowed.reset(token)


class AsyncResult:
    """A task's result, looked up by id in the result backend.

    ``state`` is ``PENDING`` both for a queued task and for an id nobody knows (as in Celery);
    ``exists()`` tells them apart, and since the producer records PENDING when it sends a task
    (Celery records nothing until a worker writes), it is True for a queued task too.
    """

    def __init__(self, id: str, backend: ResultBackend | None = None,  # noqa: A002
                 task_name: str | None = None, app: Any = None,
                 parent: AsyncResult | None = None) -> None:
        if not id:
            raise ValueError(f"AsyncResult needs a task id, not {id!r}.")
        self.id = id
        self.task_id = id
        self.task_name = task_name
        #: The result of the task this one was chained after: a chain's result leads back to
        #: its first task (``res.parent.parent``); None for a task sent on its own.
        self.parent: AsyncResult | None = parent
        self._backend = backend
        self._cache: ResultMeta | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.id}>"

    def __str__(self) -> str:
        return str(self.id)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AsyncResult):
            return other.id == self.id
        if isinstance(other, str):
            return other == self.id
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.id)

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.id, None, self.task_name, None, self.parent)

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
        """The task's state: PENDING, STARTED, RETRY, SUCCESS, FAILURE, REVOKED or custom."""
        meta = self._meta()
        return meta.state if meta else states.PENDING

    status = state

    def exists(self) -> bool:
        """Whether any record of this id is stored (False for an unknown or forgotten id).

        Unlike Celery, where nothing is stored until a worker writes, the producer records
        PENDING when it sends: True for a queued task too (unless its result is ignored).
        """
        return self._meta() is not None

    @property
    def known(self) -> bool:
        """Whether any producer or worker has recorded this id (same as ``exists()``)."""
        return self.exists()

    @property
    def result(self) -> Any:
        """The return value, or the exception for a failed task; for a custom state its meta."""
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
        """When the task finished (aware, UTC)."""
        meta = self._meta()
        return meta.date_done if meta else None

    @property
    def date_started(self) -> datetime | None:
        """When the task started (aware, UTC)."""
        meta = self._meta()
        return meta.date_started if meta else None

    @property
    def name(self) -> str | None:
        """The task name, when the backend recorded it."""
        meta = self._meta()
        return (meta.task_name if meta else None) or self.task_name

    @property
    def worker(self) -> str | None:
        """The hostname of the worker that ran the task."""
        meta = self._meta()
        return meta.worker if meta else None

    @property
    def retries(self) -> int | None:
        """How many times the task had been retried when the result was stored."""
        meta = self._meta()
        return meta.retries if meta else None

    @property
    def args(self) -> Any:
        """The positional arguments (extended results only: RESULT_EXTENDED)."""
        meta = self._meta()
        return meta.args if meta else None

    @property
    def kwargs(self) -> Any:
        """The keyword arguments (extended results only: RESULT_EXTENDED)."""
        meta = self._meta()
        return meta.kwargs if meta else None

    @property
    def queue(self) -> str | None:
        """The queue the task was delivered from (extended results only: RESULT_EXTENDED)."""
        meta = self._meta()
        return meta.queue if meta else None

    @property
    def children(self) -> list[AsyncResult]:
        """Results of tasks this task started; always empty until canvas is built."""
        return []

    def ready(self) -> bool:
        """Whether the task has finished (succeeded, failed or was revoked)."""
        return self.state in states.READY_STATES

    def successful(self) -> bool:
        """Whether the task finished with SUCCESS."""
        return self.state == states.SUCCESS

    def failed(self) -> bool:
        """Whether the task finished with FAILURE."""
        return self.state == states.FAILURE

    def get(self, timeout: float | None = None, propagate: bool = True,  # noqa: PLR0913
            interval: float = 0.5, no_ack: bool = True, follow_parents: bool = True,
            callback: Callable[[str, Any], Any] | None = None,
            on_message: Callable[[dict[str, Any]], Any] | None = None,
            on_interval: Callable[[], Any] | None = None, disable_sync_subtasks: bool = True,
            EXCEPTION_STATES: frozenset[str] = states.EXCEPTION_STATES,  # noqa: N803
            PROPAGATE_STATES: frozenset[str] = PROPAGATE_STATES) -> Any:  # noqa: N803
        """Wait for the task to finish and return its value (Celery's signature).

        Args:
            timeout: seconds to wait; None waits forever.
            propagate: re-raise the task's exception when it failed or was revoked.
            interval: the longest pause between polls for backends that poll (polls start at
                0.05 s and back off to it); Redis is woken by PUBLISH and does not poll.
            no_ack: accepted for Celery compatibility; no effect (no AMQP result backend).
            follow_parents: with ``propagate``, raise a failed parent's error (a chain
                whose earlier task failed) instead of waiting for a task that will not run.
            callback: called as ``callback(task_id, value)`` with the value (or, with
                ``propagate=False``, the exception) once the task is ready.
            on_message: called with Celery's meta mapping of each state the wait observes
                (every PUBLISH on Redis, every change a poll sees), the final one included.
            on_interval: called after each poll that found the task not ready (on Redis,
                after each second of waiting and each message that did not finish it).
            disable_sync_subtasks: refuse to run inside a task (see ``assert_will_not_block``).
            EXCEPTION_STATES: states whose value is rebuilt as an exception.
            PROPAGATE_STATES: states whose exception is raised when ``propagate``.

        Raises:
            TimeoutError: the task did not finish within ``timeout``.
            RuntimeError: called inside a running task with ``disable_sync_subtasks``.
        """
        if disable_sync_subtasks:
            self._refuse_inside_task()
        if follow_parents and propagate and self.parent is not None:
            on_interval = self._watching_parents(on_interval)
        meta = self._cache
        if meta is None:
            meta = self.backend.wait(self.id, timeout=timeout, interval=interval,
                                     on_interval=on_interval, on_message=on_message)
            self._cache = meta
        elif on_message is not None:
            on_message(meta.celery_meta())
        return self._settle(meta, propagate, callback, EXCEPTION_STATES, PROPAGATE_STATES)

    wait = get

    def _refuse_inside_task(self) -> None:
        assert_will_not_block()

    def _watching_parents(self, on_interval: Callable[[], Any] | None) -> Callable[[], Any]:
        """Raise a failed parent's error now and after each wait (Celery's follow_parents)."""
        def check() -> None:
            self._reraise_parent_error()
            if on_interval is not None:
                on_interval()

        self._reraise_parent_error()
        return check

    def _reraise_parent_error(self) -> None:
        node, parents = self.parent, []
        while node is not None:
            parents.append(node)
            node = node.parent
        for parent in reversed(parents):  # the first task's error first
            parent.maybe_throw()

    def _settle(self, meta: ResultMeta, propagate: bool,
                callback: Callable[[str, Any], Any] | None,
                exception_states: frozenset[str], propagate_states: frozenset[str]) -> Any:
        exc = None
        if meta.state in exception_states or meta.state in propagate_states:
            exc = rebuild_exception(meta.result, meta.traceback)
        if propagate and exc is not None and meta.state in propagate_states:
            raise exc
        value = exc if meta.state in exception_states else meta.result
        if callback is not None:
            callback(self.id, value)
        return value

    def maybe_throw(self, propagate: bool = True,
                    callback: Callable[[str, Any], Any] | None = None) -> Any:
        """Raise the task's exception if it failed or was revoked, without waiting; else call
        ``callback(task_id, value)`` and return the value (None while not ready)."""
        meta = self._meta() or ResultMeta(self.id, states.PENDING)
        return self._settle(meta, propagate, callback, states.EXCEPTION_STATES,
                            PROPAGATE_STATES)

    maybe_reraise = maybe_throw

    def throw(self, exc: BaseException | None = None, tb: Any = None) -> None:
        """Raise ``exc`` (with traceback ``tb`` if given), or else the task's own exception.

        Raises:
            ValueError: no ``exc`` is given and the task has no exception to raise.
        """
        if exc is None:
            meta = self._meta()
            if meta is None or meta.state not in states.EXCEPTION_STATES:
                raise ValueError(f"Task {self.id} has no exception to throw ({self.state}).")
            exc = rebuild_exception(meta.result, meta.traceback)
        raise exc.with_traceback(tb) if tb is not None else exc

    def as_tuple(self) -> tuple[Any, ...]:
        """Celery's nested tuple form, ``((id, parent), None)``."""
        return (self.id, self.parent.as_tuple() if self.parent else None), None

    def as_list(self) -> list[str]:
        """This id and its parents' ids."""
        return [self.id, *(self.parent.as_list() if self.parent else [])]

    def forget(self) -> None:
        """Remove the stored result."""
        self._cache = None
        self.backend.forget(self.id)

    def revoke(self, connection: Any = None, terminate: bool = False, signal: Any = None,
               wait: bool = False, timeout: float | None = None) -> None:
        """Never run this task; with ``terminate=True`` also kill a running execution.

        The result of a workflow sent here (a chain's, a chord's: it has ``.parent`` links)
        stands for the whole workflow: every task it waits on is revoked too, so what has not
        run never runs (what has run stays as it is). A result made from an id alone is one task.

        See :func:`revoke`. ``connection``, ``signal``, ``wait`` and ``timeout`` are accepted for
        Celery compatibility; a terminated execution is always killed with SIGKILL.
        """
        revoke(workflow_ids(self), terminate=terminate)


def __getattr__(name: str) -> Any:
    """``from django_taskq.result import GroupResult`` as in Celery (lazy: a circular import)."""
    if name in ("GroupResult", "ResultSet"):
        from . import result_group

        return getattr(result_group, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class EagerResult(AsyncResult):
    """The result of a task run in this process (``Task.apply`` or TASK_ALWAYS_EAGER).

    Its ``get()`` never refuses inside a task: the value is already here, nothing waits.
    """

    def __init__(self, id: str, meta: ResultMeta | None) -> None:  # noqa: A002
        super().__init__(id, task_name=meta.task_name if meta else None)
        self._cache = meta

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.id, self._cache)

    def fill(self, other: AsyncResult) -> None:
        """Take the outcome of a run that happened after this handle was returned."""
        self._cache = other._cache

    def _meta(self) -> ResultMeta | None:
        return self._cache

    def get(self, *args: Any, **kwargs: Any) -> Any:
        """The eager run's value (see ``AsyncResult.get``); it has not run yet while its
        transaction is open."""
        if self._cache is None:
            raise exceptions.TimeoutError(
                f"Task {self.id} has not run: it runs when its transaction commits (or a "
                "middleware's enqueue() did not pass it on).")
        return super().get(*args, **kwargs)

    wait = get

    def _refuse_inside_task(self) -> None:
        """Never: the value is already here, nothing would wait."""

    def forget(self) -> None:
        """Nothing is stored for an eager result."""
