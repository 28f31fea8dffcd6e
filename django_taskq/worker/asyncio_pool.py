"""The asyncio pool (``--pool asyncio``): ``async def`` tasks run concurrently on one event loop,
sync tasks on a bounded set of threads beside it.

The loop runs in a thread of the worker. Each async job goes through the same steps as in any
pool (execution.steps): the synchronous parts — signals, ``before_start``, the handlers, a
STARTED record — run on short-lived "glue" threads (they may use the ORM, which Django forbids
on a thread running an event loop); only the coroutine runs on the loop, so ``--concurrency``
slots (100 by default for this pool) are coroutines waiting on I/O side by side, not threads.
Time limits and ``revoke(terminate=True)`` cancel the coroutine (coroutines.py); sync tasks
cannot be interrupted, as in the threads pool. With task middleware that wraps execution, an
async run also holds a glue thread while it awaits (the middleware's frame waits for it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .. import signals
from ..clock import clock_now
from ..context import schedule_retry
from ..outcome import Outcome
from . import coroutines
from .execution import Steps, steps
from .job import Job
from .pools import TERMINATED, Finished, _execute_in_thread, _Terminated
from .timelimits import HardTimeLimit, Limits, hard_limit_outcome, warn_once

logger = logging.getLogger(__name__)

#: Slots of the asyncio pool when neither --concurrency nor WORKER_CONCURRENCY sets them.
DEFAULT_CONCURRENCY = 100
#: Threads that run sync tasks in the asyncio pool, at most (fewer if there are fewer slots).
SYNC_THREADS = 10
#: Threads that run the synchronous steps of async jobs (signals, handlers), at most.
GLUE_THREADS = 16
#: The most slots the pool may be resized to.
MAX_SLOTS = 10_000
#: The loop is reported blocked when a check due every WATCH_EVERY seconds runs this late.
BLOCKED_AFTER = 1.0
WATCH_EVERY = 0.25
_SYNC_LIMITS = ("time limits are not enforced for sync tasks in the asyncio pool (they run on "
                "threads, which cannot be interrupted); async def tasks are cancelled")


@dataclass(slots=True, eq=False)
class _Entry:
    """One submitted job: its context (the request lives there) and, while its coroutine runs,
    the asyncio task running it."""

    job: Job
    context: contextvars.Context
    started: datetime
    is_async: bool
    task: asyncio.Task[Any] | None = None
    killed: bool = False


@dataclass(frozen=True, slots=True)
class _Step:
    """Where a job's steps stopped: at a coroutine to await, done, or raised."""

    kind: str  # "await", "done" or "raised"
    value: Any


