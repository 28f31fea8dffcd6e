"""Autoscale: grow the pool when work waits, shrink it after a quiet spell (``--autoscale``).

Celery's rules (``celery.worker.autoscale``): the pool holds between ``min`` and ``max`` slots;
it grows at once to as many slots as there are tasks held (running plus prefetched), up to
``max``; it shrinks back towards ``min`` only once ``keepalive`` seconds (Celery's
``AUTOSCALE_KEEPALIVE``, 30 s; here ``TASKQ['WORKER_AUTOSCALE_KEEPALIVE']``) have passed without
a new task arriving or a scale-up. The loop's thread decides once per step, from counts the
worker already has (no broker query), and resizes the pool itself: a shrink stops idle slots
and lets busy ones finish their task first, so nothing is lost or run twice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..exceptions import ConfigurationError
from .pools import MAX_THREADS

if TYPE_CHECKING:
    from .worker import Worker

logger = logging.getLogger(__name__)

#: Pools that cannot grow or shrink.
FIXED_POOLS = ("solo",)
#: Pools that may have no slot at all while idle (the others keep one: MIN ≥ 1).
EMPTYABLE_POOLS = ("prefork", "threads")


def target(current: int, held: int, bounds: tuple[int, int], quiet_for: float,
           keepalive: float) -> int:
    """The pool size to have now (Celery's ``_maybe_scale``).

    Args:
        current: slots the pool has.
        held: tasks the worker holds (running plus prefetched).
        bounds: ``(max, min)``.
        quiet_for: seconds since the last task arrived or the pool last grew.
        keepalive: seconds of quiet before the pool shrinks.
    """
    high, low = bounds
    if current > high or current < low:  # the range moved (remote autoscale): follow at once
        return min(max(current, low), high)
    wanted = min(max(held, low), high)
    if wanted > current or (wanted < current and quiet_for >= keepalive):
        return wanted
    return current


class Autoscaler:
    """Keeps a worker's pool between ``min`` and ``max`` slots, following the load."""

    def __init__(self, worker: Worker, bounds: tuple[int, int], *, keepalive: float,
                 clock: Callable[[], float], limit: int | None = None, floor: int = 0
                 ) -> None:
        self.worker = worker
        self.max, self.min = bounds
        self.keepalive = keepalive
        self.limit = limit  # the most slots the pool can have (threads: MAX_THREADS)
        self.floor = floor  # the fewest
        self._clock = clock
        self._last_active = clock()
        self._pinned = 0.0  # until then the size pool_grow/pool_shrink set is kept
        self._newest = 0  # the key of the newest job seen: a larger one means a new task came
        self._refused: set[int] = set()  # sizes the pool refused (logged once, not retried)
        self._lock = threading.Lock()  # bounds change from the monitor thread (remote control)

    @classmethod
    def for_worker(cls, worker: Worker) -> Autoscaler | None:
        """The worker's autoscaler, or None without ``--autoscale``.

        Raises:
            ConfigurationError: the pool cannot grow or shrink, or ``max`` is above its limit.
        """
        options, pool = worker.options, worker.options.pool
        if options.autoscale is None:
            return None
        high, low = options.autoscale
        if pool in FIXED_POOLS or not callable(getattr(worker.pool, "resize", None)):
            why = " (it has one slot)" if pool == "solo" else ""
            raise ConfigurationError(
                f"--autoscale needs a pool that can grow and shrink: the {pool} pool "
                f"cannot{why}. Run the worker with --pool prefork or --pool threads, "
                "or drop --autoscale (and TASKQ['WORKER_AUTOSCALE']).")
        limit = MAX_THREADS if pool == "threads" else None
        if limit is not None and high > limit:
            raise ConfigurationError(f"--autoscale {high},{low}: the threads pool grows to "
                                     f"{limit} threads at most; lower the maximum.")
        floor = 0 if pool in EMPTYABLE_POOLS else 1
        if low < floor:
            raise ConfigurationError(f"--autoscale {high},{low}: the {pool} pool keeps at least "
                                     f"one slot; give a minimum of 1 (--autoscale {high},1).")
        return cls(worker, options.autoscale, keepalive=options.autoscale_keepalive,
                   clock=worker.clock.monotonic, limit=limit, floor=floor)

    def capacity(self) -> int:
        """Messages the worker may hold: the prefetch of the current size, and one more while
        the pool can still grow (so waiting work shows even at one message per slot, or at 0
        slots)."""
        slots = self.worker.pool_size()
        held = max(slots, 1) * self.worker.options.prefetch_multiplier
        return max(held, slots + 1) if slots < self.max else held

    def held(self) -> tuple[int, int]:
        """Tasks held (running plus prefetched), and the key of the newest prefetched job.

        As Celery, a task waiting for a rate-limit token counts neither as held nor as new;
        all such tasks count as one, for the slot that sends them back to their queue.
        """
        worker = self.worker
        with worker._held_lock:
            ready = [job.key for _, job in worker.prefetched
                     if not worker.rate_gate.waiting(job)]
            waiting = len(worker.prefetched) > len(ready)
            return len(worker.running) + len(ready) + waiting, max(ready, default=0)

    def step(self) -> None:
        """Resize the pool if the load says so (the loop's thread, after each claim)."""
        if self.worker.stopping:
            return
        held, newest = self.held()
        now = self._clock()
        with self._lock:
            if newest > self._newest:  # a task arrived since the last step
                self._newest, self._last_active = newest, now
            bounds, quiet_for = (self.max, self.min), now - self._last_active
            if now < self._pinned:
                return
        current = self.worker.pool_size()
        size = target(current, held, bounds, quiet_for, self.keepalive)
        if size == current or size in self._refused:
            return
        if size > current:
            with self._lock:
                self._last_active = now
        logger.info("autoscale: %s the pool from %d to %d slot(s) (%d task(s) held)",
                    "growing" if size > current else "shrinking", current, size, held)
        try:
            self.worker.resize_pool(size)
        except ValueError:  # a pool's own limit: keep the size, keep running
            self._refused.add(size)
            logger.warning("autoscale: cannot resize the %s pool to %d", self.worker.options.pool,
                           size, exc_info=True)

    def update(self, high: Any = None, low: Any = None) -> tuple[int, int]:
        """Set new bounds (remote ``autoscale``; None keeps one); the loop follows at its next
        step. Returns ``(max, min)``.

        Raises:
            ValueError: a bound is not a whole number, max is below 1 or below min, or above
                the pool's limit.
        """
        with self._lock:
            high = self.max if high is None else _count("max", high, 1)
            low = self.min if low is None else _count("min", low, self.floor)
            if high < low:
                raise ValueError(f"max ({high}) must be at least min ({low}): "
                                 "autoscale(max, min) takes the maximum first")
            if self.limit is not None and high > self.limit:
                raise ValueError(f"the threads pool grows to {self.limit} threads at most")
            self.max, self.min, self._pinned = high, low, 0.0  # a new range applies at once
        logger.info("autoscale: now max=%d min=%d", high, low)
        return high, low

    def widen(self, slots: int) -> None:
        """Make room for ``slots`` (remote ``pool_grow``/``pool_shrink``): raise max or lower
        min to it, as Celery 4's ``force_scale_up``/``down`` did; the new size is kept for
        ``keepalive`` seconds (even with more tasks held) before the autoscaler reconsiders it."""
        with self._lock:
            self.max, self.min = max(self.max, slots), min(self.min, slots)
            self._last_active = self._clock()
            self._pinned = self._last_active + self.keepalive

    def info(self) -> dict[str, int]:
        """Celery's ``stats()['autoscaler']``: max, min, current size and tasks held."""
        return {"max": self.max, "min": self.min, "current": self.worker.pool_size(),
                "qty": self.held()[0]}


def _count(name: str, value: Any, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name} must be a whole number of at least {least}, not {value!r}")
    return int(value)
