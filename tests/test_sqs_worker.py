"""Real ``manage.py taskworker`` processes on sqs:// (moto's server, started by the tests):
results, a task longer than its lease, a killed worker, a connection cut under a running worker,
and a Celery (kombu) client on the same queues."""

from __future__ import annotations

import signal
import time

import pytest

from django_taskq import AsyncResult
from django_taskq.brokers import get_broker
from tests.sqsserver import unique_prefix
from tests.tcpproxy import TcpProxy
from tests.test_worker_process import WorkerProcess, runs, wait_for
from tests.testapp import tasks

pytestmark = [pytest.mark.own_server, pytest.mark.subprocess, pytest.mark.network_broker,
              pytest.mark.django_db(transaction=True)]


@pytest.fixture
def sqs(sqs_server, redis_url, settings):
    """(broker URL, result URL): queues of this test's own on the test server, results in
    Redis; configured here and for worker processes."""
    url = sqs_server.url(queue_name_prefix=unique_prefix(), wait_time_seconds=1)
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": url, "RESULT_BACKEND": redis_url}
    return url, redis_url


def executions(marker) -> list[int]:
    return sorted(int(n) for n in marker.read_text().split()) if marker.exists() else []


def test_worker_runs_tasks_keeps_long_ones_leased_and_survives_a_kill(sqs, tmp_path):
    broker_url, results = sqs
    summed = tasks.add.delay(20, 22)
    marker = tmp_path / "runs"
    long = tasks.record_and_sleep.delay(str(marker), 3.0)  # longer than the 2 s lease
    with WorkerProcess("default", "--pool", "prefork", "--concurrency", "2",
                       broker_url=broker_url, result_backend=results) as worker:
        assert summed.get(timeout=30) == 42
        assert long.get(timeout=30) == "slept"
        assert runs(marker) == 1  # the heartbeat kept it invisible: no second run
        killed = tasks.record_and_sleep.delay(str(marker), 1.0)
        wait_for(lambda: runs(marker) == 2)
        worker.proc.kill()  # SIGKILL mid-task: its message stays invisible until the lease ends
        worker.wait()
    assert killed.state == "PENDING"
    with WorkerProcess("default", "--pool", "solo", broker_url=broker_url,
                       result_backend=results) as second:
        assert killed.get(timeout=30) == "slept"
        assert runs(marker) == 3  # killed once, then run to completion
        second.signal(signal.SIGTERM)
        code, output = second.wait()
    assert code == 0, output
    assert get_broker().queue_counts(["default"])["default"].depth == 0


def test_worker_survives_a_cut_connection_without_loss(sqs, sqs_server, tmp_path):
    broker_url, results = sqs
    marker = tmp_path / "marks"
    tasks.mark.delay_many([(str(marker), n) for n in range(60)])
    with TcpProxy(sqs_server.port) as proxy, WorkerProcess(
            "default", "--pool", "threads", "--concurrency", "4",
            broker_url=proxy.url(broker_url), result_backend=results) as worker:
        wait_for(lambda: len(executions(marker)) >= 10)
        proxy.refuse()
        proxy.cut()  # every connection reset, new ones refused: SQS is gone for the worker
        time.sleep(1.5)
        proxy.forward()
        wait_for(lambda: len(set(executions(marker))) == 60, timeout=60)
        later = tasks.mark.delay(str(marker), 1000)  # and it did not stall
        assert later.get(timeout=30) == 1000
        worker.signal(signal.SIGTERM)
        code, output = worker.wait()
    assert code == 0, output
    assert "broker unavailable" in output  # it met the cut, and carried on
    done = executions(marker)
    assert set(done) == set(range(60)) | {1000}
    assert len(done) - len(set(done)) <= 8  # at least once: only ones caught by the cut rerun


def test_celery_client_and_taskq_share_the_queues(sqs, sqs_server):
    """A Celery producer's message (kombu's SQS transport) is read here; ours is read by kombu."""
    pytest.importorskip("celery")
    from celery import Celery

    broker_url, _ = sqs
    prefix = broker_url.split("queue_name_prefix=", 1)[1].split("&", 1)[0]
    app = Celery("peer", broker=sqs_server.url(), set_as_current=False)
    app.conf.broker_transport_options = {"queue_name_prefix": prefix, "region": "us-east-1",
                                         "wait_time_seconds": 1}
    sent = app.send_task("tests.testapp.tasks.add", (2, 3), queue="default")
    broker = get_broker()
    [delivery] = broker.reserve(["default"], max_messages=1, lease=10, worker="w", timeout=5)
    assert delivery.message_id == sent.id
    assert delivery.envelope.task_name == "tests.testapp.tasks.add"
    broker.ack(delivery)
    ours = tasks.add.delay(4, 5)
    with app.connection_for_read() as conn:
        queue = conn.SimpleQueue("default", no_ack=False)
        message = queue.get(timeout=10)
        assert message.headers["id"] == ours.id and message.headers["task"] == (
            "tests.testapp.tasks.add")
        assert message.decode()[0] == [4, 5]
        message.ack()
        queue.close()
    assert isinstance(ours, AsyncResult)
