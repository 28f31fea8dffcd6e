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
import multiprocessing
import os
import signal
import time
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any, Final

from django.db import connections

from .. import signals
from ..clock import clock_now
from ..outcome import Outcome
from .execution import execute
from .job import Job
from .timelimits import Limits, hard_limit_outcome, run_limited, warn_once

if TYPE_CHECKING:
    from .asyncio_pool import AsyncioPool
    from .green import GreenPool

logger = logging.getLogger(__name__)


class _Terminated:
    __slots__ = ()

    def __repr__(self) -> str:
        return "TERMINATED"


LOST = None  # collect() yields (key, LOST) for a job whose process died
#: collect() yields (key, TERMINATED) for a job stopped by ``pool.kill(key)``.
TERMINATED: Final = _Terminated()

Finished = tuple[int, "Outcome | _Terminated | None"]


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


@dataclass(slots=True)
class _Child:
    process: Any
    conn: Connection
    job: int | None = None  # key of the running job
    running: Job | None = None
    started: datetime | None = None
    hard: float | None = None
    deadline: float | None = None  # time.monotonic() at which the hard limit kills it
    terminated: bool = False  # kill(key) was called
    retiring: bool = False  # the pool shrank: stops after its task


class PreforkPool:
    """Runs jobs in ``slots`` forked child processes; a child that dies is replaced.

    The parent enforces hard time limits (SIGKILL, then a fresh child); children run the soft
    limit themselves, and exit after a task when ``limits`` say they are due for replacement.
    """

    def __init__(self, slots: int, limits: Limits | None = None) -> None:
        self.slots = slots
        self.limits = limits or Limits()
        self._children: list[_Child] = []
        self._context = multiprocessing.get_context("fork")

    def start(self) -> None:
        for _ in range(self.slots):
            self._children.append(self._spawn())

    def _spawn(self) -> _Child:
        signals.send(signals.worker_before_create_process, self)
        connections.close_all()  # children must open their own database connections
        parent_end, child_end = self._context.Pipe()
        process = self._context.Process(target=_child_main,
                                        args=(child_end, parent_end, self.limits),
                                        name="taskq-child", daemon=True)
        process.start()
        child_end.close()
        return _Child(process, parent_end)

    def free_slots(self) -> int:
        return sum(1 for child in self._children if child.job is None and not child.retiring)

    def resize(self, slots: int) -> None:
        """Fork children up to ``slots``, or stop idle ones (busy ones after their task)."""
        self.slots = slots
        while len([c for c in self._children if not c.retiring]) < slots:
            self._children.append(self._spawn())
        # Idle children go first; one already retiring is not counted (nor picked) again.
        staying = sorted((c for c in self._children if not c.retiring),
                         key=lambda c: c.job is not None)
        for child in staying[:max(0, len(staying) - slots)]:
            child.retiring = True
            if child.job is None:
                self._stop_child(child)

    def _stop_child(self, child: _Child) -> None:
        try:
            child.conn.send(None)
        except OSError:
            pass
        self._discard(child)
        self._children.remove(child)

    def submit(self, job: Job) -> None:
        index, child = next((i, c) for i, c in enumerate(self._children) if c.job is None)
        try:
            child.conn.send(job)
        except OSError:  # the idle child died: hand the job to a fresh one
            self._discard(child)
            child = self._children[index] = self._spawn()
            child.conn.send(job)
        _, hard = self.limits.for_job(job)
        child.job, child.running, child.started, child.hard = job.key, job, clock_now(), hard
        child.deadline = time.monotonic() + hard if hard is not None else None

    def collect(self, timeout: float = 0.0) -> list[Finished]:
        busy = [c for c in self._children if c.job is not None]
        if not busy:
            return []
        deadlines = [c.deadline for c in busy if c.deadline is not None]
        if deadlines:  # wake up in time to enforce the nearest hard limit
            timeout = max(0.0, min(timeout, min(deadlines) - time.monotonic()))
        ready = set(wait([c.conn for c in busy] + [c.process.sentinel for c in busy], timeout))
        now = time.monotonic()
        finished: list[Finished] = []
        for child in busy:
            if child.conn in ready or child.process.sentinel in ready:
                finished.append(self._receive(child))
            elif child.deadline is not None and now >= child.deadline and not child.terminated:
                finished.append(self._over_time(child))
        return finished

    def _receive(self, child: _Child) -> Finished:
        key = child.job
        assert key is not None
        try:
            if child.conn.poll():
                outcome, retiring = child.conn.recv()
                if retiring or child.terminated or child.retiring:  # exits after sending (or was killed)
                    self._replace(child)
                else:
                    self._idle(child)
                return key, outcome
        except (EOFError, OSError):
            pass
        terminated = child.terminated
        self._replace(child)
        return key, TERMINATED if terminated else LOST

    def _over_time(self, child: _Child) -> Finished:
        if child.conn.poll():  # it finished just as its time ran out
            return self._receive(child)
        job, key = child.running, child.job
        assert job is not None and key is not None
        child.process.kill()
        logger.error("task killed name=%s id=%s: hard time limit (%gs) exceeded",
                     job.task_name, job.request.id, child.hard)
        self._replace(child)
        return key, hard_limit_outcome(job, child.hard or 0.0, child.started,
                                       "the process was killed")

    @staticmethod
    def _idle(child: _Child) -> None:
        child.job = child.running = child.started = child.hard = child.deadline = None

    def _discard(self, child: _Child) -> None:
        child.process.join(timeout=5)
        if child.process.is_alive():
            child.process.kill()
            child.process.join(timeout=5)
        child.conn.close()

    def _replace(self, child: _Child) -> None:
        if child.retiring:  # the pool shrank meanwhile: not replaced
            self._stop_child(child)
            return
        self._discard(child)
        self._children[self._children.index(child)] = self._spawn()

    def kill(self, key: int) -> bool:
        """SIGKILL the child running job ``key``; the next ``collect`` yields (key, TERMINATED).

        Returns False when no child runs that job (it has finished, or never started). A task
        that finished just before the signal landed is reported with its real outcome instead.
        """
        child = next((c for c in self._children if c.job == key and not c.terminated), None)
        if child is None:
            return False
        child.terminated = True
        child.process.kill()
        wait([child.process.sentinel], 5)  # dead before we return: collect(0) sees it
        return True

    def stop(self) -> None:
        for child in self._children:
            try:
                child.conn.send(None)
            except OSError:
                pass
        for child in self._children:
            child.process.join(timeout=10)
            if child.process.is_alive():
                child.process.kill()
        self._children = []

    def terminate(self) -> None:
        for child in self._children:
            child.process.kill()
            child.process.join(timeout=5)
        self._children = []


def _child_main(conn: Connection, parent_end: Connection, limits: Limits) -> None:
    parent_end.close()
    # The parent decides when children stop (a process-group SIGTERM, as systemd sends, must not
    # cut tasks short); terminate() uses SIGKILL.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signals.send(signals.worker_process_init, None)  # e.g. reopen connections after the fork
    _serve(conn, limits)
    # Not sent when the child dies or is killed (a hard time limit, terminate()).
    signals.send(signals.worker_process_shutdown, None, pid=os.getpid(), exitcode=0)


def _serve(conn: Connection, limits: Limits) -> None:
    """Run jobs from ``conn`` until told to stop, the parent goes, or it is time to retire."""
    done = 0
    while True:
        try:
            job = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if job is None:
            return
        soft, _ = limits.for_job(job)  # the parent enforces the hard limit
        outcome = run_limited(job, soft, None)
        done += 1
        reason = limits.retire_reason(done) if limits.recycles else None
        conn.send((outcome, reason is not None))
        if reason is not None:
            logger.info("child process retiring after its task: %s", reason)
            return


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
