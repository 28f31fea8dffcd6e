"""Rate limits at dispatch: take a token from the task's global bucket (and its per-key one).

Buckets live in the control store (Redis or the database), so the limit holds across every
worker. A task without a token goes back to its queue until one is due (``Broker.defer``): it
is neither dropped, nor held in worker memory, nor retried in a busy loop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from ..registry import registry
from .job import Job

logger = logging.getLogger(__name__)

#: Seconds a rate-limited task waits in its queue while the control store cannot be reached.
STORE_DOWN_WAIT = 1.0


def buckets(job: Job) -> list[tuple[str, Any]]:
    """(bucket name, Rate) pairs that ``job`` needs a token from: per key first, then global."""
    options = registry.get(job.task_name).options
    if options.rate_limit is None and options.key_rate_limit is None:
        return []
    needed = []
    if options.key_rate_limit is not None and options.rate_limit_key is not None:
        request = job.request
        try:
            key = options.rate_limit_key(*request.args, **request.kwargs)
        except Exception:  # noqa: BLE001 - a broken key function must not stop the worker
            logger.exception("rate_limit_key of %s failed; using the shared key", job.task_name)
            key = None
        needed.append((f"{job.task_name}:key:{key}", options.key_rate_limit))
    if options.rate_limit is not None:
        needed.append((job.task_name, options.rate_limit))
    return needed


class RateGate:
    """Decides, per job, whether it may run now, and otherwise how long it waits.

    Tasks of one bucket that find it empty are spread over the coming token times (one per
    ``rate.interval``) instead of all coming back at the same moment to find it empty again; a
    task that comes back at its time asks the store again.
    """

    def __init__(self, store: Callable[[], Any], clock: Callable[[], float] = time.monotonic,
                 ) -> None:
        self._store = store
        self._clock = clock
        self._next_slot: dict[str, float] = {}  # bucket -> first token time not yet promised
        self._promised: dict[str, float] = {}  # task id -> the time it was sent back for

    def wait_for(self, job: Job) -> float:
        """0.0 when ``job`` may run now (its tokens are taken), else seconds until it may."""
        needed = buckets(job)
        if not needed:
            return 0.0
        now = self._clock()
        returning = self._promised.pop(job.request.id or "", None) is not None
        for name, rate in needed:
            slot = self._next_slot.get(name, 0.0)
            if slot > now and not returning:
                return self._promise(job, name, slot, rate)
            try:
                wait = float(self._store().take(name, rate))
            except Exception as exc:  # noqa: BLE001 - the limit cannot be checked: wait, never run
                logger.warning("cannot check rate limit %s (%s); the task waits %.1fs",
                               name, exc, STORE_DOWN_WAIT)
                return self._promise(job, name, now + STORE_DOWN_WAIT, None)
            if wait > 0 and returning:
                return self._promise(job, name, now + wait, None)  # keeps its place in line
            if wait > 0:
                return self._promise(job, name, max(now + wait, slot), rate)
        return 0.0

    def waiting(self, job: Job) -> bool:
        """Whether ``job``'s task is known to have no token now (tasks of it were sent back
        for later ones): ``--autoscale`` does not grow the pool for it."""
        name = job.task_name
        return (name in registry and registry.get(name).options.rate_limit is not None
                and self._next_slot.get(name, 0.0) > self._clock())

    def _promise(self, job: Job, name: str, at: float, rate: Any) -> float:
        now = self._clock()
        if rate is not None:
            self._next_slot[name] = max(self._next_slot.get(name, 0.0), at + rate.interval)
        if len(self._promised) > 10_000:  # tasks another worker took: forget old promises
            self._promised = {k: v for k, v in self._promised.items() if v > now - 60}
        self._promised[job.request.id or ""] = at
        return at - now
