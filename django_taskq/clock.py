"""The clock a worker runs on: wall time and monotonic time, replaceable so tests never sleep.

A worker takes a :class:`Clock` (the system's by default) and makes it current while it works;
code that stamps times on a run (started, done, a retry's eta) asks :func:`clock_now`, so a test
that drives a worker on a fake clock moves retries and ETAs by advancing it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime

from django.utils import timezone


@dataclass(frozen=True, slots=True)
class Clock:
    """``now()``: an aware datetime; ``monotonic()``: seconds for measuring intervals."""

    now: Callable[[], datetime] = field(default=timezone.now)
    monotonic: Callable[[], float] = field(default=time.monotonic)


SYSTEM = Clock()
_current: ContextVar[Clock] = ContextVar("django_taskq_clock", default=SYSTEM)


def clock_now() -> datetime:
    """The current clock's time (the system's unless a worker runs on another clock)."""
    return _current.get().now()


def current_clock() -> Clock:
    """The clock in use in this context."""
    return _current.get()


@contextlib.contextmanager
def using(clock: Clock) -> Iterator[Clock]:
    """Make ``clock`` current for the ``with`` block."""
    token = _current.set(clock)
    try:
        yield clock
    finally:
        _current.reset(token)
