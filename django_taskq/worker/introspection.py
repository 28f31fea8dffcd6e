"""What remote control and the monitor ask of a worker, and the changes they hand its loop.

A mixin of :class:`~django_taskq.worker.worker.Worker`: reading (pool size, child pids, the
broker's transport) is safe from the monitor thread; changing the pool or the queues is queued
with ``change`` and done by the loop's own thread at its next step (``apply_changes``), where
nothing else touches them.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..events import build
from ..events.dispatcher import EventDispatcher
from ..registry import registry

if TYPE_CHECKING:
    from .options import WorkerOptions

logger = logging.getLogger(__name__)


class Introspection:
    """Monitoring state and hooks of a worker (see the module docstring)."""

    options: WorkerOptions
    pool: Any
    broker: Any
    events: EventDispatcher

    def _init_introspection(self) -> None:
        self.totals: Counter[str] = Counter()  # tasks finished, by name (inspect stats)
        self.started_at: dict[int, float] = {}  # job key → Unix time it went to the pool
        self.monotonic_start = time.monotonic()
        self._changes: deque[Callable[[], object]] = deque()
        self._change_lock = threading.Lock()
        self._lamport = itertools.count(1)
        # What queued changes will make the pool size and queues ("slots", "queues"): remote
        # control checks a command against it, so two commands read in one poll (both before
        # the loop applies the first) cannot shrink the pool to nothing or drop every queue.
        self.planned: dict[str, Any] = {}

    def events_clock(self) -> int:
        """A logical clock value, as Celery's stats report it."""
        return next(self._lamport)

    def pool_size(self) -> int:
        """Execution slots the pool has now."""
        return int(getattr(self.pool, "slots", 1))

    def pool_pids(self) -> list[int]:
        """Process ids of prefork children ([] for solo and threads)."""
        children = getattr(self.pool, "_children", [])
        return [child.process.pid for child in children if child.process.pid]

    def broker_transport(self) -> str:
        """The broker's engine, as ``stats`` reports it."""
        return type(self.broker).__name__.removesuffix("Broker").lower() or "broker"

    def change(self, action: Callable[[], object]) -> None:
        """Have the loop's thread run ``action`` at its next step."""
        with self._change_lock:
            self._changes.append(action)
        self.broker.interrupt()  # an idle worker waiting in reserve comes round at once

    def apply_changes(self) -> None:
        """Run the changes queued by remote control (the loop's thread only)."""
        while self._changes:
            with self._change_lock:
                action = self._changes.popleft()
            try:
                action()
            except Exception:  # noqa: BLE001 - a change that fails is logged, the loop goes on
                logger.exception("remote control: a change failed")

    def plan(self, what: str, target: Any, apply: Callable[[Any], object]) -> None:
        """Queue ``apply(target)`` and count on ``target`` for ``what`` until it has run."""
        with self._change_lock:
            self.planned[what] = target

        def run() -> None:
            try:
                apply(target)
            finally:  # applied (or failed): the worker's own state tells from now on
                with self._change_lock:  # unless a later plan came meanwhile
                    if self.planned.get(what) == target:
                        del self.planned[what]
        self.change(run)

    def planned_slots(self) -> int:
        """The pool size once the queued changes have run."""
        return int(self.planned.get("slots", self.pool_size()))

    def planned_queues(self) -> tuple[str, ...]:
        """The queues consumed once the queued changes have run."""
        return tuple(self.planned.get("queues", self.options.queues))

    def resize_pool(self, slots: int) -> None:
        """Grow or shrink the pool to ``slots`` (prefork forks or stops children)."""
        self.pool.resize(slots)
        self.options = dataclasses.replace(self.options, concurrency=slots)
        logger.info("pool resized to %d slot(s)", slots)

    def set_queues(self, queues: tuple[str, ...]) -> None:
        """Consume from ``queues`` from the next claim on."""
        self.options = dataclasses.replace(self.options, queues=tuple(queues))
        logger.info("consuming from %s", ", ".join(queues))

    # -- events, from the loop ---------------------------------------------------------------

    def sends_events(self, task_name: str) -> bool:
        """Whether runs of ``task_name`` send task events: task events on, and the task's
        ``send_events`` option (Celery's; True unless the task says False)."""
        if not self.events.task_events:
            return False
        task = registry.get(task_name) if task_name in registry else None
        return task is None or task.options.send_events

    def report_finished(self, outcome: Any, **extra: Any) -> None:
        """The event of a settled run (task-succeeded, -failed, -retried, -rejected, -revoked)."""
        if not self.sends_events(outcome.task_name):
            return
        found = build.finished(outcome)
        if found is not None:
            kind, fields = found
            self.events.send(kind, **fields, **extra)
