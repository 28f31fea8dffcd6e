"""Retry policy: when a failed run is tried again, and what ``self.retry()`` raises.

A retry is a new delivery of the same task id with ``retries + 1``. The worker sends it when it
settles the run (after storing the RETRY state, before acking the run's message; on the database
broker all three commit together), so a crash in between can duplicate a retry, never lose one.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from .clock import clock_now
from .exceptions import Ignore, MaxRetriesExceededError, Reject, Retry

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
               countdown: float | None = None, max_retries: int | None = None,
               options: Mapping[str, Any] | None = None) -> Retry:
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
                 retry_kwargs=None if kwargs is None else dict(kwargs),
                 retry_options=_checked_options(options or {}))


def _checked_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """``queue``, ``priority`` and ``headers`` for the retry's message, checked now."""
    from .options import priority

    checked = dict(options)
    if "queue" in checked:
        queue = getattr(checked["queue"], "name", checked["queue"])  # a kombu Queue too
        if not isinstance(queue, str) or not queue:
            raise ValueError(f"retry(queue=...) must be a queue name, not {queue!r}.")
        checked["queue"] = queue
    if "priority" in checked:
        checked["priority"] = priority(checked["priority"], "retry(priority=...)")
    if not isinstance(checked.get("headers", {}), Mapping):
        raise ValueError(f"retry(headers=...) must be a dict, not {checked['headers']!r}.")
    return checked


def autoretry(task: Task[Any, Any], run: Callable[[], Any]) -> Any:
    """Call ``run``; on one of the task's ``autoretry_for`` exceptions, retry per its policy."""
    try:
        return run()
    except (Retry, Ignore, Reject):  # control flow, never retried (Celery's autoretry too)
        raise
    except task.options.dont_autoretry_for:
        raise
    except task.options.autoretry_for as exc:
        policy = task.options
        given = dict(policy.retry_kwargs)
        options = {key: given.pop(key) for key in ("queue", "priority", "headers")
                   if key in given}
        retry_args = {"options": options, **given}
        if policy.retry_backoff:
            retry_args["countdown"] = backoff_delay(
                float(policy.retry_backoff), task.request.retries, policy.retry_backoff_max,
                policy.retry_jitter)
        raise make_retry(task, exc=exc, **retry_args) from exc
