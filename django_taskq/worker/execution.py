"""Run one job and describe what happened as an Outcome. Never raises (but BaseException)."""

from __future__ import annotations

import traceback

from django.db import connections
from django.utils import timezone

from .. import serializers, states
from ..context import activate
from ..exceptions import SerializationError
from ..outcome import Outcome, failure
from ..registry import registry
from .job import Job


def close_stale_connections() -> None:
    """Close broken or expired database connections, as Django does around each request.

    Connections inside an atomic block are left alone (a test's transaction, or a caller's).
    """
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


def execute(job: Job) -> Outcome:
    """Run ``job``'s task under its request context, with fresh database connections."""
    request = job.request
    common = {"worker": request.hostname or "", "retries": request.retries,
              "ignore_result": job.ignore_result, "serializer": job.result_serializer}
    started = timezone.now()
    close_stale_connections()  # a database restart since the last task must not fail this one
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
        close_stale_connections()
    common.pop("serializer")
    return Outcome(task_id=request.id or "", task_name=job.task_name, state=states.SUCCESS,
                   payload=payload, content_type=content_type, content_encoding=encoding,
                   date_started=started, date_done=timezone.now(), **common)
