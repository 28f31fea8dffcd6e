"""Task signal receivers: the audit trail of every run, and the tenant header on orders."""

from celery.signals import (
    before_task_publish,
    task_failure,
    task_postrun,
    task_prerun,
    task_retry,
)

from shop import audit
from shop.tasks import reserve_stock

TENANT = "acme"


@before_task_publish.connect(sender="shop.tasks.reserve_stock")
def stamp_tenant(sender=None, headers=None, **kwargs):
    headers["tenant"] = TENANT


@task_prerun.connect
def on_prerun(sender=None, task_id=None, task=None, args=None, kwargs=None, **extra):
    audit.record("task_prerun", task=task.name, task_id=task_id, args=list(args))


@task_postrun.connect(sender=reserve_stock)
def on_reserve_postrun(sender=None, task_id=None, state=None, **kwargs):
    audit.record("task_postrun", task=sender.name, task_id=task_id, state=state)


@task_retry.connect
def on_retry(sender=None, request=None, reason=None, **kwargs):
    audit.record("task_retry", task=sender.name, task_id=request.id, reason=str(reason))


@task_failure.connect
def on_failure(sender=None, task_id=None, exception=None, **kwargs):
    audit.record("task_failure", task=sender.name, task_id=task_id,
                 exception=type(exception).__name__, message=str(exception))
