"""A real ``manage.py taskworker`` process: SIGKILL loses nothing, SIGTERM stops cleanly."""

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

from django_taskq import states
from django_taskq.models import QueuedMessage
from tests.conftest import require_alias
from tests.testapp import tasks

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.subprocess,
              pytest.mark.django_db(transaction=True, databases="__all__")]


@pytest.fixture(params=["sqlite", "postgres"])
def alias(request, settings):
    alias = require_alias(request.param)
    url = f"db://{alias}"
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": url, "RESULT_BACKEND": url}
    return alias


class WorkerProcess:
    """``python -m django taskworker`` against the test database of ``alias`` (or the given
    broker and result backend URLs)."""

    def __init__(self, alias: str, *args: str, lease: float = 2.0,
                 persistent_connections: bool = False, broker_url: str | None = None,
                 result_backend: str | None = None) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT), DJANGO_SETTINGS_MODULE="tests.settings")
        if persistent_connections:
            env["TASKQ_TEST_PERSISTENT"] = "1"
        env["TASKQ_TEST_SQLITE"] = str(connections["default"].settings_dict["NAME"])
        if "postgres" in settings.DATABASES:
            env["TASKQ_TEST_PG_NAME"] = connections["postgres"].settings_dict["NAME"]
        if "mariadb" in settings.DATABASES:
            env["TASKQ_TEST_MYSQL_NAME"] = connections["mariadb"].settings_dict["NAME"]
        env["TASKQ_TEST_OVERRIDES"] = json.dumps({
            "BROKER_URL": broker_url or f"db://{alias}",
            "RESULT_BACKEND": result_backend or f"db://{alias}",
            "LEASE_TIMEOUT": lease, "HEARTBEAT_INTERVAL": lease / 4, "POLL_INTERVAL": 0.1})
        # Output goes to a file, not a pipe: a pipe nobody reads until the end fills up (64 KiB)
        # and then blocks the worker's next log line, whichever thread writes it.
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "django", "taskworker", "--loglevel", "INFO", *args],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, text=True)

    def output(self) -> str:
        """Everything the worker wrote so far."""
        self.log.seek(0)
        return self.log.read()

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 30) -> tuple[int, str]:
        self.proc.wait(timeout=timeout)
        return self.proc.returncode, self.output()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()  # never leave a worker behind, whatever the test did


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def runs(marker: Path) -> int:
    return len(marker.read_text().split()) if marker.exists() else 0


def test_sigkill_mid_task_loses_nothing_and_reruns_once(alias, tmp_path):
    marker = tmp_path / "runs"
    result = tasks.record_and_sleep.delay(str(marker), 1.5)
    with WorkerProcess(alias, "--pool", "solo") as first:
        wait_for(lambda: runs(marker) == 1)
        first.proc.kill()  # SIGKILL: no chance to release anything
        first.wait()
    assert result.state == states.PENDING
    with WorkerProcess(alias, "--pool", "solo") as second:
        assert result.get(timeout=30) == "slept"
        assert runs(marker) == 2  # once killed, once to completion: re-run exactly once
        assert QueuedMessage.objects.using(alias).count() == 0
        second.signal(signal.SIGTERM)
        code, output = second.wait()
    assert code == 0, output
    assert "task succeeded name=tests.testapp.tasks.record_and_sleep" in output


@pytest.mark.parametrize("pool", ["solo", "prefork"])
def test_sigterm_finishes_running_task_and_releases_the_rest(alias, tmp_path, pool):
    marker = tmp_path / "runs"
    slow = tasks.record_and_sleep.delay(str(marker), 1.0)
    waiting = tasks.add.delay_many([(1, 1)] * 3)
    with WorkerProcess(alias, "--pool", pool, "--concurrency", "1",
                           "--prefetch-multiplier", "4") as worker:
        wait_for(lambda: runs(marker) == 1)
        worker.signal(signal.SIGTERM)
        code, output = worker.wait()
    assert code == 0, output
    assert slow.state == states.SUCCESS
    assert all(r.state == states.PENDING for r in waiting)
    left = QueuedMessage.objects.using(alias).order_by("id")
    assert [(m.state, m.attempts) for m in left] == [("ready", 0)] * 3
    assert "released" in output


def test_second_signal_requeues_the_running_task_and_exits(alias, tmp_path):
    marker = tmp_path / "runs"
    slow = tasks.record_and_sleep.delay(str(marker), 60)
    with WorkerProcess(alias, "--pool", "solo") as worker:
        wait_for(lambda: runs(marker) == 1)
        worker.signal(signal.SIGTERM)
        time.sleep(0.3)
        worker.signal(signal.SIGINT)
        code, output = worker.wait(timeout=20)
    assert code == 0, output
    assert slow.state == states.PENDING
    [message] = QueuedMessage.objects.using(alias).all()
    assert (message.state, message.attempts) == ("ready", 1)  # the started attempt counts


@pytest.mark.parametrize("pool", ["solo", "prefork"])
def test_tasks_after_a_database_restart_work(settings, pool):
    """Every session of the worker is cut (as a PostgreSQL restart does); the next task works.

    With persistent connections (CONN_MAX_AGE=None), which is where a stale one survives.
    """
    alias = require_alias("postgres")
    url = "db://postgres"
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": url, "RESULT_BACKEND": url}
    with WorkerProcess(alias, "--pool", pool, "--concurrency", "1",
                           persistent_connections=True) as worker:
        assert tasks.count_users.delay(alias).get(timeout=30) == 0
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        time.sleep(1.5)  # idle, as a worker is while its database restarts
        assert tasks.count_users.delay(alias).get(timeout=30) == 0
        worker.signal(signal.SIGTERM)
        code, output = worker.wait()
    assert code == 0, output
    assert "task failed" not in output
