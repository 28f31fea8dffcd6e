"""Real ``taskworker`` processes on every broker: poison messages end in the dead letters after
MAX_DELIVERIES worker deaths, and ``revoke(terminate=True)`` kills a running task."""

from __future__ import annotations

import signal

import pytest

from django_taskq import AsyncResult, revoke, states
from django_taskq.brokers import get_broker
from django_taskq.exceptions import TaskRevokedError, WorkerLostError
from tests.conftest import worker_urls
from tests.test_worker_process import WorkerProcess, runs, wait_for
from tests.testapp import feature_tasks as ft
from tests.testapp import tasks

pytestmark = [pytest.mark.subprocess,
              pytest.mark.django_db(transaction=True, databases="__all__")]


@pytest.fixture(params=["sqlite", "postgres", "redis", "amqp"])
def urls(request, settings):
    """(broker URL, result backend URL) of a real broker, configured here and for workers."""
    return worker_urls(request, settings, request.param)


def worker(urls, *args):
    broker, results = urls
    return WorkerProcess("default", *args, broker_url=broker, result_backend=results)


def test_a_task_that_kills_its_process_is_dead_lettered_after_max_deliveries(urls, tmp_path):
    marker = tmp_path / "runs"
    poison = ft.kill_self.delay(str(marker))
    healthy = tasks.add.delay(20, 22)
    with worker(urls, "--pool", "prefork", "-c", "1") as proc:
        assert healthy.get(timeout=30) == 42
        wait_for(lambda: AsyncResult(poison.id).ready(), timeout=60)
        after = tasks.add.delay(1, 1)
        assert after.get(timeout=30) == 2  # the worker goes on
        proc.signal(signal.SIGTERM)
        code, output = proc.wait()
    assert code == 0, output
    assert runs(marker) == 3  # MAX_DELIVERIES (default 3), never an endless crash loop
    assert poison.state == states.FAILURE
    with pytest.raises(WorkerLostError, match="worker lost 3 times"):
        poison.get(timeout=5)
    letters = get_broker().dead_letter_list()
    assert [letter.envelope.message_id for letter in letters] == [poison.id]
    assert letters[0].reason.startswith("worker lost")
    assert "dead-lettered" in output


def test_revoke_terminate_kills_the_running_task_and_the_worker_goes_on(urls, tmp_path):
    marker = tmp_path / "runs"
    long = tasks.record_and_sleep.delay(str(marker), 60)
    with worker(urls, "--pool", "prefork", "-c", "1") as proc:
        wait_for(lambda: runs(marker) == 1)
        long.revoke(terminate=True)
        wait_for(lambda: AsyncResult(long.id).ready(), timeout=15)
        assert long.state == states.REVOKED
        with pytest.raises(TaskRevokedError, match="terminated"):
            long.get(timeout=1)
        assert tasks.add.delay(2, 2).get(timeout=30) == 4
        proc.signal(signal.SIGTERM)
        code, output = proc.wait()
    assert code == 0, output
    assert runs(marker) == 1  # killed, not redelivered


def test_revoked_while_no_worker_runs_is_never_run(urls, tmp_path):
    marker = tmp_path / "runs"
    doomed = tasks.mark.delay(str(marker), 1)
    revoke(doomed.id)
    kept = tasks.mark.delay(str(marker), 2)
    with worker(urls, "--pool", "solo") as proc:
        assert kept.get(timeout=30) == 2
        wait_for(lambda: AsyncResult(doomed.id).ready(), timeout=15)
        proc.signal(signal.SIGTERM)
        proc.wait()
    assert doomed.state == states.REVOKED
    assert marker.read_text().split() == ["2"]


def test_revoke_command_records_a_durable_revocation(urls, tmp_path):
    from io import StringIO

    from django.core.management import CommandError, call_command

    from django_taskq.control import get_control_store

    out = StringIO()
    call_command("taskq", "revoke", "id-1", "id-2", "--terminate", stdout=out)
    assert "2 task(s) revoked and terminated" in out.getvalue()
    assert get_control_store().revocations() == {"id-1": True, "id-2": True}
    with pytest.raises(CommandError):
        call_command("taskq", "revoke", "")
