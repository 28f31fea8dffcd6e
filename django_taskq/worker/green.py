"""Green pools: gevent and eventlet run each job in a greenlet of the worker's own process.

Hundreds of I/O-bound tasks (HTTP calls, sleeps, socket reads) wait at once on one process,
because the standard library was monkey-patched before Django started (django_taskq/monkey.py):
a task that waits on I/O lets the others, the worker loop and the heartbeat run. The pool has
the surface of the others (pools.py). Time limits are the library's timeouts, raised inside the
greenlet at its next wait: the soft limit raises ``SoftTimeLimitExceeded`` in the task; at the
hard limit the greenlet is killed and the task fails with ``TimeLimitExceeded`` at once, as a
prefork child's would. ``kill(key)`` (revoke with terminate) kills the task's greenlet.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import importlib
import importlib.util
import logging
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any, cast

from django.db import connections

from .. import monkey, signals
from ..clock import clock_now
from ..exceptions import ConfigurationError, SoftTimeLimitExceeded
from ..outcome import Outcome, failure
from . import coroutines
from .execution import execute
from .job import Job
from .pools import LOST, TERMINATED, Finished
from .timelimits import HARD_REPEAT, HardTimeLimit, Limits, _common, hard_limit_outcome, warn_once

logger = logging.getLogger(__name__)


#: The most real threads gevent's pool gets for ``async def`` tasks (eventlet's is
#: EVENTLET_THREADPOOL_SIZE, 20 by default).
MAX_ASYNC_THREADS = 100


class Terminated(SystemExit):
    """Raised inside a task's greenlet by ``kill(key)`` (revoke with ``terminate=True``).

    A SystemExit, as :class:`GreenHardLimit`: psycopg then cancels on the server the query
    the greenlet waits on (else it runs on after the kill, holding its locks)."""


class GreenHardLimit(HardTimeLimit, SystemExit):
    """Raised inside a task's greenlet at its hard time limit."""


class Library:
    """What the pool needs from gevent or eventlet: spawn, kill, and a timeout."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.module: Any = importlib.import_module(name)

    def spawn(self, function: Any, *args: Any) -> Any:
        return self.module.spawn(function, *args)

    def kill(self, greenlet: Any, exc: BaseException) -> None:
        """Raise ``exc`` inside ``greenlet`` (at once, or when it next runs); never waits for it."""
        if self.name == "gevent":
            greenlet.kill(exc, block=False)
        else:  # eventlet throws at once (type, value, traceback: it also cancels one not begun)
            greenlet.kill(type(exc), exc, None)

    def in_thread(self, function: Any, *args: Any) -> Any:
        """``function(*args)`` on a real thread of the library's pool; this greenlet waits."""
        if self.name == "gevent":
            return self.module.get_hub().threadpool.apply(function, args)
        return importlib.import_module("eventlet.tpool").execute(function, *args)

    def timeout(self, seconds: float, exc: BaseException) -> Any:
        """A context manager raising ``exc`` in this greenlet after ``seconds`` (at a wait)."""
        return self.module.Timeout(seconds, exc)


def check_patched(kind: str) -> None:
    """Raise ConfigurationError unless this process was patched for ``kind`` before Django
    started (django_taskq/monkey.py), naming the fix."""
    extra = monkey.GREEN_POOLS[kind]
    if monkey.missing == kind:
        raise ConfigurationError(f"The {kind} pool needs the {kind} package, which is not "
                                 f"installed: pip install '{extra}'")
    if monkey.patched == kind:
        return
    if importlib.util.find_spec(kind) is None:
        raise ConfigurationError(f"The {kind} pool needs the {kind} package, which is not "
                                 f"installed: pip install '{extra}'")
    if monkey.patched is not None:
        raise ConfigurationError(f"This process was monkey-patched for {monkey.patched}; it "
                                 f"cannot run the {kind} pool. Choose one green pool.")
    raise ConfigurationError(
        f"The {kind} pool needs the standard library monkey-patched before Django starts, and "
        f"this worker's pool was chosen where django_taskq cannot see it that early (a Celery "
        f"app's conf set in code, a Worker built in an already running process, or settings "
        f"that import django_taskq themselves). Run `manage.py taskworker --pool {kind}`, or "
        f"set TASKQ_WORKER_POOL={kind} in the environment (or TASKQ['WORKER_POOL'] in "
        f"settings), so that the patch happens first (see docs/pools.md).")


@dataclass(slots=True, eq=False)
class _Run:
    job: Job
    started: datetime
    hard: float | None
    deadline: float | None  # time.monotonic() at which the hard limit kills it
    greenlet: Any = None


@dataclass(slots=True, eq=False)
class _Zombie:
    """A greenlet that was killed but has not ended (it swallowed the exception): killed
    again every HARD_REPEAT seconds until it gives up."""

    greenlet: Any
    exc: BaseException
    next_kill: float = field(default=0.0)


