"""Run one job and describe what happened as an Outcome. Never raises (but BaseException).

This is the one execution path: pool workers and eager runs (``task.apply()``,
TASK_ALWAYS_EAGER) both come here, so a task runs the same way in both — under its request
context, inside the middleware, with Celery's signals and task handlers in Celery's order:
``task_prerun`` → ``before_start`` → the task → ``on_success``/``on_failure``/``on_retry`` and
the matching signal → ``after_return`` → ``task_postrun``.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import os
import time
from collections.abc import Coroutine, Generator
from typing import Any, cast

from django.db import connections

from .. import middleware, serializers, signals, states
from ..clock import clock_now
from ..context import activate
from ..einfo import ExceptionInfo
from ..exceptions import Ignore, Reject, Replaced, Retry
from ..outcome import Outcome, reply_address
from ..registry import registry
from ..task import Task
from . import coroutines, followups, outcomes
from .job import Job

logger = logging.getLogger(__name__)

#: After this many idle seconds a task first checks that its connections still work (the
#: database may have restarted meanwhile); busy workers skip the check's round trip.
IDLE_CHECK_AFTER = 1.0
_last_task_end = 0.0


def close_stale_connections(check_liveness: bool = False, keep: tuple[str, ...] = ()) -> None:
    """Close broken or expired database connections, as Django does around each request.

    With ``check_liveness``, also close open connections that no longer answer, so the first task
    after a database restart reconnects instead of failing. Aliases in ``keep`` are the worker's
    own (solo pool: the broker's connection is the task's): they are closed only when broken,
    never for age, since the worker would reopen them at once. Connections inside an atomic
    block are left alone (a test's transaction, or a caller's).
    """
    for connection in connections.all(initialized_only=True):
        if connection.in_atomic_block:
            continue
        if connection.alias in keep:
            if connection.errors_occurred and connection.connection is not None \
                    and not connection.is_usable():
                connection.close()
        else:
            connection.close_if_unusable_or_obsolete()
        if check_liveness and connection.connection is not None and not connection.is_usable():
            connection.close()


def execute(job: Job, task: Any = None, *, eager: bool = False,
            propagate: bool = False) -> Outcome:
    """Run ``job``'s task under its request context and return what happened.

    A worker run also refreshes database connections around the task; an eager run (in the
    caller's thread, perhaps inside its transaction) leaves them alone and keeps the live
    exception on the Outcome. With ``propagate`` (eager runs under TASK_EAGER_PROPAGATES) an
    exception the task raises, a ``Retry`` included, is raised from here as Celery's tracer
    raises it: after ``task_postrun``, without the failure handlers.
    """
    global _last_task_end
    task = task or registry.get(job.task_name)
    if not eager and time.monotonic() - _last_task_end > IDLE_CHECK_AFTER:
        # A database restart while idle must not fail this task. Back to back, the previous
        # task's check (in ``finally`` below) ran a moment ago.
        close_stale_connections(check_liveness=True, keep=job.keep_connections)
    try:
        return drive(steps(job, task, eager=eager, propagate=propagate), None if eager else job)
    finally:
        if not eager:
            close_stale_connections(keep=job.keep_connections)
            _last_task_end = time.monotonic()


#: ``execute``'s work as a generator: it yields an ``async def`` task's coroutine for its
#: driver to run and is sent back its value (or thrown its exception); it returns the Outcome.
Steps = Generator[Coroutine[Any, Any, Any], Any, Outcome]


def steps(job: Job, task: Any = None, *, eager: bool = False,
          propagate: bool = False) -> Steps:
    """``execute`` without the connection care, as steps: :func:`drive` runs them here; the
    asyncio pool runs the coroutine on its loop and the rest on threads."""
    task = task or registry.get(job.task_name)
    with activate(job.request):
        return (yield from _traced(job, task, eager, propagate))


def drive(work: Steps, job: Job | None = None) -> Outcome:
    """Run ``work`` to its Outcome here, each coroutine to completion on this thread, under
    ``job``'s time limits (by cancellation, on any pool; none for an eager run)."""
    soft, hard = coroutines.job_limits(job) if job is not None else (None, None)
    started = clock_now()
    with coroutines.limited(soft, hard):  # also for a coroutine a middleware's run() awaits
        try:
            return _drive(work)
        except coroutines.HardTimeLimit as exc:
            if job is None or not getattr(exc, "cancelled", False):
                raise  # the solo pool's alarm in sync code: run_limited's to report
            from .timelimits import hard_limit_outcome

            logger.error("task cancelled name=%s id=%s: hard time limit (%gs) exceeded",
                         job.task_name, job.request.id, hard)
            return hard_limit_outcome(job, hard or 0.0, started, "the task was cancelled")


def _drive(work: Steps) -> Outcome:
    ok, answer = True, cast(Any, None)
    while True:
        try:
            coro = work.send(answer) if ok else work.throw(answer)
        except StopIteration as stop:
            return cast(Outcome, stop.value)
        try:
            ok, answer = True, coroutines.run(coro)
        except BaseException as exc:  # noqa: BLE001 - thrown into the task's steps
            ok, answer = False, exc


def _traced(job: Job, task: Any, eager: bool, propagate: bool = False) -> Steps:
    request = job.request
    started = clock_now()
    signals.send(signals.task_prerun, task, task_id=request.id, task=task,
                 args=request.args, kwargs=request.kwargs)
    if job.track_started and not eager and not job.ignore_result:
        _record_started(job, started)  # after task_prerun, and only for a stored result (Celery)
    run = outcomes.Run(job, task, started, eager)
    try:
        value = _call(job, task)
        if inspect.iscoroutine(value):  # an async def task (no middleware around it)
            value = yield value
    except BaseException as exc:  # noqa: BLE001 - sorted by outcomes.failed (re-raises the rest)
        # Celery's tracer settles Reject and Ignore itself: only failures and retries propagate.
        if propagate and isinstance(exc, Exception) and not isinstance(exc, (Reject, Ignore)):
            state = states.RETRY if isinstance(exc, Retry) else states.FAILURE
            signals.send(signals.task_postrun, task, task_id=request.id, task=task,
                         args=request.args, kwargs=request.kwargs, retval=exc, state=state)
            raise
        run.failed(exc)
    else:
        run.succeeded(value)
    _follow_up(run)
    _report(run)
    signals.send(signals.task_postrun, task, task_id=request.id, task=task,
                 args=request.args, kwargs=request.kwargs, retval=run.retval,
                 state=run.outcome.state)
    return run.outcome


def _follow_up(run: outcomes.Run) -> None:
    """Callbacks and the chain's next step after a success, errbacks after a failure (built
    here, sent when the run is settled). A next step that cannot be built fails the task, as
    Celery's tracer fails it: nobody waits for a chain that stopped."""
    request, state = run.job.request, run.outcome.state
    if isinstance(run.error, Replaced):  # self.replace(sig): the replacement goes out instead
        run.outcome = dataclasses.replace(run.outcome, follow_ups=tuple(run.error.envelopes))
        return
    if state == states.SUCCESS and (request.callbacks or request.chain):
        try:
            sends = followups.after_success(request, run.retval)
        except Exception as exc:  # noqa: BLE001 - bad input fails one task, not the worker
            logger.error("%s[%s]: its callbacks or next chain step cannot be sent: %s",
                         request.task, request.id, exc)
            run.failed(exc)
            state = run.outcome.state
        else:
            run.outcome = dataclasses.replace(run.outcome, follow_ups=sends)
            return
    if state == states.FAILURE and request.errbacks and not run.rejected \
            and run.error is not None:
        try:
            sends = followups.after_failure(request, run.error, run.einfo and run.einfo.tb)
        except Exception:  # noqa: BLE001 - the failure stands; the errbacks are logged
            logger.exception("%s[%s]: its errbacks cannot be sent", request.task, request.id)
            return
        run.outcome = dataclasses.replace(run.outcome, follow_ups=sends)


def _call(job: Job, task: Any) -> Any:
    """``before_start``, then the task inside the middleware (its own ``__call__`` when it
    overrides it, as Celery honours)."""
    request = job.request
    if _overrides(task, "before_start"):
        task.before_start(request.id, request.args, request.kwargs)
    function = task if _overrides(task, "__call__") else task.run
    if not any(hasattr(m, "execute") for m in middleware.installed()):
        return function(*request.args, **request.kwargs)  # a coroutine is awaited by steps
    return middleware.run_through(task, request,
                                  lambda: _awaited(function(*request.args, **request.kwargs)))


def _awaited(value: Any) -> Any:
    """A coroutine run to its value here: middleware sees the task's result or failure."""
    return coroutines.run(value) if inspect.iscoroutine(value) else value


def _overrides(task: Any, name: str) -> bool:
    cls: type = type(task)  # type[Any] is not Hashable to mypy
    return _class_overrides(cls, name)


@functools.lru_cache(maxsize=4096)
def _class_overrides(cls: type, name: str) -> bool:
    """Whether a task class defines its own ``name`` (handlers the base leaves empty are not
    called at all: the common task pays nothing for them)."""
    return getattr(cls, name, None) is not getattr(Task, name)


def _report(run: outcomes.Run) -> None:
    """Celery's order after a run: the task's handler for the result, the matching signal,
    then ``after_return``. A handler that raises is logged and reported with
    ``task_internal_error``; it does not change the outcome."""
    task, request, state = run.task, run.job.request, run.outcome.state
    args, kwargs = request.args, request.kwargs
    if run.rejected:  # Reject(requeue=False): the signal only, as Celery sends it
        signals.send(signals.task_failure, task, task_id=request.id, exception=run.error,
                     args=args, kwargs=kwargs, traceback=run.einfo and run.einfo.tb,
                     einfo=run.einfo)
        return
    if state == states.SUCCESS:
        _handler(run, "on_success", run.retval, request.id, args, kwargs)
        signals.send(signals.task_success, task, result=run.retval)
    elif state == states.FAILURE:
        _handler(run, "on_failure", run.error, request.id, args, kwargs, run.einfo)
        signals.send(signals.task_failure, task, task_id=request.id, exception=run.error,
                     args=args, kwargs=kwargs, traceback=run.einfo and run.einfo.tb,
                     einfo=run.einfo)
    elif state == states.RETRY:
        _handler(run, "on_retry", run.error, request.id, args, kwargs, run.einfo)
        signals.send(signals.task_retry, task, request=request, reason=run.retval,
                     einfo=run.einfo)
    if state not in outcomes.IGNORE_STATES:
        _handler(run, "after_return", state, run.retval, request.id, args, kwargs, run.einfo)


def _handler(run: outcomes.Run, name: str, *arguments: Any) -> None:
    task = run.task
    if not _overrides(task, name):
        return
    try:
        getattr(task, name)(*arguments)
    except Exception as exc:  # noqa: BLE001 - a broken handler must not break the worker
        logger.exception("%s handler of %s failed", name, task.name)
        request = run.job.request
        signals.send(signals.task_internal_error, task, task_id=request.id, args=request.args,
                     kwargs=request.kwargs, request=request, exception=exc,
                     traceback=exc.__traceback__, einfo=ExceptionInfo(exc))


def _record_started(job: Job, started: Any) -> None:
    """STARTED, with the pid and host, as Celery records it (``track_started``)."""
    from ..results import get_backend

    meta = {"pid": os.getpid(), "hostname": job.request.hostname}
    payload, content_type, encoding = serializers.dumps(meta, job.result_serializer)
    try:
        get_backend().store(Outcome(
            task_id=job.request.id or "", task_name=job.task_name, state=states.STARTED,
            payload=payload, content_type=content_type, content_encoding=encoding,
            date_started=started, worker=job.request.hostname or "",
            retries=job.request.retries, **reply_address(job.request)))
    except Exception:  # noqa: BLE001 - progress reporting must not fail the task
        logger.warning("could not record STARTED for id=%s", job.request.id, exc_info=True)
