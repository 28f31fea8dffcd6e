"""Execution pools: solo (in the worker's thread), threads, and prefork (child processes).

Every pool has the same small surface: ``start``, ``free_slots``, ``submit(job)``,
``collect(timeout) -> [(key, outcome, LOST or TERMINATED)]``, ``kill(key) -> bool``, ``stop()``
(wait for running jobs) and ``terminate()`` (kill them). LOST means the process running the job
died; TERMINATED that ``kill(key)`` stopped it. Time limits and child recycling follow the
pool's :class:`~.timelimits.Limits` (see docs/limits.md for what each pool can enforce).
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import logging
from typing import TYPE_CHECKING

from django.db import connections

from .. import signals
from ..outcome import Outcome
from .execution import execute
from .finished import LOST, TERMINATED, Finished, _Terminated
from .job import Job
from .prefork import PreforkPool
from .timelimits import Limits, run_limited, warn_once

if TYPE_CHECKING:
    from .asyncio_pool import AsyncioPool
    from .green import GreenPool

logger = logging.getLogger(__name__)

#: The pools' shared vocabulary (finished.py) and the prefork pool (prefork.py), importable from
#: here as before.
__all__ = ["LOST", "MAX_THREADS", "TERMINATED", "Finished", "PreforkPool", "SoloPool",
           "ThreadPool", "_Terminated", "make_pool"]


class SoloPool:
    """Runs each job at once in the calling thread: one slot, no overhead.

    Time limits are SIGALRM timers, so they need the main thread (the worker's, normally).
    """

    slots = 1

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._done: list[Finished] = []

    def start(self) -> None:
        """Send ``worker_process_init``: this process is the one that runs tasks (as Celery)."""
        signals.send(signals.worker_process_init, None)

    def free_slots(self) -> int:
        return 1

    def submit(self, job: Job) -> None:
        soft, hard = self.limits.for_job(job)
        self._done.append((job.key, run_limited(job, soft, hard)))

    def collect(self, timeout: float = 0.0) -> list[Finished]:
        done, self._done = self._done, []
        return done

    def kill(self, key: int) -> bool:
        """A solo task runs on the worker's own thread: it cannot be killed from outside."""
        return False

    def resize(self, slots: int) -> None:
        """The solo pool has one slot, always."""
        raise ValueError("the solo pool has one slot; run the worker with --pool prefork or "
                         "threads to grow or shrink it")

    def stop(self) -> None:
        """Nothing runs after submit returns."""

    def terminate(self) -> None:
        """Nothing to kill."""


class ThreadPool:
    """Runs jobs on ``slots`` threads of this process (good for I/O-bound tasks).

    Threads cannot be interrupted or killed: time limits are not enforced (a warning says so).
    """

    def __init__(self, slots: int, limits: Limits | None = None) -> None:
        self.slots = slots
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._running: dict[concurrent.futures.Future[Outcome], int] = {}
        if limits is not None and limits.timed:
            warn_once(_THREADS_IGNORE_LIMITS)

    def start(self) -> None:
        # Threads start on demand: room up to MAX_THREADS lets resize() need no new executor.
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max(self.slots, MAX_THREADS), thread_name_prefix="taskq-worker")

    def free_slots(self) -> int:
        # Never below zero: after a shrink, more may run than there are slots (they finish).
        return max(0, self.slots - len(self._running))

    def submit(self, job: Job) -> None:
        assert self._executor is not None, "start() the pool first"
        if job.time_limit is not None or job.soft_time_limit is not None:
            warn_once(_THREADS_IGNORE_LIMITS)
        # The worker's context (its clock) goes with the job: threads do not inherit it.
        context = contextvars.copy_context()
        self._running[self._executor.submit(context.run, _execute_in_thread, job)] = job.key

    def collect(self, timeout: float = 0.0) -> list[Finished]:
        if not self._running:
            return []
        done, _ = concurrent.futures.wait(list(self._running), timeout=timeout,
                                          return_when=concurrent.futures.FIRST_COMPLETED)
        return [(self._running.pop(future), future.result()) for future in done]

    def kill(self, key: int) -> bool:
        """Threads cannot be killed."""
        return False

    def resize(self, slots: int) -> None:
        """Run up to ``slots`` jobs at once from now on (running ones finish)."""
        if slots > max(self.slots, MAX_THREADS):
            raise ValueError(f"the threads pool grows to {MAX_THREADS} threads at most")
        self.slots = slots

    def stop(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def terminate(self) -> None:
        """Threads cannot be killed: stop handing them work and let the process exit."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


#: The most threads a threads pool may be resized to.
MAX_THREADS = 256
_THREADS_IGNORE_LIMITS = ("time limits are not enforced by the threads pool (a thread cannot "
                          "be interrupted; async def tasks excepted); use prefork or solo")


def _execute_in_thread(job: Job) -> Outcome:
    try:
        return execute(job)
    finally:
        connections.close_all()  # this thread's connections; threads are reused, so reopen


def make_pool(kind: str, slots: int, *, time_limit: float | None = None,
              soft_time_limit: float | None = None, max_tasks_per_child: int | None = None,
              max_memory_per_child: int | None = None
              ) -> SoloPool | ThreadPool | PreforkPool | AsyncioPool | GreenPool:
    """The pool called ``kind`` with ``slots`` execution slots and the worker's limits.

    Raises:
        ConfigurationError: a limit is not positive, or the soft time limit is not below the
            hard one; a green pool's library is missing or was not patched in time.
    """
    limits = Limits(time_limit, soft_time_limit, max_tasks_per_child, max_memory_per_child)
    if kind in ("gevent", "eventlet"):  # greenlets of this process (green.py, monkey.py)
        from .green import GreenPool

        return GreenPool(kind, slots, limits)
    if kind == "asyncio":  # async def tasks on one event loop, sync ones on threads
        from .asyncio_pool import AsyncioPool
        return AsyncioPool(slots, limits)
    if kind not in ("solo", "threads", "prefork"):
        raise ValueError(f"unknown pool {kind!r}; use prefork, threads or solo")
    if kind != "prefork" and limits.recycles:
        warn_once(f"--max-tasks-per-child and --max-memory-per-child apply to the prefork pool "
                  f"only; ignored by the {kind} pool")
    if kind == "solo":
        return SoloPool(limits)
    if kind == "threads":
        return ThreadPool(slots, limits)
    return PreforkPool(slots, limits)
