"""Redis going away under a running worker and a producer: reconnect, lose nothing, never hang."""

from __future__ import annotations

import signal
import socket
import threading
import time

import pytest

from django_taskq import AsyncResult
from django_taskq.brokers import get_broker
from django_taskq.exceptions import BrokerConnectionError
from tests.redisserver import RedisServer
from tests.test_worker_process import WorkerProcess, wait_for
from tests.testapp import tasks

pytestmark = [pytest.mark.subprocess,
              pytest.mark.django_db(transaction=True, databases="__all__")]


@pytest.fixture
def private_redis(tmp_path):
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.kill()


def executions(marker) -> list[int]:
    return sorted(int(n) for n in marker.read_text().split()) if marker.exists() else []


def test_worker_survives_a_redis_restart_without_loss_or_stall(private_redis, settings, tmp_path):
    url = private_redis.url
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": url, "RESULT_BACKEND": url}
    marker = tmp_path / "runs.txt"
    tasks.mark.delay_many([(str(marker), n) for n in range(300)])
    with WorkerProcess("default", "--prefetch-multiplier", "10", broker_url=url,
                       result_backend=url) as worker:
        wait_for(lambda: len(executions(marker)) >= 50)
        private_redis.kill()
        time.sleep(1.0)  # the worker meets a dead server for a while
        private_redis.start()
        wait_for(lambda: len(set(executions(marker))) == 300, timeout=60)
        # Messages sent after the restart are taken too: the worker did not stall.
        later = tasks.mark.delay(str(marker), 1000)
        assert later.get(timeout=30) == 1000
        worker.signal(signal.SIGTERM)
        code, output = worker.wait()
    assert code == 0, output
    assert "broker unavailable" in output  # it did meet the dead server, and carried on
    runs = executions(marker)
    assert set(runs) == set(range(300)) | {1000}
    # At least once: only a task caught in flight by the kill may have run twice.
    assert len(runs) - len(set(runs)) <= 10


def test_producer_gets_a_clear_error_at_once_when_redis_is_down(private_redis, settings):
    private_redis.kill()
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": private_redis.url,
                      "RESULT_BACKEND": "db://default"}
    started = time.monotonic()
    with pytest.raises(BrokerConnectionError, match="Redis unreachable"):
        tasks.add.delay(1, 2)
    assert time.monotonic() - started < 15


def test_a_server_that_stops_answering_is_an_error_within_the_deadline(settings):
    """A peer that accepts the connection and then says nothing (a hung server, a black hole)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(listener.accept()[0]), daemon=True).start()
    port = listener.getsockname()[1]
    settings.TASKQ = {**settings.TASKQ,
                      "BROKER_URL": f"redis://127.0.0.1:{port}/0?socket_timeout=1",
                      "RESULT_BACKEND": "db://default"}
    started = time.monotonic()
    try:
        with pytest.raises(BrokerConnectionError):
            tasks.add.delay(1, 2)
        assert time.monotonic() - started < 15
    finally:
        listener.close()
        for conn in held:
            conn.close()


def test_result_wait_sees_a_result_stored_across_a_restart(private_redis, settings):
    url = private_redis.url
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": url, "RESULT_BACKEND": url}
    sent = tasks.add.delay(2, 2)
    private_redis.kill()
    with pytest.raises(BrokerConnectionError):
        AsyncResult(sent.id).get(timeout=2)
    private_redis.start()
    assert AsyncResult(sent.id).state == "PENDING"  # the PENDING record survived (AOF)


def test_message_is_sent_even_when_the_pending_record_cannot_be(private_redis, redis_url,
                                                                 settings, caplog):
    """The message goes first; a result store that is down only loses the PENDING marker (and
    says so) — raising would make the caller send the task twice."""
    private_redis.kill()
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": redis_url,
                      "RESULT_BACKEND": private_redis.url}
    sent = tasks.add.delay(1, 2)
    assert "could not record them as PENDING" in caplog.text
    [delivery] = get_broker().reserve(["default"], max_messages=5, lease=30, worker="w")
    assert delivery.message_id == sent.id
