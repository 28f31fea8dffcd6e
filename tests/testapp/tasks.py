"""Tasks the test suite sends through real brokers and workers."""

from __future__ import annotations

import os
import time
from pathlib import Path

from django_taskq import shared_task, task


@task
def add(x, y):
    return x + y


@task(name="tests.echo")
def echo(*args, **kwargs):
    return {"args": list(args), "kwargs": kwargs}


@shared_task
def fail(message="boom"):
    raise ValueError(message)


@task
def tsum(values):
    """A chord body (the Celery peer has the same task)."""
    return sum(values)


@task
def unserializable():
    return object()


@task(bind=True)
def whoami(self):
    return {"id": self.request.id, "task": self.request.task, "hostname": self.request.hostname,
            "retries": self.request.retries}


@task(ignore_result=True)
def noop():
    return None


@task
def record_and_sleep(path, seconds):
    """Append a line to ``path`` (one per execution), then sleep: for kill/stop tests."""
    with Path(path).open("a") as marker:
        marker.write(f"{os.getpid()}\n")
    time.sleep(seconds)
    return "slept"


@task
def count_users(using="default"):
    from django.contrib.auth.models import User

    return User.objects.using(using).count()


@task
def mark(path, n):
    """Append ``n`` to ``path``, one line per execution: counts runs of each task exactly."""
    with Path(path).open("a") as marker:
        marker.write(f"{n}\n")
    return n
from tests.testapp import (  # noqa: E402,F401  (registers them)
    async_tasks,
    canvas_tasks,
    feature_tasks,
    limit_tasks,
    pydantic_tasks,
    review_tasks,
    surface_tasks,
)
