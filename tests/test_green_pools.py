"""``manage.py taskworker --pool gevent|eventlet``: real worker processes on Redis (and on
the database broker, SQLite).

The patch happens in the worker itself, before Django starts (django_taskq/monkey.py); hundreds
of I/O-bound tasks wait at once; time limits, revoke with terminate, pool_grow/pool_shrink, warm
shutdown and leases (tasks longer than the lease) keep working; each greenlet has its own
database connection, closed after its task.
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

from django_taskq import monkey, states
from django_taskq.brokers import get_broker
from django_taskq.control.remote import Control
from django_taskq.exceptions import (
    ConfigurationError,
    TaskRevokedError,
    TimeLimitExceeded,
    WorkerLostError,
)
from django_taskq.result import AsyncResult
from django_taskq.worker.pools import make_pool
from tests.conftest import require_alias
from tests.testapp import green_tasks, limit_tasks, tasks

ROOT = Path(__file__).resolve().parent.parent
PATIENCE = 20.0
pytestmark = [pytest.mark.own_server, pytest.mark.subprocess]
GREEN = pytest.mark.parametrize("pool", ["gevent", "eventlet"])
on_databases = pytest.mark.django_db(transaction=True, databases="__all__")
#: What a late or broken patch prints (gevent, eventlet), or any error at all.
PATCH_TROUBLE = ("MonkeyPatchWarning", "monkey-patch", "monkey_patch", "not greened",
                 "Traceback", "ERROR")


@pytest.fixture
def urls(settings, redis_url):
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": redis_url, "RESULT_BACKEND": redis_url}
    return redis_url


class GreenWorker:
    """``python -m django taskworker`` with a green pool, broker and results at ``url``."""

    def __init__(self, url: str, *args: str, overrides: dict | None = None,
                 pythonpath: str = "") -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [pythonpath, str(ROOT)])),
                   DJANGO_SETTINGS_MODULE="tests.settings")
        env.pop("PYTEST_CURRENT_TEST", None)  # eventlet keeps its late-patch report quiet under it
        env["TASKQ_TEST_SQLITE"] = str(connections["default"].settings_dict["NAME"])
        if "postgres" in settings.DATABASES:
            env["TASKQ_TEST_PG_NAME"] = connections["postgres"].settings_dict["NAME"]
        env["TASKQ_TEST_OVERRIDES"] = json.dumps({
            "BROKER_URL": url, "RESULT_BACKEND": url, "LEASE_TIMEOUT": 2.0,
            "HEARTBEAT_INTERVAL": 0.5, "POLL_INTERVAL": 0.1, "REVOKE_POLL_INTERVAL": 0.1,
            "IMPORTS": ["tests.testapp.green_tasks"], **(overrides or {})})
        self.log = tempfile.TemporaryFile(mode="w+")  # a file: a full pipe would block it
        self.proc = subprocess.Popen(
            [sys.executable, "-W", "default", "-m", "django", "taskworker", "--loglevel", "INFO",
             *args], cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, text=True)

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> tuple[int, str]:
        """SIGTERM (a warm stop), then the exit code and everything it wrote."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=PATIENCE)
        return self.proc.returncode, self.output()

    def __enter__(self) -> GreenWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def wait_for(condition, timeout: float = PATIENCE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def runs(marker: Path) -> int:
    return len(marker.read_text().split()) if marker.exists() else 0


def clean(output: str) -> str:
    """``output`` checked for a late or broken patch (and errors); returned for more checks."""
    trouble = [line for line in output.splitlines() if any(t in line for t in PATCH_TROUBLE)]
    assert not trouble, output
    return output


def other_connections(alias: str) -> int:
    """Connections to the test database of ``alias`` but this one (the worker's)."""
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                       " AND pid <> pg_backend_pid()")
        return int(cursor.fetchone()[0])


# -- in a real worker process ---------------------------------------------------------------------

