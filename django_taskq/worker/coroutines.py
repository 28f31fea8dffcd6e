"""Running ``async def`` tasks: to completion, under time limits applied by cancellation, with
the Django connections they opened closed afterwards.

Every pool runs a task's coroutine through :func:`guarded`: the solo, threads and prefork pools
and eager runs block on it with :func:`run` (on an event loop kept per thread), the asyncio pool
awaits it on its own loop. Time limits are timers on the loop, not signals: at the soft limit
``SoftTimeLimitExceeded`` is raised inside the coroutine at the ``await`` it is waiting on (it
may catch it to clean up); at the hard limit the coroutine is cancelled (again every
``HARD_REPEAT`` seconds should it swallow the ``CancelledError``) and the run ends with
``HardTimeLimit``. A coroutine that never awaits cannot be interrupted this way (see
docs/pools.md).

The coroutine runs as an asyncio Task, in a copy of the caller's context: it sees the request
(``self.request``); a ``self.retry(throw=False)`` it makes is carried back to the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import os
import threading
import weakref
from collections.abc import Callable, Coroutine, Generator, Iterator
from contextvars import ContextVar
from typing import Any

from django.db import connections

from ..context import schedule_retry, take_scheduled_retry
from ..exceptions import SoftTimeLimitExceeded

#: Once the hard limit fired, the coroutine is cancelled again this often until it ends.
HARD_REPEAT = 1.0

#: (soft, hard) seconds for coroutines run in this context (set by the pools, per job).
_limits: ContextVar[tuple[float | None, float | None]] = ContextVar(
    "django_taskq_coroutine_limits", default=(None, None))
#: How :func:`run` runs a coroutine in this context instead of a loop of this thread (the
#: asyncio pool sends it to its own loop).
RUNNER: ContextVar[Callable[[Coroutine[Any, Any, Any]], Any] | None] = ContextVar(
    "django_taskq_coroutine_runner", default=None)


def is_async(task: Any) -> bool:
    """Whether ``task`` runs a coroutine (``async def`` function, ``run`` or ``__call__``)."""
    run = getattr(task, "_plain_run", None) or getattr(task, "run", None)
    return inspect.iscoroutinefunction(run) or \
        inspect.iscoroutinefunction(type(task).__call__)


class HardTimeLimit(BaseException):
    """Raised inside a task at its hard time limit where the pool stops it in-process (the
    solo pool's timer; a cancelled coroutine's run). A BaseException: ``except Exception`` in
    task code does not stop it."""

    #: Raised for a coroutine cancelled at its limit (not by a signal handler).
    cancelled = False

    @classmethod
    def by_cancel(cls, limit: float | None) -> HardTimeLimit:
        exc = cls(limit)
        exc.cancelled = True
        return exc


def job_limits(job: Any) -> tuple[float | None, float | None]:
    """``(soft, hard)`` seconds for ``job`` (its own, the worker's defaults merged in by
    ``prepare``); a soft limit at or above the hard one could never fire first: dropped."""
    soft, hard = job.soft_time_limit, job.time_limit
    return (None if soft is not None and hard is not None and soft >= hard else soft), hard


def is_async_name(task_name: str) -> bool:
    """Whether the registered task ``task_name`` is async (False when it is unknown)."""
    from ..registry import registry

    try:
        return is_async(registry.get(task_name))
    except Exception:  # noqa: BLE001 - an unknown task fails where it runs, as before
        return False


@contextlib.contextmanager
def limited(soft: float | None, hard: float | None) -> Iterator[None]:
    """Apply these time limits to coroutines :func:`run` runs inside the block."""
    token = _limits.set((soft, hard))
    try:
        yield
    finally:
        _limits.reset(token)


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` to completion and return its value (or raise its exception), blocking.

    On this thread's own event loop (kept for the next task: clients bound to a loop survive),
    or, when a loop is already running in this thread (an eager run called from async code),
    on a new loop in a helper thread. Under the context's time limits (:func:`limited`).

    Raises:
        HardTimeLimit: the hard limit cancelled it.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        running = False
    else:
        running = True  # e.g. other.apply() inside a coroutine: never block this loop on itself
    runner = RUNNER.get()
    if runner is not None and not running:
        return runner(coro)
    soft, hard = _limits.get()
    carried: list[Any] = []
    try:
        if running:
            return _run_in_thread(guarded(coro, soft, hard, carried))
        return _run_here(guarded(coro, soft, hard, carried))
    finally:
        carry_back(carried)


def carry_back(carried: list[Any]) -> None:
    """Schedule here the ``retry(throw=False)`` a coroutine made in its own context copy."""
    if carried and carried[0] is not None:
        schedule_retry(carried[0])


class _ThreadLoop(threading.local):
    loop: asyncio.AbstractEventLoop | None = None
    pid: int = 0


_here = _ThreadLoop()


def _run_here(coro: Coroutine[Any, Any, Any]) -> Any:
    loop = _here.loop
    if loop is None or loop.is_closed() or _here.pid != os.getpid():  # none yet, or forked
        loop = _here.loop = asyncio.new_event_loop()
        _here.pid = os.getpid()
    task = loop.create_task(coro)
    try:
        return loop.run_until_complete(task)
    finally:
        if not task.done():  # a signal handler raised out of the loop (a cold stop)
            _discard(loop)


_requested: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()


def cancel(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and remember that it was asked to (Python 3.10 has no
    ``Task.cancelling()`` to tell a task cancelled from one that awaited a cancelled future)."""
    _requested.add(task)
    task.cancel()


