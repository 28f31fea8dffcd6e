"""Run one job and describe what happened as an Outcome. Never raises (but BaseException)."""

from __future__ import annotations

import logging
import os
import time
import traceback
from datetime import datetime
from typing import Any

from django.db import connections
from django.utils import timezone

from .. import middleware, serializers, signals, states
from ..context import activate, take_scheduled_retry
from ..exceptions import Retry, SerializationError
from ..outcome import Outcome, RetryOrder, failure
from ..registry import registry
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


def execute(job: Job) -> Outcome:
    """Run ``job``'s task under its request context, with fresh database connections.

    Sends the task signals and runs the task inside the configured middleware. A retry
    (``self.retry()`` or ``autoretry_for``) ends the run in RETRY with a RetryOrder.
    """
    request = job.request
    task = registry.get(job.task_name)
    common = {"worker": request.hostname or "", "retries": request.retries,
              "ignore_result": job.ignore_result}
    global _last_task_end
    started = timezone.now()
    if time.monotonic() - _last_task_end > IDLE_CHECK_AFTER:
        # A database restart while idle must not fail this task. Back to back, the previous
        # task's check (in ``finally`` below) ran a moment ago.
        close_stale_connections(check_liveness=True, keep=job.keep_connections)
    try:
        with activate(request):
            if job.track_started:
                _record_started(job, started)
            signals.send(signals.task_prerun, task, task_id=request.id, task=task,
                         args=request.args, kwargs=request.kwargs)
            outcome, retval = _run(job, task, started, common)
            signals.send(signals.task_postrun, task, task_id=request.id, task=task,
                         args=request.args, kwargs=request.kwargs, retval=retval,
                         state=outcome.state)
            return outcome
    finally:
        close_stale_connections(keep=job.keep_connections)
        _last_task_end = time.monotonic()


def _run(job: Job, task: Any, started: datetime, common: dict[str, Any]
         ) -> tuple[Outcome, Any]:
    """Call the task through the middleware; the outcome and the value postrun reports."""
    request = job.request
    task_id = request.id or ""
    try:
        try:
            value = middleware.run_through(
                task, request, lambda: task.run(*request.args, **request.kwargs))
        except Exception:
            # ``retry(throw=False)`` and then a failure: the retry asked for still happens.
            scheduled = take_scheduled_retry()
            if scheduled is not None:
                raise scheduled from None
            raise
        scheduled = take_scheduled_retry()
        if scheduled is not None:
            raise scheduled
        payload, content_type, encoding = serializers.dumps(value, job.result_serializer)
    except Retry as retry:
        try:
            _check_retry_arguments(job, retry)
        except SerializationError as exc:
            return failure(task_id, job.task_name, exc, date_started=started,
                           date_done=timezone.now(), serializer=job.result_serializer,
                           **common), exc
        reason = retry.exc if retry.exc is not None else retry
        tb = traceback.format_exc()
        signals.send(signals.task_retry, task, request=request, reason=reason, einfo=tb)
        order = RetryOrder(eta=retry.eta, args=retry.retry_args, kwargs=retry.retry_kwargs)
        return failure(task_id, job.task_name, reason, state=states.RETRY, traceback=tb,
                       date_started=started, date_done=timezone.now(), retry=order,
                       serializer=job.result_serializer, **common), retry
    except Exception as exc:  # noqa: BLE001 - a task's failure is its outcome
        tb = None if isinstance(exc, SerializationError) else traceback.format_exc()
        signals.send(signals.task_failure, task, task_id=task_id, exception=exc,
                     args=request.args, kwargs=request.kwargs, traceback=tb, einfo=tb)
        return failure(task_id, job.task_name, exc, date_started=started,
                       date_done=timezone.now(), traceback=tb,
                       serializer=job.result_serializer, **common), exc
    signals.send(signals.task_success, task, result=value)
    return Outcome(task_id=task_id, task_name=job.task_name, state=states.SUCCESS,
                   payload=payload, content_type=content_type, content_encoding=encoding,
                   date_started=started, date_done=timezone.now(), **common), value


def _check_retry_arguments(job: Job, retry: Retry) -> None:
    """New retry arguments must encode as the message did (the worker sends the retry)."""
    if retry.retry_args is None and retry.retry_kwargs is None:
        return
    serializers.dumps([list(retry.retry_args or ()), dict(retry.retry_kwargs or {}), None],
                      serializers.get(job.content_type).name)


def _record_started(job: Job, started: datetime) -> None:
    """STARTED, with the pid and host, as Celery records it (``track_started``)."""
    from ..results import get_backend

    meta = {"pid": os.getpid(), "hostname": job.request.hostname}
    payload, content_type, encoding = serializers.dumps(meta, job.result_serializer)
    try:
        get_backend().store(Outcome(
            task_id=job.request.id or "", task_name=job.task_name, state=states.STARTED,
            payload=payload, content_type=content_type, content_encoding=encoding,
            date_started=started, worker=job.request.hostname or "",
            retries=job.request.retries))
    except Exception:  # noqa: BLE001 - progress reporting must not fail the task
        logger.warning("could not record STARTED for id=%s", job.request.id, exc_info=True)