@GREEN
@on_databases
def test_hundreds_of_io_bound_tasks_wait_at_once_each_on_its_own_connection(pool, urls):
    alias = require_alias("postgres")
    with GreenWorker(urls, "--pool", pool, "-c", "200") as worker:
        started = time.monotonic()
        naps = limit_tasks.nap.delay_many([(1,)] * 200)
        queries = green_tasks.database_nap.delay_many([(alias, 1)] * 20)
        awaited = green_tasks.async_nap.delay_many([(1,)] * 20)
        assert [r.get(timeout=PATIENCE) for r in naps] == ["slept"] * 200
        assert [r.get(timeout=PATIENCE) for r in awaited] == ["awaited"] * 20
        pids = [r.get(timeout=PATIENCE) for r in queries]
        elapsed = time.monotonic() - started
        # 240 seconds of waiting, one after another; at once, a few seconds (bench/ measures).
        assert elapsed < 30, f"{elapsed:.1f}s: the tasks did not wait at once"
        assert len(set(pids)) == 20  # a connection per greenlet, not one shared by all
        wait_for(lambda: other_connections(alias) == 0, timeout=10)  # each closed after its task
        code, output = worker.stop()
    assert code == 0, output
    assert f"pool:        {pool} x 200" in clean(output)


@GREEN
@on_databases
def test_time_limits_revoke_terminate_resizing_and_cold_stop(pool, urls, tmp_path):
    marker, host = tmp_path / "runs", f"green-{pool}@test"
    with GreenWorker(urls, "--pool", pool, "-c", "4", "-n", host) as worker:
        soft = limit_tasks.clean_up_on_soft_limit.apply_async((30,), soft_time_limit=0.3)
        hard = limit_tasks.nap.apply_async((30,), time_limit=0.5)
        uncaught = limit_tasks.nap.apply_async((30,), soft_time_limit=0.3)
        stubborn = limit_tasks.swallow_once.apply_async((str(tmp_path / "swallow"), 30),
                                                        time_limit=0.5)
        crashed = green_tasks.exits.delay()
        long = tasks.record_and_sleep.delay(str(marker), 60)
        wait_for(lambda: runs(marker) == 1)
        long.revoke(terminate=True)

        assert soft.get(timeout=PATIENCE) == "cleaned up"  # raised in the task, caught there
        with pytest.raises(TimeLimitExceeded, match="hard time limit"):
            hard.get(timeout=PATIENCE)
        assert uncaught.state == states.FAILURE
        with pytest.raises(TimeLimitExceeded):  # failed at once, though it swallows the kill
            stubborn.get(timeout=PATIENCE)
        with pytest.raises(WorkerLostError, match="worker lost 3 times"):  # lost, not stuck
            crashed.get(timeout=PATIENCE)
        assert "SoftTimeLimitExceeded" in uncaught.traceback
        wait_for(lambda: AsyncResult(long.id).ready())
        with pytest.raises(TaskRevokedError, match="terminated"):
            long.get(timeout=1)

        control = Control()
        ask = control.inspect(destination=[host], timeout=PATIENCE)
        control.pool_grow(3, destination=[host], reply=True, timeout=PATIENCE)
        wait_for(lambda: ask.stats()[host]["pool"]["max-concurrency"] == 7)
        control.pool_shrink(6, destination=[host], reply=True, timeout=PATIENCE)
        wait_for(lambda: ask.stats()[host]["pool"]["max-concurrency"] == 1)
        assert tasks.add.delay(2, 2).get(timeout=PATIENCE) == 4  # the worker goes on

        # A second SIGTERM is a cold stop: the running greenlet is killed, its task requeued.
        cut = tasks.record_and_sleep.delay(str(tmp_path / "cut"), 60)
        wait_for(lambda: runs(tmp_path / "cut") == 1)
        worker.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        code, output = worker.stop()
    assert code == 0, output
    assert runs(marker) == 1  # killed, not redelivered
    assert "hard time limit (0.5s) exceeded" in output
    assert "killed again every second" in output  # the greenlet that swallowed the kill
    assert (tmp_path / "swallow").read_text().split() == ["swallowed"]  # never finished
    assert cut.state == states.PENDING and get_broker().size("default") == 1


@pytest.fixture(params=["redis", "sqlite"])
def broker_url(request, settings):
    """The test Redis database, or the database broker on the test SQLite file."""
    url = request.getfixturevalue("redis_url") if request.param == "redis" else "db://default"
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": url, "RESULT_BACKEND": url}
    return url


