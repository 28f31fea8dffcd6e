"""Tasks for the regression tests of the issue 9 review (tests/test_review_fixes.py)."""

from __future__ import annotations

import sys
from pathlib import Path

from django_taskq import Ignore, Reject, task

runs: list[int] = []


def record(path, value):
    """Append ``value`` to the file ``path``, one line per call."""
    with Path(path).open("a") as marker:
        marker.write(f"{value}\n")
notified: list[tuple[str, str]] = []


@task
def fail_with_nul(data):
    raise ValueError(f"cannot parse {data}")


@task(bind=True, autoretry_for=(Exception,), max_retries=3, default_retry_delay=0)
def ignored_with_autoretry(self):
    runs.append(self.request.retries)
    raise Ignore()


def notify(self, exc, task_id, args, kwargs, einfo):
    """A handler given as a decorator keyword: a method of the task, as in Celery."""
    notified.append((self.name, str(exc)))


@task(on_failure=notify)
def fails_and_notifies():
    raise ValueError("told")


@task
def exits(path):
    record(path, 1)
    sys.exit(2)  # argparse or click inside a task


@task
def reject_eagerly():
    raise Reject("nope")


@task(bind=True)
def flaky_connection(self, path):
    record(path, self.request.retries)
    if self.request.retries < 2:
        raise ConnectionError("down")
    return "up"


@task(acks_on_timeout=False, time_limit=0.3)
def too_slow_run_again(path):
    import time

    record(path, "run")
    time.sleep(30)


def route_by_tenant(name, args, kwargs, options, task=None, **kw):
    """A router that sends each tenant's call to its own queue."""
    if name.endswith("review_tasks.per_tenant"):
        return {"queue": f"tenant-{args[0]}"}
    return None


@task
def per_tenant(tenant):
    return tenant
