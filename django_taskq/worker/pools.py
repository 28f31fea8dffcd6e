"""Execution pools: solo (in the worker's thread), threads, and prefork (child processes).

Every pool has the same small surface: ``start``, ``free_slots``, ``submit(job)``,
``collect(timeout) -> [(key, outcome or LOST)]``, ``stop()`` (wait for running jobs) and
``terminate()`` (kill them). LOST means the process running the job died.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import signal
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from django.db import connections

from ..outcome import Outcome
from .execution import execute
from .job import Job

LOST = None  # collect() yields (key, LOST) for a job whose process died

Finished = tuple[int, "Outcome | None"]


class SoloPool:
    """Runs each job at once in the calling thread: one slot, no overhead."""

    slots = 1

    def __init__(self) -> None:
        self._done: list[Finished] = []

    def start(self) -> None:
        """Nothing to start."""

    def free_slots(self) -> int:
        return 1

    def submit(self, job: Job) -> None:
        self._done.append((job.key, execute(job)))

    def collect(self, timeout: float = 0.0) -> list[Finished]:
        done, self._done = self._done, []
        return done

    def stop(self) -> None:
        """Nothing runs after submit returns."""

    def terminate(self) -> None:
        """Nothing to kill."""


class ThreadPool:
    """Runs jobs on ``slots`` threads of this process (good for I/O-bound tasks)."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._running: dict[concurrent.futures.Future[Outcome], int] = {}

    def start(self) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(
            self.slots, thread_name_prefix="taskq-worker")

    def free_slots(self) -> int:
        return self.slots - len(self._running)

    def submit(self, job: Job) -> None:
        assert self._executor is not None, "start() the pool first"
        self._running[self._executor.submit(_execute_in_thread, job)] = job.key

    def collect(self, timeout: float = 0.0) -> list[Finished]:
        if not self._running:
            return []
        done, _ = concurrent.futures.wait(list(self._running), timeout=timeout,
                                          return_when=concurrent.futures.FIRST_COMPLETED)
        return [(self._running.pop(future), future.result()) for future in done]

    def stop(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def terminate(self) -> None:
        """Threads cannot be killed: stop handing them work and let the process exit."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


def _execute_in_thread(job: Job) -> Outcome:
    try:
        return execute(job)
    finally:
        connections.close_all()  # this thread's connections; threads are reused, so reopen


@dataclass(slots=True)
class _Child:
    process: Any
    conn: Connection
    job: int | None = None


class PreforkPool:
    """Runs jobs in ``slots`` forked child processes; a child that dies is replaced."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._children: list[_Child] = []
        self._context = multiprocessing.get_context("fork")

    def start(self) -> None:
        for _ in range(self.slots):
            self._children.append(self._spawn())

    def _spawn(self) -> _Child:
        connections.close_all()  # children must open their own database connections
        parent_end, child_end = self._context.Pipe()
        process = self._context.Process(target=_child_main, args=(child_end, parent_end),
                                        name="taskq-child", daemon=True)
        process.start()
        child_end.close()
        return _Child(process, parent_end)

    def free_slots(self) -> int:
        return sum(1 for child in self._children if child.job is None)

    def submit(self, job: Job) -> None:
        child = next(c for c in self._children if c.job is None)
        child.job = job.key
        child.conn.send(job)

    def collect(self, timeout: float = 0.0) -> list[Finished]:
        busy = [c for c in self._children if c.job is not None]
        if not busy:
            return []
        ready = set(wait([c.conn for c in busy] + [c.process.sentinel for c in busy], timeout))
        finished: list[Finished] = []
        for child in busy:
            if child.conn in ready or child.process.sentinel in ready:
                finished.append(self._receive(child))
        return finished

    def _receive(self, child: _Child) -> Finished:
        key = child.job
        assert key is not None
        try:
            if child.conn.poll():
                outcome: Outcome = child.conn.recv()
                child.job = None
                return key, outcome
        except (EOFError, OSError):
            pass
        self._replace(child)
        return key, LOST

    def _replace(self, child: _Child) -> None:
        child.process.join(timeout=1)
        child.conn.close()
        self._children[self._children.index(child)] = self._spawn()

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


def _child_main(conn: Connection, parent_end: Connection) -> None:
    parent_end.close()
    # The parent decides when children stop (a process-group SIGTERM, as systemd sends, must not
    # cut tasks short); terminate() uses SIGKILL.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        try:
            job = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if job is None:
            return
        conn.send(execute(job))


def make_pool(kind: str, slots: int) -> SoloPool | ThreadPool | PreforkPool:
    """The pool called ``kind`` with ``slots`` execution slots."""
    if kind == "solo":
        return SoloPool()
    if kind == "threads":
        return ThreadPool(slots)
    if kind == "prefork":
        return PreforkPool(slots)
    raise ValueError(f"unknown pool {kind!r}; use prefork, threads or solo")