@GREEN
@on_databases
def test_warm_shutdown_finishes_running_tasks_longer_than_the_lease(pool, broker_url, tmp_path):
    markers = [tmp_path / f"runs{i}" for i in range(5)]
    with GreenWorker(broker_url, "--pool", pool, "-c", "5", "--prefetch-multiplier",
                     "1") as worker:
        # 3 s each, over the 2 s lease: the heartbeat (a greenlet too) must keep extending it.
        slow = [tasks.record_and_sleep.delay(str(m), 3) for m in markers]
        waiting = tasks.add.delay_many([(1, 1)] * 3)
        wait_for(lambda: all(runs(m) == 1 for m in markers))
        code, output = worker.stop()
    assert code == 0, output
    assert [r.state for r in slow] == [states.SUCCESS] * 5
    assert [runs(m) for m in markers] == [1] * 5  # none ran twice (no lease ran out)
    assert [r.state for r in waiting] == [states.PENDING] * 3  # left in the queue
    assert "5 task(s) processed" in clean(output)


@on_databases
def test_the_pool_chosen_in_settings_is_patched_as_early(urls):
    with GreenWorker(urls, overrides={"WORKER_POOL": "gevent"}) as worker:
        assert tasks.add.delay(1, 2).get(timeout=PATIENCE) == 3
        code, output = worker.stop()
    assert code == 0, output
    assert "pool:        gevent x" in clean(output)


@GREEN
def test_a_missing_package_names_the_extra_to_install(pool, redis_url, tmp_path):
    fake = tmp_path / pool
    fake.mkdir()
    (fake / "__init__.py").write_text(f"raise ImportError(\"No module named '{pool}'\")\n")
    with GreenWorker(redis_url, "--pool", pool, pythonpath=str(tmp_path)) as worker:
        worker.proc.wait(timeout=PATIENCE)
        output = worker.output()
    assert worker.proc.returncode != 0, output
    assert f"pip install 'django-taskq[{pool}]'" in output
    assert "Traceback" not in output


# -- in this process (not patched) ----------------------------------------------------------------

@pytest.mark.parametrize("argv, pool", [
    (["manage.py", "taskworker", "--pool", "gevent"], "gevent"),
    (["manage.py", "taskworker", "--pool=eventlet", "-c", "500"], "eventlet"),
    (["manage.py", "taskworker", "-P", "gevent"], "gevent"),
    (["manage.py", "taskworker", "-Peventlet"], "eventlet"),
    (["manage.py", "taskworker", "--poo", "gevent", "--pool", "threads"], "threads"),
    (["manage.py", "taskworker", "-c", "4"], None),
    (["manage.py", "runserver", "--pool", "gevent"], None),
    (["manage.py"], None),
])
def test_the_pool_is_read_from_a_taskworker_command_line(argv, pool):
    assert monkey.pool_in_argv(argv) == pool


def test_the_environment_chooses_the_green_pool_too(monkeypatch):
    monkeypatch.setenv("TASKQ_WORKER_POOL", "eventlet")
    assert monkey.chosen_pool(["manage.py", "taskworker"]) == "eventlet"
    assert monkey.chosen_pool(["manage.py", "taskworker", "-P", "gevent"]) == "gevent"
    assert monkey.chosen_pool(["manage.py", "taskworker", "-P", "solo"]) is None
    assert monkey.chosen_pool(["manage.py", "migrate"]) is None


@GREEN
def test_a_green_pool_not_patched_in_time_is_refused_naming_the_fix(pool):
    assert monkey.patched is None  # this test process was not patched
    with pytest.raises(ConfigurationError) as raised:
        make_pool(pool, 10)
    assert f"--pool {pool}" in str(raised.value)
    assert f"TASKQ_WORKER_POOL={pool}" in str(raised.value)


def test_a_green_pool_whose_package_is_missing_names_the_extra(monkeypatch):
    monkeypatch.setattr(monkey, "missing", "eventlet")
    with pytest.raises(ConfigurationError, match=r"pip install 'django-taskq\[eventlet\]'"):
        make_pool("eventlet", 10)
