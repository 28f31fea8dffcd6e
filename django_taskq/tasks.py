"""django_taskq's own tasks: housekeeping that beat can schedule (discovered like any app's)."""

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