class GreenPool:
    """Runs up to ``slots`` jobs at once, each in a greenlet of this process."""

    def __init__(self, kind: str, slots: int, limits: Limits | None = None) -> None:
        check_patched(kind)
        if limits is not None and limits.recycles:
            warn_once(f"--max-tasks-per-child and --max-memory-per-child apply to the prefork "
                      f"pool only; ignored by the {kind} pool")
        self.kind = kind
        self.slots = slots
        self.limits = limits or Limits()
        self.library = Library(kind)
        self._running: dict[int, _Run] = {}
        self._done: list[Finished] = []
        self._zombies: list[_Zombie] = []
        self._ready = threading.Event()  # green: the standard library is patched

    def start(self) -> None:
        """Send ``worker_process_init``: this process is the one that runs tasks (as solo)."""
        self._size_threads()
        _native_sync_to_async(self.kind)
        signals.send(signals.worker_process_init, None)

    def _size_threads(self) -> None:
        if self.kind == "gevent":  # async def tasks run on its threads (10 by default)
            threadpool = self.library.module.get_hub().threadpool
            threadpool.maxsize = max(threadpool.maxsize, min(self.slots, MAX_ASYNC_THREADS))

    def free_slots(self) -> int:
        return max(0, self.slots - len(self._running))

    def submit(self, job: Job) -> None:
        soft, hard = self.limits.for_job(job)
        run = _Run(job, clock_now(), hard, time.monotonic() + hard if hard is not None else None)
        # The worker's context (its clock) goes with the job: a greenlet starts with none.
        context = contextvars.copy_context()
        run.greenlet = self.library.spawn(context.run, self._main, run, soft)
        self._running[job.key] = run

    def _main(self, run: _Run, soft: float | None) -> None:
        outcome: Outcome | None = LOST
        try:
            outcome = self._limited(run.job, soft)
        except BaseException:  # noqa: BLE001 - killed (hard limit, terminate, cold stop) or worse
            if self._running.get(run.job.key) is run:  # not killed by this pool: a crash
                logger.exception("greenlet running name=%s id=%s failed",
                                 run.job.task_name, run.job.request.id)
        finally:
            connections.close_all()  # this greenlet's own connections: 500 must not pile up
        if self._running.get(run.job.key) is run:  # a crash reports LOST, as a dead child
            del self._running[run.job.key]
            self._done.append((run.job.key, outcome))
            self._ready.set()

    def _limited(self, job: Job, soft: float | None) -> Outcome:
        """``execute(job)`` with the soft limit raised in the task at its next wait."""
        if coroutines.is_async_name(job.task_name):
            # asyncio keeps one running loop per OS thread: loops of several greenlets would
            # clash. The coroutine runs on a real thread (its limits by cancellation).
            context = contextvars.copy_context()
            return cast(Outcome, self.library.in_thread(context.run, _on_thread, job))
        if soft is None:
            return execute(job)
        started, outcome = clock_now(), None
        exc = SoftTimeLimitExceeded(f"soft time limit ({soft:g}s) exceeded")
        try:
            with self.library.timeout(soft, exc):
                outcome = execute(job)
        except SoftTimeLimitExceeded as raised:  # fired outside the task's own code
            if outcome is not None:
                return outcome
            return failure(job.request.id or "", job.task_name, raised, date_started=started,
                           date_done=clock_now(), traceback=traceback.format_exc(),
                           **_common(job))
        return outcome

    def collect(self, timeout: float = 0.0) -> list[Finished]:
        if not self._done and self._running and timeout > 0:
            deadlines = [r.deadline for r in self._running.values() if r.deadline is not None]
            if deadlines:  # wake up in time to enforce the nearest hard limit
                timeout = max(0.0, min(timeout, min(deadlines) - time.monotonic()))
            self._ready.wait(timeout)  # the tasks' greenlets run meanwhile
        elif not self._done:
            time.sleep(0)  # let greenlets that are ready run (a cooperative yield)
        self._ready.clear()
        self._over_time()
        self._haunt()
        done, self._done = self._done, []
        return done

    def _over_time(self) -> None:
        now = time.monotonic()
        for key, run in list(self._running.items()):
            if run.deadline is None or now < run.deadline or self._running.get(key) is not run:
                continue  # in time, or it ended while an earlier kill let greenlets run
            del self._running[key]
            self._bury(run.greenlet, GreenHardLimit(run.hard))
            logger.error("task killed name=%s id=%s: hard time limit (%gs) exceeded",
                         run.job.task_name, run.job.request.id, run.hard)
            self._done.append((key, hard_limit_outcome(run.job, run.hard or 0.0, run.started,
                                                       "the greenlet was killed")))

    def _bury(self, greenlet: Any, exc: BaseException) -> None:
        self.library.kill(greenlet, exc)
        self._zombies.append(_Zombie(greenlet, exc, time.monotonic() + HARD_REPEAT))

    def _haunt(self) -> None:
        """Kill again the killed greenlets that caught the exception and run on."""
        self._zombies = [z for z in self._zombies if not z.greenlet.dead]
        now = time.monotonic()
        for zombie in self._zombies:
            if now >= zombie.next_kill:
                warn_once("a task caught the exception that stops it (except BaseException?) "
                          "and runs on; it is killed again every second")
                zombie.next_kill = now + HARD_REPEAT
                self.library.kill(zombie.greenlet, zombie.exc)

    def kill(self, key: int) -> bool:
        """Kill the greenlet running job ``key``; the next ``collect`` yields (key, TERMINATED).

        Returns False when no greenlet runs that job (it has finished, or never started).
        """
        run = self._running.pop(key, None)
        if run is None:
            return False
        self._bury(run.greenlet, Terminated("terminated by revoke"))
        self._done.append((key, TERMINATED))
        return True

    def resize(self, slots: int) -> None:
        """Run up to ``slots`` jobs at once from now on (running ones finish)."""
        if slots < 1:
            raise ValueError(f"the {self.kind} pool needs at least one slot")
        self.slots = slots
        self._size_threads()  # grown (autoscale, pool_grow): threads for async def tasks too

    def stop(self) -> None:
        """Wait for running jobs (hard limits still apply); ``collect`` then yields them."""
        while self._running:
            self._ready.wait(0.1)
            self._ready.clear()
            self._over_time()

    def terminate(self) -> None:
        """Kill every running greenlet (the worker requeues their messages)."""
        running, self._running = list(self._running.values()), {}
        for run in running:
            self.library.kill(run.greenlet, Terminated("the worker stopped (cold)"))
        deadline = time.monotonic() + 2.0  # their finally blocks close their connections
        while any(not r.greenlet.dead for r in running) and time.monotonic() < deadline:
            time.sleep(0.01)


