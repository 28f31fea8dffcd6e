"""The prefork pool: jobs run in forked child processes, one pipe each."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import time
from dataclasses import dataclass
from datetime import datetime
from multiprocessing.connection import Connection, wait
from typing import Any

from django.db import connections

from .. import signals
from ..clock import clock_now
from .finished import LOST, TERMINATED, Finished
from .job import Job
from .timelimits import Limits, hard_limit_outcome, run_limited

logger = logging.getLogger(__name__)


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
