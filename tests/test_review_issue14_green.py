"""Review of the gevent and eventlet pools (issue 14): what a user moving from Celery would hit.

Real ``python -m django taskworker --pool gevent|eventlet`` processes on Redis.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connections

from django_taskq import send_task
from django_taskq.monkey import pool_in_argv
from tests.conftest import require_alias

ROOT = Path(__file__).resolve().parent.parent
PATIENCE = 20.0
pytestmark = [pytest.mark.own_server, pytest.mark.subprocess]
GREEN = pytest.mark.parametrize("pool", ["gevent", "eventlet"])
on_databases = pytest.mark.django_db(transaction=True, databases="__all__")

#: Settings that import psycopg before django_taskq is imported (as ``django.contrib.postgres``
#: does when listed before django_taskq in INSTALLED_APPS, or a settings file that imports
#: ``psycopg`` for ``IsolationLevel``), and a task that waits in a PostgreSQL query.
SETTINGS = "import psycopg  # noqa\nfrom tests.settings import *  # noqa\n"
TASKS = '''
from django.db import connections
from django_taskq import task

@task(name="r14.pg_nap")
def pg_nap(alias, seconds):
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_sleep(%s)", [seconds])
    return "napped"

@task(name="r14.pg_atomic_nap")
def pg_atomic_nap(alias, seconds):
    from django.db import transaction
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_sleep(%s)", [seconds])
    return "napped"

@task(name="r14.async_count")
async def async_count():
    from django.contrib.auth.models import User
    return await User.objects.acount()  # Django's async ORM: sync_to_async underneath
'''


def start_worker(url: str, where: Path, *args: str) -> tuple[subprocess.Popen, object]:
    (where / "r14_settings.py").write_text(SETTINGS)
    (where / "r14_tasks.py").write_text(TASKS)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(where), str(ROOT)]),
               DJANGO_SETTINGS_MODULE="r14_settings")
    env.pop("PYTEST_CURRENT_TEST", None)
    env.pop("PSYCOPG_WAIT_FUNC", None)
    env["TASKQ_TEST_SQLITE"] = str(connections["default"].settings_dict["NAME"])
    if "postgres" in settings.DATABASES:
        env["TASKQ_TEST_PG_NAME"] = connections["postgres"].settings_dict["NAME"]
    env["TASKQ_TEST_OVERRIDES"] = json.dumps({
        "BROKER_URL": url, "RESULT_BACKEND": url, "POLL_INTERVAL": 0.1,
        "REVOKE_POLL_INTERVAL": 0.1, "IMPORTS": ["r14_tasks"]})
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "django", "taskworker", "--loglevel", "INFO", *args],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    return proc, log


def stop_worker(proc: subprocess.Popen, log) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=PATIENCE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log.seek(0)
    return log.read()


@pytest.fixture
def urls(settings, redis_url):
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": redis_url, "RESULT_BACKEND": redis_url}
    return redis_url


@GREEN
@on_databases
def test_postgresql_queries_wait_at_once_when_psycopg_was_imported_first(pool, urls, tmp_path):
    """psycopg 3 waits for a query in C (an unpatched poll()) unless, when it was imported, it
    saw gevent's patch; imported before django_taskq (or on eventlet, never), every query
    blocked the whole worker: 6 queries of 1 s took 6 s on a green pool of 10."""
    alias = require_alias("postgres")
    proc, log = start_worker(urls, tmp_path, "--pool", pool, "-c", "10")
    try:
        assert send_task("r14.pg_nap", (alias, 0)).get(timeout=PATIENCE) == "napped"  # ready
        started = time.monotonic()
        results = [send_task("r14.pg_nap", (alias, 1)) for _ in range(6)]
        assert [r.get(timeout=PATIENCE) for r in results] == ["napped"] * 6
        elapsed = time.monotonic() - started
    finally:
        output = stop_worker(proc, log)
    assert proc.returncode == 0, output
    assert elapsed < 3.5, f"{elapsed:.1f}s: the queries blocked the worker one after another"


@GREEN
@on_databases
def test_async_orm_in_an_async_task(pool, urls, tmp_path):
    """An ``async def`` task using Django's async ORM (the example project's count_customers):
    asgiref's thread for ``sync_to_async`` was a greenlet of the coroutine's own thread, where
    the loop runs, so Django refused every query with SynchronousOnlyOperation."""
    proc, log = start_worker(urls, tmp_path, "--pool", pool, "-c", "4")
    try:
        results = [send_task("r14.async_count") for _ in range(3)]
        assert [r.get(timeout=PATIENCE, propagate=False) for r in results] == [0, 0, 0]
    finally:
        output = stop_worker(proc, log)
    assert proc.returncode == 0, output


@pytest.mark.parametrize(("args", "pool"), [
    (["-B", "-P", "gevent"], "gevent"), (["-BP", "gevent"], "gevent"), (["-EBPeventlet"], "eventlet"),
    (["-c4", "-P", "gevent", "-l", "INFO"], "gevent"), (["-Q", "P", "-c", "5"], None),
    (["-BE", "-n", "w1"], None),
])
def test_the_pool_is_read_from_short_option_clusters(args, pool):
    """``taskworker -BP gevent`` is how argparse (and Celery's worker) reads it: the worker
    refused to start (not patched) although its command line chose gevent."""
    assert pool_in_argv(["manage.py", "taskworker", *args]) == pool


@GREEN
@on_databases
def test_terminating_a_task_in_a_postgresql_query_cancels_it(pool, urls, tmp_path):
    """revoke(terminate=True) (or the hard time limit) of a task waiting in a query inside a
    transaction: the query is cancelled on the server (it ran on for its 30 s after the kill,
    holding its locks), and the worker's next queries work."""
    alias = require_alias("postgres")
    proc, log = start_worker(urls, tmp_path, "--pool", pool, "-c", "4")
    try:
        long = send_task("r14.pg_atomic_nap", (alias, 30))
        deadline = time.monotonic() + PATIENCE
        while sleeping_backends(alias) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        long.revoke(terminate=True)
        with pytest.raises(Exception, match="terminated"):
            long.get(timeout=PATIENCE)
        assert send_task("r14.pg_nap", (alias, 0)).get(timeout=PATIENCE) == "napped"
        deadline = time.monotonic() + 3
        while sleeping_backends(alias) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sleeping_backends(alias) == 0, "the killed task's query still runs on the server"
        limited = send_task("r14.pg_atomic_nap", (alias, 30), time_limit=1)  # the hard limit
        with pytest.raises(Exception, match="time limit"):
            limited.get(timeout=PATIENCE)
        deadline = time.monotonic() + 3
        while sleeping_backends(alias) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sleeping_backends(alias) == 0, "the timed-out task's query still runs"
    finally:
        output = stop_worker(proc, log)
    assert proc.returncode == 0, output


def sleeping_backends(alias: str) -> int:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(30%%'"
                       " AND state = 'active' AND pid <> pg_backend_pid()")
        return cursor.fetchone()[0]