def _on_thread(job: Job) -> Outcome:
    try:
        return execute(job)
    finally:
        connections.close_all()  # the thread's own connections (pool threads are reused)


def _native_sync_to_async(kind: str) -> None:
    """Give asgiref's ``sync_to_async`` (Django's async ORM) native threads.

    Patched, its per-context ``ThreadPoolExecutor`` starts greenlets in the coroutine's own
    thread, where the event loop runs: Django then refuses every query of an ``async def``
    task (SynchronousOnlyOperation). These run its calls, in order, on one native thread
    (asgiref makes one executor per task context and shuts it down when the context ends).
    """
    from asgiref import sync

    executor: Any
    if kind == "gevent":  # its own executor of native threads; asyncio wants a real Future
        executor = partial(_gevent_executor, importlib.import_module("gevent.threadpool"))
    else:
        original: Any = importlib.import_module("eventlet.patcher").original
        executor = partial(NativeThreadExecutor, original("threading").Thread,
                           original("queue").SimpleQueue)
    cast(Any, sync).ThreadPoolExecutor = executor


def _gevent_executor(threadpool: Any, max_workers: int = 1) -> concurrent.futures.Executor:
    """gevent's native-thread executor, whose ``submit`` returns a ``concurrent.futures``
    Future (asyncio's ``run_in_executor`` accepts no other)."""

    class Executor(threadpool.ThreadPoolExecutor):  # type: ignore[misc]
        def submit(self, fn: Any, /, *args: Any,
                   **kwargs: Any) -> concurrent.futures.Future[Any]:
            future: concurrent.futures.Future[Any] = concurrent.futures.Future()

            def settle(done: Any) -> None:
                if future.set_running_or_notify_cancel():  # else cancelled meanwhile
                    try:
                        future.set_result(done.result())
                    except BaseException as exc:  # noqa: BLE001 - the caller's await raises it
                        future.set_exception(exc)

            super().submit(fn, *args, **kwargs).add_done_callback(settle)
            return future

    return cast(concurrent.futures.Executor, Executor(max_workers=max_workers))


class NativeThreadExecutor(concurrent.futures.Executor):
    """An executor with one native (unpatched) thread, started on first use."""

    def __init__(self, thread: Any, simple_queue: Any, max_workers: int = 1) -> None:
        self._start, self._queue = thread, simple_queue()
        self._thread: Any = None

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        if self._thread is None:
            self._thread = self._start(target=self._work, name="taskq-sync", daemon=True)
            self._thread.start()
        self._queue.put((future, fn, args, kwargs))
        return future

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            future, fn, args, kwargs = item
            if future.set_running_or_notify_cancel():  # else cancelled meanwhile
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as exc:  # noqa: BLE001 - the caller's await raises it
                    future.set_exception(exc)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        if self._thread is not None:
            self._queue.put(None)  # the thread ends after the calls queued before
