"""Tasks for retries, progress, signals, middleware, revocation, rate limits and poison tests."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from django_taskq import task


class Flaky(Exception):
    """A failure worth retrying."""


class Fatal(Flaky):
    """A subclass of a retried failure that must not be retried (dont_autoretry_for)."""


def _runs(path: str) -> int:
    """Append one line to ``path`` and return how many runs there have been."""
    with Path(path).open("a") as marker:
        marker.write("run\n")
    return len(Path(path).read_text().splitlines())


@task(bind=True, max_retries=3)
def retry_until(self, path, succeed_on):
    """Retries itself (countdown 0) until its ``succeed_on``-th run."""
    run = _runs(path)
    if run < succeed_on:
        raise self.retry(exc=Flaky(f"run {run} failed"), countdown=0)
    return {"run": run, "retries": self.request.retries}


@task(bind=True, max_retries=2)
def retry_with_new_args(self, n):
    if n < 2:
        raise self.retry(args=(n + 1,), countdown=0)
    return {"n": n, "retries": self.request.retries}


@task(bind=True, max_retries=1)
def retry_without_exc(self):
    raise self.retry(countdown=0)


@task(autoretry_for=(Flaky,), dont_autoretry_for=(Fatal,), retry_kwargs={"countdown": 0},
      max_retries=2)
def auto(path, kind="flaky"):
    _runs(path)
    if kind == "fatal":
        raise Fatal("do not retry me")
    raise Flaky("always flaky")


@task(bind=True, max_retries=1)
def retry_later(self, seconds):
    if self.request.retries == 0:
        raise self.retry(countdown=seconds)
    return "second run"


@task(bind=True)
def progress(self, path):
    """Reports PROGRESS, then waits until ``path`` exists, then finishes."""
    self.update_state(state="PROGRESS", meta={"done": 1, "total": 2})
    deadline = time.monotonic() + 20
    while not Path(path).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return "finished"


@task(track_started=True)
def started_then_wait(path):
    deadline = time.monotonic() + 20
    while not Path(path).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return "done"


@task(bind=True)
def read_header(self, name):
    return self.request.headers.get(name)


@task
def kill_self(path):
    """Counts a run, then kills its own process (a poison message)."""
    _runs(path)
    os.kill(os.getpid(), signal.SIGKILL)


@task(rate_limit="5/s")
def limited(path):
    with Path(path).open("a") as marker:
        marker.write(f"{time.time()}\n")
    return "ok"


@task(key_rate_limit="5/s", rate_limit_key=lambda path, tenant: tenant)
def per_tenant(path, tenant):
    with Path(path).open("a") as marker:
        marker.write(f"{tenant} {time.time()}\n")
    return tenant


@task
def tenant_now():
    from tests.testapp.middleware import current_tenant

    return current_tenant.get()


@task(bind=True, max_retries=1)
def retry_then_raise(self):
    """Asks for a retry without raising it, then fails: the retry still happens."""
    if self.request.retries == 0:
        self.retry(throw=False, countdown=0)
        raise ValueError("failed after asking for a retry")
    return "retried"


@task(bind=True)
def retry_with_unencodable_args(self):
    raise self.retry(args=(object(),), countdown=0)


@task(bind=True, max_retries=1)
def retry_elsewhere(self):
    """Retries once to another queue, with another priority and an extra header."""
    if self.request.retries == 0:
        raise self.retry(countdown=0, queue="other", priority=7, headers={"why": "moved"})
    return {"queue": self.request.delivery_info.get("queue"),
            "priority": self.request.delivery_info.get("priority"),
            "why": self.request.headers.get("why")}
