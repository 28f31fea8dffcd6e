"""Limits on running tasks: soft/hard time limits (SIGALRM timers) and child recycling.

A pool holds one :class:`Limits` (the worker's defaults) and asks it, per job, which limits
apply. The soft limit always runs in the process that runs the task (a prefork child, or the
solo worker's main thread): ``SoftTimeLimitExceeded`` is raised inside the task, which may catch
it to clean up. The hard limit is the prefork parent's job (it kills the child); in the solo
pool it is a second timer raising :class:`HardTimeLimit`, which task code cannot swallow with
``except Exception``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import traceback
from dataclasses import dataclass
from datetime import datetime
from types import FrameType
from typing import Any

from ..canvas.fields import steps_of
from ..clock import clock_now
from ..exceptions import ConfigurationError, SoftTimeLimitExceeded, TimeLimitExceeded
from ..outcome import Outcome, failure, reply_address
from ..registry import registry
from .coroutines import HardTimeLimit as HardTimeLimit  # defined there, re-exported
from .execution import execute
from .job import Job
from .outcomes import failure_settlement

logger = logging.getLogger(__name__)

#: Once the hard limit fired in-process, it fires again this often until the task has ended,
#: so a task that swallows it (``except BaseException``) cannot run on for ever.
HARD_REPEAT = 1.0


@dataclass(frozen=True, slots=True)
class Limits:
    """What a pool enforces: default time limits (seconds) and when a child is replaced."""

    time_limit: float | None = None
    soft_time_limit: float | None = None
    max_tasks_per_child: int | None = None
    #: Resident memory (KiB, as Celery counts it) above which a child is replaced after a task.
    max_memory_per_child: int | None = None

    def __post_init__(self) -> None:
        check_time_limits(self.time_limit, self.soft_time_limit)
        for name in ("max_tasks_per_child", "max_memory_per_child"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigurationError(f"{name} must be at least 1, not {value!r}.")

    @property
    def timed(self) -> bool:
        """Whether the worker sets default time limits."""
        return self.time_limit is not None or self.soft_time_limit is not None

    @property
    def recycles(self) -> bool:
        """Whether children are replaced after a number of tasks or above a memory size."""
        return self.max_tasks_per_child is not None or self.max_memory_per_child is not None

    def for_job(self, job: Job) -> tuple[float | None, float | None]:
        """``(soft, hard)`` seconds for ``job``: its own limits, else the worker's.

        A soft limit at or above the hard one could never fire first, so it is dropped.
        """
        hard = job.time_limit if job.time_limit is not None else self.time_limit
        soft = job.soft_time_limit if job.soft_time_limit is not None else self.soft_time_limit
        if soft is not None and hard is not None and soft >= hard:
            soft = None
        return soft, hard

    def retire_reason(self, tasks_done: int) -> str | None:
        """Why a child that has run ``tasks_done`` tasks should exit now, or None to go on."""
        if self.max_tasks_per_child is not None and tasks_done >= self.max_tasks_per_child:
            return f"ran {tasks_done} task(s) (max_tasks_per_child={self.max_tasks_per_child})"
        if self.max_memory_per_child is not None:
            resident = resident_memory_kib()
            if resident > self.max_memory_per_child:
                return (f"resident memory {resident} KiB is above "
                        f"max_memory_per_child={self.max_memory_per_child} KiB")
        return None


def check_time_limits(hard: float | None, soft: float | None) -> None:
    """Raise ConfigurationError unless both limits are positive and soft is below hard."""
    for name, value in (("time limit", hard), ("soft time limit", soft)):
        if value is not None and not value > 0:
            raise ConfigurationError(f"The {name} must be a positive number of seconds, "
                                     f"not {value!r}.")
    if hard is not None and soft is not None and soft >= hard:
        raise ConfigurationError(
            f"The soft time limit ({soft:g}s) must be below the hard time limit ({hard:g}s): "
            "the soft limit lets a task clean up before the hard limit stops it. Lower "
            "--soft-time-limit / WORKER_SOFT_TIME_LIMIT or raise --time-limit / "
            "WORKER_TIME_LIMIT.")


class Alarm:
    """Arms SIGALRM for a soft limit and then (in-process) a hard limit; disarms on exit.

    Signals are delivered to the main thread only: elsewhere the limits are not enforced (a
    warning is logged once). The previous SIGALRM handler is put back on exit.
    """

    def __init__(self, soft: float | None, hard: float | None) -> None:
        self.soft = soft if soft is not None and (hard is None or soft < hard) else None
        self.hard = hard
        self._soft_fired = False
        self._active = False
        self._previous: Any = None

    def __enter__(self) -> Alarm:
        first = self.soft if self.soft is not None else self.hard
        if first is None:
            return self
        if threading.current_thread() is not threading.main_thread():
            warn_once("time limits are enforced only when tasks run on the main thread; "
                      "this task runs without them")
            return self
        self._previous = signal.signal(signal.SIGALRM, self._fire)
        self._active = True
        signal.setitimer(signal.ITIMER_REAL, first)
        return self

    def _fire(self, signum: int, frame: FrameType | None) -> None:
        if not self._active:
            return  # a late signal after the task ended
        if self.soft is not None and not self._soft_fired:
            self._soft_fired = True
            if self.hard is not None:
                signal.setitimer(signal.ITIMER_REAL, self.hard - self.soft)
            raise SoftTimeLimitExceeded(f"soft time limit ({self.soft:g}s) exceeded")
        signal.setitimer(signal.ITIMER_REAL, HARD_REPEAT)
        raise HardTimeLimit(self.hard)

    def __exit__(self, *exc_info: object) -> None:
        if self._active:
            self._active = False
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM,
                          self._previous if self._previous is not None else signal.SIG_DFL)


def run_limited(job: Job, soft: float | None, hard: float | None) -> Outcome:
    """``execute(job)`` with a soft limit and, when ``hard`` is given, an in-process hard limit.

    Never raises (but for BaseExceptions other than the hard limit, e.g. a cold stop).
    """
    if soft is None and hard is None:
        return execute(job)  # the common case: no timer to arm
    started = clock_now()
    outcome: Outcome | None = None
    try:
        with _limiter(job, soft, hard):
            outcome = execute(job)
    except HardTimeLimit:
        if outcome is not None:
            return outcome  # the timer went off as the task ended: it finished in time
        logger.error("task stopped name=%s id=%s: hard time limit (%gs) exceeded",
                     job.task_name, job.request.id, hard)
        return hard_limit_outcome(job, hard or 0.0, started, "the task was stopped")
    except SoftTimeLimitExceeded as exc:
        # Fired outside the task's own code (execute() turns it into FAILURE inside it).
        if outcome is not None:
            return outcome
        return failure(job.request.id or "", job.task_name, exc, date_started=started,
                       date_done=clock_now(), traceback=traceback.format_exc(),
                       **_common(job))
    return outcome


def _limiter(job: Job, soft: float | None, hard: float | None) -> Any:
    """SIGALRM timers; none for an ``async def`` task (a signal would land in the loop's
    machinery, not in the task: execute() cancels it instead) but a late hard alarm as a
    backstop for a coroutine that never awaits."""
    from . import coroutines

    if not coroutines.is_async_name(job.task_name):
        return Alarm(soft, hard)
    if hard is not None and threading.current_thread() is threading.main_thread():
        return Alarm(None, hard + coroutines.HARD_REPEAT * 2)
    return contextlib.nullcontext()


def hard_limit_outcome(job: Job, limit: float, started: datetime | None, how: str) -> Outcome:
    """The FAILURE (TimeLimitExceeded) stored for a task stopped at its hard time limit; the
    task's options decide as for any failure (``acks_on_failure_or_timeout``,
    ``store_errors_even_if_ignored``)."""
    exc = TimeLimitExceeded(f"hard time limit ({limit:g}s) exceeded; {how}")
    settlement = failure_settlement(registry.get(job.task_name).options, exc, job.ignore_result,
                                    timeout=True)
    # Put back to run again (acks_on_timeout=False): its errbacks wait for the last run.
    errbacks = () if settlement.get("disposition") == "requeue" else _errbacks(job, exc)
    return failure(job.request.id or "", job.task_name, exc, date_started=started,
                   date_done=clock_now(), follow_ups=errbacks, **{**_common(job), **settlement})


def _errbacks(job: Job, exc: BaseException) -> tuple[Any, ...]:
    """The task's errbacks, as after any failure (Celery calls them on a hard time limit)."""
    if not job.request.errbacks:
        return ()
    from .followups import after_failure

    try:
        return after_failure(job.request, exc, None)
    except Exception:  # noqa: BLE001 - the failure stands; the errbacks are logged
        logger.exception("%s[%s]: its errbacks cannot be sent", job.task_name, job.request.id)
        return ()


def _common(job: Job) -> dict[str, Any]:
    return {"worker": job.request.hostname or "", "retries": job.request.retries,
            "ignore_result": job.ignore_result, "serializer": job.result_serializer,
            "chain": steps_of(job.request.chain), **reply_address(job.request)}


def resident_memory_kib() -> int:
    """This process's resident memory in KiB (``/proc/self/statm``, else its peak RSS)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError, IndexError):
        import resource  # POSIX only, as the prefork pool is

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS


_warned: set[str] = set()


def warn_once(message: str) -> None:
    """Log ``message`` as a warning the first time only (per process)."""
    if message not in _warned:
        _warned.add(message)
        logger.warning(message)
