"""Tasks for the gevent and eventlet pool tests (the worker loads them through IMPORTS)."""

from __future__ import annotations

import asyncio
import time

from django.db import connections

from django_taskq import task


@task
def database_nap(alias, seconds):
    """Query ``alias`` on this task's connection, wait on I/O, and say which connection it was:
    each greenlet must have its own (the backend's pid), closed when the task ends."""
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    time.sleep(seconds)  # patched: the other greenlets run meanwhile
    return pid


@task
async def async_nap(seconds):
    """An ``async def`` task on a green pool: it runs on a real thread (asyncio's loop is per
    thread), beside the greenlets."""
    await asyncio.sleep(seconds)
    return "awaited"


@task
def exits():
    """Leave by SystemExit (not an Exception): its run is lost, as a dead child's would be."""
    raise SystemExit(3)
