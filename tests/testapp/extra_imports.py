"""Tasks found only through TASKQ["IMPORTS"] (Celery's ``imports``/``include``)."""

from django_taskq import shared_task


@shared_task
def from_imports(x):
    return x + 100
