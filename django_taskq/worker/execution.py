"""Run one job and describe what happened as an Outcome. Never raises (but BaseException)."""

from __future__ import annotations

import time
import traceback

from django.db import connections
from django.utils import timezone

from .. import serializers, states
from ..context import activate
from ..exceptions import SerializationError
from ..outcome import Outcome, failure
from ..registry import registry
from .job import Job

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
    """Run ``job``'s task under its request context, with fresh database connections."""
    request = job.request
    common = {"worker": request.hostname or "", "retries": request.retries,
              "ignore_result": job.ignore_result, "serializer": job.result_serializer}
    global _last_task_end
    started = timezone.now()
    if time.monotonic() - _last_task_end > IDLE_CHECK_AFTER:
        # A database restart while idle must not fail this task. Back to back, the previous
        # task's check (in ``finally`` below) ran a moment ago.
        close_stale_connections(check_liveness=True, keep=job.keep_connections)
    try:
        with activate(request):
            value = registry.get(job.task_name).run(*request.args, **request.kwargs)
        payload, content_type, encoding = serializers.dumps(value, job.result_serializer)
    except SerializationError as exc:
        return failure(job.request.id or "", job.task_name, exc, date_started=started,
                       date_done=timezone.now(), traceback=None, **common)
    except Exception as exc:  # noqa: BLE001 - a task's failure is its outcome
        return failure(job.request.id or "", job.task_name, exc, date_started=started,
                       date_done=timezone.now(), traceback=traceback.format_exc(), **common)
    finally:
        close_stale_connections(keep=job.keep_connections)
        _last_task_end = time.monotonic()
    common.pop("serializer")
    return Outcome(task_id=request.id or "", task_name=job.task_name, state=states.SUCCESS,
                   payload=payload, content_type=content_type, content_encoding=encoding,
                   date_started=started, date_done=timezone.now(), **common)
