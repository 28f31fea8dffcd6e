"""Rate limits at dispatch: take a token from the task's global bucket (and its per-key one).

Buckets live in the control store (Redis or the database), so the limit holds across every
worker. A task without a token goes back to its queue until one is due (``Broker.defer``): it
is neither dropped, nor held in worker memory, nor retried in a busy loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..registry import registry
from .job import Job

logger = logging.getLogger(__name__)


def buckets(job: Job) -> list[tuple[str, Any]]:
    """(bucket name, Rate) pairs that ``job`` needs a token from: per key first, then global."""
    task = registry.get(job.task_name)
    needed = []
    if task.key_rate_limit is not None and task.rate_limit_key is not None:
        request = job.request
        try:
            key = task.rate_limit_key(*request.args, **request.kwargs)
        except Exception:  # noqa: BLE001 - a broken key function must not stop the worker
            logger.exception("rate_limit_key of %s failed; using the shared key", job.task_name)
            key = None
        needed.append((f"{job.task_name}:key:{key}", task.key_rate_limit))
    if task.rate_limit is not None:
        needed.append((job.task_name, task.rate_limit))
    return needed


def wait_for(job: Job, store: Callable[[], Any]) -> float:
    """0.0 when ``job`` may run now (its tokens are taken), else seconds until it may."""
    for name, rate in buckets(job):
        wait = float(store().take(name, rate))
        if wait > 0:
            return wait
    return 0.0
