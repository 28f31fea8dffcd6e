"""django_taskq's own tasks: housekeeping that beat can schedule, and Celery's built-in canvas
tasks (``celery.map``, ``celery.starmap``, ``celery.chunks``, ``celery.accumulate``: a Celery
client's maps run here too). Imported by discovery whatever TASK_MODULES says."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from .definition import task


@task(name="django_taskq.backend_cleanup", ignore_result=True)
def backend_cleanup() -> dict[str, Any]:
    """Celery's ``celery.backend_cleanup``: delete results older than RESULT_EXPIRES, expired
    revocations and rate buckets, and beat's claims older than BEAT_RUN_HISTORY. Beat sends it
    daily at 04:00 (the ``taskq.backend_cleanup`` entry, TASKQ["BEAT_BACKEND_CLEANUP"])."""
    from django.utils import timezone

    from .beat.models import PeriodicTaskRun
    from .conf import get_settings
    from .control import get_control_store
    from .results import get_backend

    cutoff = timezone.now() - timedelta(seconds=get_settings().BEAT_RUN_HISTORY)
    runs, _ = PeriodicTaskRun.objects.using(get_settings().BEAT_DATABASE).filter(
        sent_at__isnull=False, tick__lt=cutoff).delete()
    return {"results": get_backend().cleanup(), "control": get_control_store().prune(),
            "beat_runs": runs}


def _task_of(sig: Any) -> Any:
    from .registry import registry

    name = sig["task"] if isinstance(sig, dict) else getattr(sig, "name", sig)
    return registry.get(name)


@task(name="celery.map", shared=False)
def xmap(task: Any, it: list[Any]) -> list[Any]:
    """``[task(x) for x in it]``, here, in order (``task.map(it)``)."""
    run = _task_of(task)
    return [run(item) for item in it]


@task(name="celery.starmap", shared=False)
def xstarmap(task: Any, it: list[Any]) -> list[Any]:
    """``[task(*x) for x in it]``, here, in order (``task.starmap(it)``)."""
    run = _task_of(task)
    return [run(*item) for item in it]


@task(name="celery.chunks", shared=False)
def chunks(task: Any, it: list[Any], n: int) -> Any:
    """A ``chunks`` signature that arrived as a message: sends its parts as a group."""
    from .canvas.maps import chunks as chunks_signature

    return chunks_signature(task, it, n).apply_async().id


@task(name="celery.accumulate", shared=False)
def accumulate(*args: Any, **kwargs: Any) -> Any:
    """Its arguments (the one at ``index=`` when given): the body that makes a group's results
    one value (``self.replace(group(...))`` and Celery clients use it)."""
    index = kwargs.get("index")
    return args[index] if index is not None else args
