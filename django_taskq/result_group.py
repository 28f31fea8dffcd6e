"""ResultSet and GroupResult: the results of many tasks read together (Celery's ``celery.result``).

``group(...).apply_async()`` returns a GroupResult: its id is the group id every member carries
(header ``group``), its ``results`` are the members' AsyncResults in member order. ``save()``
stores the member ids in the result backend under the group id (on Redis as Celery stores them,
``celery-taskset-meta-<id>``), so ``GroupResult.restore(id)`` rebuilds it in another process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, overload

from . import exceptions
from .result import AsyncResult, revoke

if TYPE_CHECKING:
    from .results.base import ResultBackend

__all__ = ["GroupResult", "ResultSet"]


class ResultSet:
    """Many AsyncResults handled as one: ``ready()`` when all are, ``get()`` the list of values.

    Args:
        results: the AsyncResults, in the order ``get()`` returns their values.
        app: accepted for Celery compatibility (there is one app).
    """

    #: Celery's flag for a backend-specific join; every join here is ``join``.
    supports_native_join = False

    def __init__(self, results: Iterable[AsyncResult] | None = None, app: Any = None,
                 **kwargs: Any) -> None:
        self.results: list[AsyncResult] = list(results or ())

    # -- the set ---------------------------------------------------------------------------

    def add(self, result: AsyncResult) -> None:
        """Add ``result`` unless it is a member already."""
        if result not in self.results:
            self.results.append(result)

    def remove(self, result: AsyncResult | str) -> None:
        """Remove a member (a result or its id).

        Raises:
            KeyError: it is not a member.
        """
        try:
            self.results.remove(AsyncResult(result) if isinstance(result, str) else result)
        except ValueError:
            raise KeyError(result) from None

    def discard(self, result: AsyncResult | str) -> None:
        """Remove a member if it is one."""
        try:
            self.remove(result)
        except KeyError:
            pass

    def update(self, results: Iterable[AsyncResult]) -> None:
        """Add the results that are not members yet."""
        self.results.extend(r for r in results if r not in self.results)

    def clear(self) -> None:
        """Remove every member."""
        self.results[:] = []

    # -- states ----------------------------------------------------------------------------

    def successful(self) -> bool:
        """Whether every task finished with SUCCESS."""
        return all(result.successful() for result in self.results)

    def failed(self) -> bool:
        """Whether any task finished with FAILURE."""
        return any(result.failed() for result in self.results)

    def waiting(self) -> bool:
        """Whether any task has not finished yet."""
        return any(not result.ready() for result in self.results)

    def ready(self) -> bool:
        """Whether every task has finished (succeeded, failed or was revoked)."""
        return all(result.ready() for result in self.results)

    def completed_count(self) -> int:
        """How many tasks succeeded (Celery's meaning of "completed")."""
        return sum(1 for result in self.results if result.successful())

    def maybe_throw(self, callback: Callable[[str, Any], Any] | None = None,
                    propagate: bool = True) -> None:
        """Raise the first (in member order) failed or revoked task's exception, without
        waiting; ``callback(task_id, value)`` is called for the members before it."""
        for result in self.results:
            result.maybe_throw(propagate=propagate, callback=callback)

    maybe_reraise = maybe_throw

    # -- actions ---------------------------------------------------------------------------

    def forget(self) -> None:
        """Remove every member's stored result."""
        for result in self.results:
            result.forget()

    def revoke(self, connection: Any = None, terminate: bool = False, signal: Any = None,
               wait: bool = False, timeout: float | None = None) -> None:
        """Revoke every member (durable: a member still queued never runs and ends REVOKED);
        ``terminate=True`` also kills running ones. See :func:`django_taskq.revoke`."""
        ids = [result.id for result in self.results]
        if ids:
            revoke(ids, terminate=terminate)

    def get(self, timeout: float | None = None, propagate: bool = True,  # noqa: PLR0913
            interval: float = 0.5, callback: Callable[[str, Any], Any] | None = None,
            no_ack: bool = True, on_message: Callable[[dict[str, Any]], Any] | None = None,
            disable_sync_subtasks: bool = True,
            on_interval: Callable[[], Any] | None = None) -> list[Any]:
        """Wait for every task; return their values in member order (see ``join``)."""
        return self.join(timeout=timeout, propagate=propagate, interval=interval,
                         callback=callback, no_ack=no_ack, on_message=on_message,
                         disable_sync_subtasks=disable_sync_subtasks, on_interval=on_interval)

    def join(self, timeout: float | None = None, propagate: bool = True,  # noqa: PLR0913
             interval: float = 0.5, callback: Callable[[str, Any], Any] | None = None,
             no_ack: bool = True, on_message: Callable[[dict[str, Any]], Any] | None = None,
             disable_sync_subtasks: bool = True,
             on_interval: Callable[[], Any] | None = None) -> list[Any]:
        """Wait for the tasks one after another, in member order, and return their values.

        Args:
            timeout: seconds for the whole join; None waits forever.
            propagate: raise a failed (or revoked) task's exception; the first such task in
                member order raises, once the ones before it have finished. Without it the
                exception takes the task's place in the list.
            interval, no_ack, on_message, on_interval, disable_sync_subtasks: as
                ``AsyncResult.get`` (``on_message`` sees each member's states).
            callback: called as ``callback(task_id, value)`` for each task instead of
                collecting the values (an empty list is returned).

        Raises:
            TimeoutError: the tasks did not all finish within ``timeout``.
            RuntimeError: called inside a running task with ``disable_sync_subtasks``.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        values = []
        for result in self.results:
            remaining = None
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if not result.ready():
                        raise exceptions.TimeoutError(
                            f"The results did not all arrive within {timeout} seconds "
                            f"({result.id} is {result.state}).")
                    remaining = None  # ready: get() returns at once
            value = result.get(timeout=remaining, propagate=propagate, interval=interval,
                               no_ack=no_ack, on_message=on_message, on_interval=on_interval,
                               disable_sync_subtasks=disable_sync_subtasks)
            if callback is not None:
                callback(result.id, value)
            else:
                values.append(value)
        return values

    join_native = join

    # -- container -------------------------------------------------------------------------

    def __iter__(self) -> Iterator[AsyncResult]:
        return iter(self.results)

    @overload
    def __getitem__(self, index: int) -> AsyncResult: ...
    @overload
    def __getitem__(self, index: slice) -> list[AsyncResult]: ...

    def __getitem__(self, index: int | slice) -> AsyncResult | list[AsyncResult]:
        return self.results[index]

    def __len__(self) -> int:
        return len(self.results)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ResultSet):
            return other.results == self.results
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, as Celery's

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: [{', '.join(r.id for r in self.results)}]>"


class GroupResult(ResultSet):
    """The results of a group's tasks, with the group's id (``group(...).apply_async()``).

    Args:
        id: the group id (the ``group`` header of every member).
        results: the members' AsyncResults, in member order.
        parent: the result before the group in a workflow (None for a group sent alone).
    """

    def __init__(self, id: str | None = None,  # noqa: A002 - Celery's name
                 results: Iterable[AsyncResult] | None = None,
                 parent: AsyncResult | None = None, **kwargs: Any) -> None:
        super().__init__(results, **kwargs)
        self.id = id
        self.parent = parent

    @property
    def children(self) -> list[AsyncResult]:
        """The members' results (Celery's name)."""
        return self.results

    def as_list(self) -> list[str]:
        """The group's id and its parents' ids (Celery's ``as_list``)."""
        return [self.id or "", *(self.parent.as_list() if self.parent else [])]

    def join(self, timeout: float | None = None, propagate: bool = True,  # noqa: PLR0913
             interval: float = 0.5, callback: Callable[[str, Any], Any] | None = None,
             no_ack: bool = True, on_message: Callable[[dict[str, Any]], Any] | None = None,
             disable_sync_subtasks: bool = True,
             on_interval: Callable[[], Any] | None = None) -> list[Any]:
        """As ``ResultSet.join``; with ``propagate``, a failed step before the group in its
        workflow (``parent``) raises its error at once: its members will never be sent."""
        if propagate and self.parent is not None:
            on_interval = _watching(self.parent, on_interval)
        return super().join(timeout=timeout, propagate=propagate, interval=interval,
                            callback=callback, no_ack=no_ack, on_message=on_message,
                            disable_sync_subtasks=disable_sync_subtasks, on_interval=on_interval)

    def save(self, backend: ResultBackend | None = None) -> GroupResult:
        """Store the member ids under the group id, for ``GroupResult.restore(id)``; saving
        again replaces them. Returns the GroupResult.

        Raises:
            ValueError: the group has no id.
            NotImplementedError: the result backend cannot store groups.
            ResultBackendError: the result backend failed.
        """
        _backend(backend).save_group(self._own_id(), [result.id for result in self.results])
        return self

    def delete(self, backend: ResultBackend | None = None) -> None:
        """Remove the saved group (not the members' results: see ``forget``)."""
        _backend(backend).delete_group(self._own_id())

    @classmethod
    def restore(cls, id: str, backend: ResultBackend | None = None,  # noqa: A002
                app: Any = None) -> GroupResult | None:
        """The GroupResult saved under ``id`` (by us or by Celery), None if none is.

        Raises:
            NotImplementedError: the result backend cannot store groups.
            ResultBackendError: the result backend failed, or holds no group there.
        """
        task_ids = _backend(backend).restore_group(id)
        if task_ids is None:
            return None
        return cls(id, [AsyncResult(task_id, backend=backend) for task_id in task_ids])

    def _own_id(self) -> str:
        if not self.id:
            raise ValueError("This GroupResult has no id to save it under.")
        return self.id

    def as_tuple(self) -> tuple[Any, ...]:
        """Celery's nested tuple form, ``((id, parent), [member tuples])``."""
        return ((self.id, self.parent.as_tuple() if self.parent else None),
                [result.as_tuple() for result in self.results])

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.id, self.results, self.parent)

    def __bool__(self) -> bool:
        return bool(self.id or self.results)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, GroupResult):
            return (other.id, other.results, other.parent) == (self.id, self.results, self.parent)
        if isinstance(other, str):
            return other == self.id
        return NotImplemented

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(self.id)

    def __str__(self) -> str:
        return str(self.id)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.id} [{', '.join(r.id for r in self.results)}]>"


def _backend(backend: ResultBackend | None) -> ResultBackend:
    if backend is not None:
        return backend
    from .results import get_backend

    return get_backend()


def _watching(parent: Any, on_interval: Callable[[], Any] | None) -> Callable[[], Any]:
    """Raise the error of a failed result among ``parent`` and its parents now, and after each
    wait (Celery's ``follow_parents``)."""
    def throw() -> None:
        node, nodes = parent, []
        while node is not None:
            nodes.append(node)
            node = getattr(node, "parent", None)
        for node in reversed(nodes):  # the first step's error first
            node.maybe_throw()

    def check() -> None:
        throw()
        if on_interval is not None:
            on_interval()

    throw()
    return check
