"""``async def`` tasks (tests/test_async_tasks.py, tests/test_async_pool_process.py)."""

from __future__ import annotations

import asyncio
import os
import threading
import time

from asgiref.sync import sync_to_async

from django_taskq import Task, shared_task, task
from django_taskq.exceptions import Ignore, Reject, SoftTimeLimitExceeded
from django_taskq.registry import registry
from tests.testapp.middleware import current_tenant

#: Coroutines of ``sleeper`` running right now, and the most seen at once (in-process tests).
overlap = {"now": 0, "most": 0}
#: Database wrappers the ORM task used (their ``connection`` is None once closed).
used_connections: list = []


@task
async def add(x, y):
    await asyncio.sleep(0)
    return x + y


@shared_task
async def sleeper(seconds, value=None):
    overlap["now"] += 1
    overlap["most"] = max(overlap["most"], overlap["now"])
    try:
        await asyncio.sleep(seconds)
    finally:
        overlap["now"] -= 1
    return value


@task
def sync_sleeper(seconds, value=None):
    time.sleep(seconds)
    return [value, threading.current_thread().name]


@task
async def fail(message="boom"):
    await asyncio.sleep(0)
    raise ValueError(message)


@task(bind=True, max_retries=3, default_retry_delay=0)
async def retrying(self, until):
    """Retried (with ``self.retry``) until its ``retries`` reaches ``until``."""
    await asyncio.sleep(0)
    if self.request.retries < until:
        raise self.retry(countdown=0)
    return {"id": self.request.id, "retries": self.request.retries}


@task(bind=True, max_retries=2, default_retry_delay=0)
async def retry_later(self):
    """``retry(throw=False)`` inside the coroutine: the retry still happens."""
    if self.request.retries == 0:
        self.retry(countdown=0, throw=False)
    return self.request.retries


@task(autoretry_for=(KeyError,), max_retries=2, default_retry_delay=0, bind=True)
async def flaky(self):
    await asyncio.sleep(0)
    if self.request.retries < 2:
        raise KeyError("not yet")
    return "steady"


@task
async def ignored():
    raise Ignore()


@task
async def rejected():
    raise Reject("no thanks", requeue=False)


@task
async def soft_limited(seconds):
    """Catches SoftTimeLimitExceeded at its await and cleans up."""
    try:
        await asyncio.sleep(seconds)
    except SoftTimeLimitExceeded:
        await asyncio.sleep(0)
        return "cleaned up"
    return "not interrupted"


@task
async def stubborn(seconds):
    """Swallows one cancellation; the hard limit still ends it."""
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        await asyncio.sleep(seconds)
    return "escaped"


@task
async def spin(seconds):
    """Never awaits: only a process kill (or the solo pool's alarm backstop) stops it."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
    return "spun"


@task
async def tenant():
    """The tenant the test middleware made current (only its context has it)."""
    await asyncio.sleep(0)
    return current_tenant.get()


@task
async def users_count(using="default"):
    from django.contrib.auth.models import User
    from django.db import connections

    @sync_to_async
    def remember():
        used_connections.append(connections[using])

    count = await User.objects.using(using).acount()
    await remember()
    return count


@task
async def where():
    return {"pid": os.getpid(), "thread": threading.current_thread().name}


class Doubler(Task):
    """A Task subclass with an ``async def run``."""

    name = "tests.async.doubler"

    async def run(self, x):
        await asyncio.sleep(0)
        return x * 2


doubler = registry.register(Doubler())


@task
async def mark_and_sleep(path, seconds):
    """Append a line to ``path`` (it has started), then sleep."""
    from pathlib import Path

    with Path(path).open("a") as marker:
        marker.write("run\n")
    await asyncio.sleep(seconds)
    return "slept"


@task
async def nested_apply():
    """An eager run of another async task from inside a coroutine (a blocking call)."""
    return add.apply((20, 22)).get()


@task
async def sync_orm_in_coroutine():
    """A mistake: the synchronous ORM on the event loop's thread (Django refuses it)."""
    from django.contrib.auth.models import User

    return User.objects.count()


@task(bind=True)
async def send_from_coroutine(self):
    """Sending and recording progress from a coroutine: through ``sync_to_async`` (the database
    broker and result store use the ORM, which Django refuses on the loop's thread)."""
    await sync_to_async(self.update_state)(state="PROGRESS", meta={"done": 1})
    sent = await sync_to_async(add.delay)(1, 2)
    return sent.id


@task
async def awaits_a_cancelled_future():
    inner = asyncio.ensure_future(asyncio.sleep(10))
    await asyncio.sleep(0)
    inner.cancel()
    await inner
