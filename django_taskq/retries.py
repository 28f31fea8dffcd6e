"""Retry policy: when a failed run is tried again, and what ``self.retry()`` raises.

A retry is a new delivery of the same task id with ``retries + 1``. The worker sends it when it
settles the run (after storing the RETRY state, before acking the run's message; on the database
broker all three commit together), so a crash in between can duplicate a retry, never lose one.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from .clock import clock_now
from .exceptions import MaxRetriesExceededError, Retry

if TYPE_CHECKING:
    from .task import Task


def backoff_delay(factor: float, retries: int, maximum: float | None,
                  jitter: bool) -> float:
    """Exponential backoff as Celery computes it: ``factor * 2**retries`` capped at ``maximum``,
    then (with ``jitter``) a random whole number of seconds from 0 to that."""
    countdown = factor * (2 ** retries)
    if maximum is not None:
        countdown = min(maximum, countdown)
    if jitter:
        countdown = random.randrange(int(countdown) + 1)  # noqa: S311 - not cryptographic
    return max(0.0, float(countdown))


def make_retry(task: Task[Any, Any], *, args: Any = None, kwargs: Any = None,
               exc: BaseException | None = None, eta: datetime | None = None,
               countdown: float | None = None, max_retries: int | None = None) -> Retry:
    """The Retry for the running request of ``task``, or raise when retries are exhausted.

    Raises:
        exc (as given) or MaxRetriesExceededError: ``max_retries`` retries were already made.
    """
    request = task.request
    if request.called_directly:
        raise exc or Retry("Task can be retried only when it runs in a worker or eagerly.")
    limit = task.options.max_retries if max_retries is None else max_retries
    if limit is not None and request.retries + 1 > limit:
        if exc is not None:
            raise exc
        raise MaxRetriesExceededError(
            f"Can't retry {task.name}[{request.id}] args:{request.args} "
            f"kwargs:{request.kwargs}: it was retried {request.retries} time(s) "
            f"(max_retries={limit}).")
    now = clock_now()
    if eta is None:
        delay = task.options.default_retry_delay if countdown is None else float(countdown)
        eta = now + timedelta(seconds=delay)
    elif timezone.is_naive(eta):
        eta = timezone.make_aware(eta)
    return Retry(exc=exc, when=max(0.0, (eta - now).total_seconds()), eta=eta,
                 retry_args=None if args is None else tuple(args),
                 retry_kwargs=None if kwargs is None else dict(kwargs))


def autoretry(task: Task[Any, Any], run: Callable[[], Any]) -> Any:
    """Call ``run``; on one of the task's ``autoretry_for`` exceptions, retry per its policy."""
    try:
        return run()
    except Retry:
        raise
    except task.options.dont_autoretry_for:
        raise
    except task.options.autoretry_for as exc:
        policy = task.options
        options = dict(policy.retry_kwargs)
        if policy.retry_backoff:
            options["countdown"] = backoff_delay(
                float(policy.retry_backoff), task.request.retries, policy.retry_backoff_max,
                policy.retry_jitter)
        raise make_retry(task, exc=exc, **options) from exc