def _cancel_requested(task: asyncio.Task[Any]) -> bool:
    cancelling = getattr(task, "cancelling", None)  # Python 3.11+
    if cancelling is not None:
        return bool(cancelling())
    return task in _requested


def _discard(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what runs on ``loop`` and close it: it was left in the middle of a step."""
    _here.loop = None
    pending = asyncio.all_tasks(loop)
    for task in pending:
        cancel(task)
    with contextlib.suppress(BaseException):
        if pending:
            loop.run_until_complete(asyncio.wait(pending, timeout=HARD_REPEAT))
    loop.close()


def _run_in_thread(coro: Coroutine[Any, Any, Any]) -> Any:
    outcome: list[tuple[bool, Any]] = []
    context = contextvars.copy_context()

    def target() -> None:
        try:
            outcome.append((True, context.run(asyncio.run, coro)))
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller's thread
            outcome.append((False, exc))

    thread = threading.Thread(target=target, name="taskq-coroutine", daemon=True)
    thread.start()
    thread.join()
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


async def guarded(coro: Coroutine[Any, Any, Any], soft: float | None = None,
                  hard: float | None = None, carried: list[Any] | None = None) -> Any:
    """Await ``coro`` under the time limits, in its own Django thread-sensitive context (its
    ``sync_to_async`` and async ORM calls get a thread of their own, as a request does under
    ASGI), closing the connections that thread opened when it ends.

    Raises:
        HardTimeLimit: the hard limit cancelled it.
    """
    from asgiref.sync import ThreadSensitiveContext

    steer = _Steer(coro)
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    if soft is not None:
        steer.timers.append(loop.call_later(soft, steer.soft_limit, task, soft))
    if hard is not None:
        steer.timers.append(loop.call_later(hard, steer.hard_limit, task, hard))
    try:
        async with ThreadSensitiveContext() as sensitive:
            try:
                value = await steer
            finally:
                steer.stop()
                await _close_connections(sensitive)
    except asyncio.CancelledError as exc:
        if steer.hard_fired:
            raise HardTimeLimit.by_cancel(hard) from None
        if not _cancel_requested(task):
            # Not cancelled itself: it awaited something that was. A failure of the task, not
            # a stop of the worker (CancelledError is a BaseException).
            raise RuntimeError("the task's coroutine raised CancelledError without being "
                               "cancelled (it awaited a task or future that was)") from exc
        raise
    finally:
        if carried is not None:
            carried.append(take_scheduled_retry())
    if steer.hard_fired:  # it swallowed the cancellation and ended anyway: too late
        raise HardTimeLimit.by_cancel(hard)
    return value


async def _close_connections(sensitive: Any) -> None:
    """Close the connections the coroutine's thread-sensitive thread opened (only if it made
    one: asgiref starts that thread on the first ``sync_to_async`` call)."""
    from asgiref.sync import SyncToAsync, sync_to_async

    used = getattr(SyncToAsync, "context_to_thread_executor", None)
    if used is not None and sensitive not in used:
        return
    await sync_to_async(connections.close_all)()


class _Steer:
    """Awaits a coroutine as ``await`` does, but turns the soft limit's cancellation into a
    ``SoftTimeLimitExceeded`` thrown in at the coroutine's own ``await``."""

    def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
        self._coro = coro
        self._inject: BaseException | None = None
        self._inside = False
        self.hard_fired = False
        self.timers: list[asyncio.TimerHandle] = []

    def soft_limit(self, task: asyncio.Task[Any], seconds: float) -> None:
        if self._inside and not self.hard_fired:
            self._inject = SoftTimeLimitExceeded(f"soft time limit ({seconds:g}s) exceeded")
            cancel(task)

    def hard_limit(self, task: asyncio.Task[Any], seconds: float) -> None:
        if not self._inside:
            return
        self.hard_fired, self._inject = True, None
        cancel(task)
        self.timers.append(asyncio.get_running_loop().call_later(
            HARD_REPEAT, self.hard_limit, task, seconds))

    def stop(self) -> None:
        self._inside = False
        for timer in self.timers:
            timer.cancel()

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, value, error = self._coro, None, None
        self._inside = True
        while True:
            try:
                yielded = coro.send(value) if error is None else coro.throw(error)
            except StopIteration as stop:
                return stop.value
            try:
                value, error = (yield yielded), None
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # noqa: BLE001 - handed on to the coroutine
                value, error = None, self._swap(exc)

    def _swap(self, exc: BaseException) -> BaseException:
        if isinstance(exc, asyncio.CancelledError) and self._inject is not None:
            injected, self._inject = self._inject, None
            task = asyncio.current_task()
            uncancel = getattr(task, "uncancel", None)  # Python 3.11+: it was not cancelled
            if uncancel is not None:
                uncancel()
            _requested.discard(task)  # type: ignore[arg-type]
            return injected
        return exc