class AsyncioPool:
    """Runs async def tasks on one event loop (``slots`` at once) and sync tasks on threads."""

    def __init__(self, slots: int, limits: Limits | None = None) -> None:
        self.slots = slots
        self.limits = limits or Limits()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._glue: concurrent.futures.ThreadPoolExecutor | None = None
        self._sync: concurrent.futures.ThreadPoolExecutor | None = None
        self._running: dict[concurrent.futures.Future[Any], _Entry] = {}
        self._awaiting: set[_Entry] = set()  # coroutines on the loop (read on the loop only)
        self._recent: set[str] = set()  # tasks that were on the loop since the last check
        if self.limits.recycles:
            warn_once("--max-tasks-per-child and --max-memory-per-child apply to the prefork "
                      "pool only; ignored by the asyncio pool")

    def start(self) -> None:
        """Start the loop's thread; this process runs the tasks (``worker_process_init``)."""
        signals.send(signals.worker_process_init, None)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="taskq-asyncio",
                                        daemon=True)
        self._thread.start()
        self._loop.call_soon_threadsafe(self._watch, 0.0)
        glue, sync = self._threads()
        self._glue = concurrent.futures.ThreadPoolExecutor(
            glue, thread_name_prefix="taskq-asyncio-glue")
        self._sync = concurrent.futures.ThreadPoolExecutor(
            sync, thread_name_prefix="taskq-worker")

    def _threads(self) -> tuple[int, int]:
        """Glue and sync threads for the current size (a middleware's frame holds a glue
        thread while its coroutine runs: one per slot then)."""
        glue = self.slots if _middleware_wraps_runs() else min(self.slots, GLUE_THREADS)
        return glue, min(self.slots, SYNC_THREADS)

    def free_slots(self) -> int:
        return max(0, self.slots - len(self._running))

    def submit(self, job: Job) -> None:
        assert self._loop is not None and self._sync is not None, "start() the pool first"
        # The worker's context (its clock) goes with the job, as in the threads pool.
        context = contextvars.copy_context()
        entry = _Entry(job, context, context.run(clock_now),
                       coroutines.is_async_name(job.task_name))
        future: concurrent.futures.Future[Any]
        if entry.is_async:
            context.run(coroutines.RUNNER.set, lambda coro: self._run_blocking(entry, coro))
            future = asyncio.run_coroutine_threadsafe(self._run(entry), self._loop)
        else:
            if job.time_limit is not None or job.soft_time_limit is not None \
                    or self.limits.timed:
                warn_once(_SYNC_LIMITS)
            future = self._sync.submit(context.run, _execute_in_thread, job)
        self._running[future] = entry

    def collect(self, timeout: float = 0.0) -> list[Finished]:
        if not self._running:
            return []
        done, _ = concurrent.futures.wait(list(self._running), timeout=timeout,
                                          return_when=concurrent.futures.FIRST_COMPLETED)
        return [(self._running.pop(future).job.key, future.result()) for future in done]

    def kill(self, key: int) -> bool:
        """Cancel the coroutine of async job ``key`` (the next ``collect`` yields TERMINATED,
        unless it had just finished); False for a sync job (a thread cannot be stopped)."""
        entry = next((e for e in self._running.values() if e.job.key == key), None)
        if entry is None or not entry.is_async or self._loop is None:
            return False
        entry.killed = True
        self._loop.call_soon_threadsafe(self._cancel, entry)
        return True

    @staticmethod
    def _cancel(entry: _Entry) -> None:
        if entry.task is not None:
            coroutines.cancel(entry.task)

    def resize(self, slots: int) -> None:
        """Run up to ``slots`` jobs at once from now on (running ones finish)."""
        if not 0 < slots <= MAX_SLOTS:
            raise ValueError(f"the asyncio pool has 1 to {MAX_SLOTS} slots, not {slots}")
        self.slots = slots
        # Grown (autoscale, pool_grow): the executors may start more threads (on demand).
        for executor, size in zip((self._glue, self._sync), self._threads(), strict=True):
            if executor is not None and executor._max_workers < size:
                executor._max_workers = size

    def stop(self) -> None:
        """Wait for running jobs (collect them afterwards), then stop the loop and threads."""
        concurrent.futures.wait(list(self._running))
        self._close(wait=True)

    def terminate(self) -> None:
        """Cancel running coroutines, drop queued sync jobs, and stop (running sync tasks are
        left to their threads: they cannot be stopped)."""
        for entry in self._running.values():
            if entry.is_async:
                entry.killed = True
                if self._loop is not None and not self._loop.is_closed():
                    self._loop.call_soon_threadsafe(self._cancel, entry)
        concurrent.futures.wait([f for f, e in self._running.items() if e.is_async], timeout=5)
        self._close(wait=False)

    def _close(self, *, wait: bool) -> None:
        if self._sync is not None:
            self._sync.shutdown(wait=wait, cancel_futures=not wait)
        if self._glue is not None:
            self._glue.shutdown(wait=wait)
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and not loop.is_closed():
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)
            if not thread.is_alive():
                loop.close()
        self._loop = self._thread = None

    # -- on the loop ---------------------------------------------------------------------

    def _watch(self, due: float) -> None:
        """Warn when the loop ran this check late: a coroutine blocked it (it does not await)."""
        assert self._loop is not None
        now = self._loop.time()
        if due and now - due > BLOCKED_AFTER:
            names = self._recent | {e.job.task_name for e in self._awaiting}
            logger.warning("the asyncio pool's event loop was blocked for %.1fs: a task that does "
                           "not await (CPU-bound code, time.sleep, a blocking client) stops every "
                           "other task; make it await or a sync task. On the loop meanwhile: %s",
                           now - due, ", ".join(sorted(names)))
        self._recent = set()
        self._loop.call_later(WATCH_EVERY, self._watch, now + WATCH_EVERY)

    async def _run(self, entry: _Entry) -> Outcome | _Terminated:
        """The job's steps: sync parts on a glue thread, its coroutine here."""
        loop = asyncio.get_running_loop()
        work = entry.context.run(steps, entry.job)
        soft, hard = self.limits.for_job(entry.job)
        answer: tuple[bool, Any] = (True, None)
        while True:
            step = await loop.run_in_executor(self._glue, _advance, entry, work, answer)
            if step.kind != "await":
                break
            answer = await self._await(entry, step.value, soft, hard)
        if step.kind == "done":
            return step.value  # type: ignore[no-any-return]
        if isinstance(step.value, asyncio.CancelledError) and entry.killed:
            return TERMINATED
        if isinstance(step.value, HardTimeLimit):
            logger.error("task cancelled name=%s id=%s: hard time limit (%gs) exceeded",
                         entry.job.task_name, entry.job.request.id, hard)
            return hard_limit_outcome(entry.job, hard or 0.0, entry.started,
                                      "the task was cancelled")
        raise step.value

    async def _await(self, entry: _Entry, coro: Any, soft: float | None,
                     hard: float | None) -> tuple[bool, Any]:
        """Run the task's coroutine as its own asyncio task, in the job's context."""
        if entry.killed:
            coro.close()
            return False, asyncio.CancelledError()
        carried: list[Any] = []
        task = entry.context.run(asyncio.ensure_future,
                                 coroutines.guarded(coro, soft, hard, carried))
        entry.task = task
        self._awaiting.add(entry)
        self._recent.add(entry.job.task_name)
        try:
            return True, await task
        except BaseException as exc:  # noqa: BLE001 - thrown into the job's steps
            return False, exc
        finally:
            entry.task = None
            self._awaiting.discard(entry)
            if carried and carried[0] is not None:
                entry.context.run(schedule_retry, carried[0])

    # -- on a glue thread, when middleware wraps the run ---------------------------------

    def _run_blocking(self, entry: _Entry, coro: Any) -> Any:
        """Run the coroutine on the loop and wait for it here (middleware holds this frame)."""
        assert self._loop is not None
        soft, hard = self.limits.for_job(entry.job)
        carried: list[Any] = []
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def begin() -> None:
            if entry.killed:
                coro.close()
                done.set_exception(asyncio.CancelledError())
                return
            task = asyncio.ensure_future(coroutines.guarded(coro, soft, hard, carried))
            entry.task = task
            task.add_done_callback(lambda t: _settle(t, done, entry))

        # In a copy of this thread's context: the request is active there.
        self._loop.call_soon_threadsafe(begin, context=contextvars.copy_context())
        try:
            return done.result()
        finally:
            coroutines.carry_back(carried)


def _middleware_wraps_runs() -> bool:
    from ..middleware import installed

    return any(hasattr(m, "execute") for m in installed())


def _settle(task: asyncio.Task[Any], done: concurrent.futures.Future[Any], entry: _Entry) -> None:
    entry.task = None
    if task.cancelled():
        done.set_exception(asyncio.CancelledError())
    elif task.exception() is not None:
        done.set_exception(task.exception())
    else:
        done.set_result(task.result())


def _advance(entry: _Entry, work: Steps, answer: tuple[bool, Any]) -> _Step:
    """Run the job's steps up to its coroutine or its end, on this (glue) thread."""
    from django.db import connections

    ok, value = answer
    try:
        coro = entry.context.run(work.send if ok else work.throw, value)
    except StopIteration as stop:
        return _Step("done", stop.value)
    except BaseException as exc:  # noqa: BLE001 - a hard limit, a kill: sorted by _run
        return _Step("raised", exc)
    finally:
        connections.close_all()  # this thread's; glue threads serve any job next
    return _Step("await", coro)
