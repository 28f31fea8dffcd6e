"""rpc:// results on RabbitMQ: a worker replies to the sender's queue, as Celery's RPC backend.

Runs our worker in this process (stepped, or in a thread for a Celery client that blocks), a real
``celery worker`` subprocess, and Celery clients in process. Queues are this module's own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.utils import timezone

from django_taskq import AsyncResult, chord, group, send_task, states
from django_taskq.exceptions import (
    BrokerConnectionError,
    ConfigurationError,
    ResultBackendConnectionError,
)
from django_taskq.outcome import Outcome
from django_taskq.results import get_backend
from django_taskq.results.rpc import RpcResultBackend
from tests import services
from tests.conftest import require_service
from tests.helpers import drain
from tests.rpc_loopback import loopback_backend
from tests.testapp.feature_tasks import retry_until
from tests.testapp.tasks import add, fail

pytestmark = [pytest.mark.own_server, pytest.mark.subprocess, pytest.mark.network_broker,
              pytest.mark.django_db(transaction=True)]

QUEUE, CELERY_QUEUE = "rpc_t_ours", "rpc_t_celery"


@pytest.fixture(scope="module")
def rabbit_url():
    url = require_service(services.AMQP_URL, "RabbitMQ")
    yield url
    from tests.conftest import delete_amqp_queues

    delete_amqp_queues(url, (QUEUE, CELERY_QUEUE))


@pytest.fixture
def rpc(settings, rabbit_url):
    """TASKQ on RabbitMQ with rpc:// results; the backend of this process."""
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": rabbit_url, "RESULT_BACKEND": "rpc://"}
    backend = get_backend()
    assert isinstance(backend, RpcResultBackend)
    return backend


@pytest.fixture
def worker(rpc):
    from django_taskq.worker import Worker, WorkerOptions

    made = Worker(WorkerOptions.from_settings(pool="solo", queues=(QUEUE,)))
    yield made
    made.heartbeat.stop()


def test_success_failure_and_the_message_properties(rpc, worker):
    from django_taskq import signals

    sent = []

    def spy(sender=None, properties=None, **kwargs):
        sent.append(dict(properties))

    signals.before_task_publish.connect(spy)
    try:
        ok = add.apply_async((2, 3), queue=QUEUE)
        bad = fail.apply_async(("nope",), queue=QUEUE)
        mine = add.apply_async((1, 1), queue=QUEUE, reply_to="chosen")
    finally:
        signals.before_task_publish.disconnect(spy)
    assert (sent[0]["reply_to"], sent[0]["correlation_id"]) == (rpc.oid, ok.id)
    assert sent[2]["reply_to"] == "chosen"  # the caller's choice is kept
    assert mine.state == states.PENDING
    assert ok.state == states.PENDING  # sent here, no reply yet
    drain(worker, bad)
    assert ok.get(timeout=5) == 5
    with pytest.raises(ValueError, match="nope"):
        bad.get(timeout=5)
    assert bad.state == states.FAILURE and "ValueError: nope" in bad.traceback


def test_retries_are_reported_then_the_result(rpc, worker, tmp_path):
    result = retry_until.apply_async((str(tmp_path / "runs"), 3), queue=QUEUE)
    seen = []
    deadline = time.monotonic() + 20
    while not result.ready():
        assert time.monotonic() < deadline
        worker.step()
        seen.append(result.state)
    assert states.RETRY in seen and seen[-1] == states.SUCCESS
    assert result.get(timeout=5) == {"run": 3, "retries": 2}


def test_a_chains_last_step_replies_to_the_caller(rpc, worker):
    from django_taskq import chain

    result = chain(add.s(1, 2), add.s(3), add.s(4)).apply_async(queue=QUEUE)
    drain(worker, result)
    assert result.get(timeout=5) == 10 and result.parent.get(timeout=5) == 6


def test_started_and_custom_states_reach_the_caller(rpc, worker, tmp_path):
    """track_started's STARTED and update_state's PROGRESS are replies too, while it runs."""
    from tests.testapp.feature_tasks import progress, started_then_wait

    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    try:
        for sig, state in ((started_then_wait, states.STARTED), (progress, "PROGRESS")):
            flag = tmp_path / state
            result = sig.apply_async((str(flag),), queue=QUEUE)
            deadline = time.monotonic() + 10
            while result.state != state:
                assert time.monotonic() < deadline, result.state
                time.sleep(0.02)
            if state == "PROGRESS":
                assert result.info == {"done": 1, "total": 2}
            flag.touch()
            assert result.get(timeout=10) in ("done", "finished")
    finally:
        worker.request_stop()
        runner.join(10)


def test_a_groups_members_reply_to_the_caller(rpc, worker):
    result = group(add.s(i, i) for i in range(5)).apply_async(queue=QUEUE)
    drain(worker, result)
    assert result.get(timeout=5) == [0, 2, 4, 6, 8]


def test_many_results_to_one_client(rpc, worker):
    results = [add.apply_async((i, i), queue=QUEUE) for i in range(300)]
    deadline = time.monotonic() + 30
    while not all(r.ready() for r in results[-5:]):
        assert time.monotonic() < deadline
        worker.step()
    drain(worker, results[0])
    assert [r.get(timeout=10) for r in results] == [2 * i for i in range(300)]


def test_each_client_gets_only_its_own_results(rpc, worker, rabbit_url):
    """Two callers (two processes: two reply queues): each sees its tasks, the other's stay
    PENDING for it, as with Celery."""
    other = loopback_backend(rabbit_url)
    try:
        mine = add.apply_async((1, 1), queue=QUEUE)
        theirs = add.apply_async((2, 2), queue=QUEUE, reply_to=other.reply_address())
        drain(worker, mine)
        for _ in range(3):
            worker.step()
        assert AsyncResult(theirs.id, backend=other).get(timeout=5) == 4
        assert AsyncResult(mine.id, backend=other).state == states.PENDING
        assert AsyncResult(theirs.id, backend=rpc).state == states.PENDING
        assert mine.get(timeout=5) == 2
    finally:
        other.close()


def test_a_wait_reconnects_when_the_reply_connection_is_lost(rpc, worker):
    import socket

    result = add.apply_async((4, 4), queue=QUEUE)
    rpc.replies._conn.transport.sock.shutdown(socket.SHUT_RDWR)  # the server closes it too

    def later():
        time.sleep(0.5)  # after the wait reopened (and declared) the queue
        drain(worker, result)

    runner = threading.Thread(target=later, daemon=True)
    runner.start()
    assert AsyncResult(result.id, backend=rpc).get(timeout=10) == 8
    runner.join(10)


def test_reply_queue_as_celery_declares_it_and_goes_with_the_client(rpc, rabbit_url):
    from amqp.exceptions import NotFound

    from django_taskq.brokers.amqp_options import connect, parse_options
    from django_taskq.service_url import parse

    assert rpc.replies.arguments() == {"x-expires": 86400 * 1000}
    oid = rpc.reply_address()
    conn = connect(parse_options(parse(rabbit_url, setting="BROKER_URL")), heartbeat=0)
    try:
        channel = conn.channel()
        channel.queue_declare(oid, passive=True)  # there while the client is
        rpc.close()
        time.sleep(0.2)
        with pytest.raises(NotFound):
            channel.queue_declare(oid, passive=True)
    finally:
        conn.collect()


def test_result_message_is_celerys(rpc, rabbit_url, settings):
    """What a worker publishes: default exchange, correlation_id, Celery's meta body,
    transient unless RESULT_PERSISTENT."""
    from django_taskq.brokers.amqp_options import connect, parse_options
    from django_taskq.service_url import parse

    conn = connect(parse_options(parse(rabbit_url, setting="BROKER_URL")), heartbeat=0)
    try:
        channel = conn.channel()
        channel.queue_declare("rpc_t_probe", auto_delete=True)
        for persistent, mode in ((False, 1), (True, 2)):
            backend = RpcResultBackend(rpc.options, persistent=persistent)
            backend.store(Outcome(task_id="tid", task_name="t", state=states.SUCCESS,
                                  payload=b"7", reply_to="rpc_t_probe", correlation_id="tid",
                                  date_done=timezone.now()))
            backend.close()
            message = channel.basic_get("rpc_t_probe", no_ack=True)
            assert message.properties["correlation_id"] == "tid"
            assert message.properties["delivery_mode"] == mode
            assert message.properties["content_type"] == "application/json"
            import json

            body = json.loads(message.body)
            assert {k: body[k] for k in ("task_id", "status", "result", "children")} == \
                {"task_id": "tid", "status": "SUCCESS", "result": 7, "children": []}
            assert body["date_done"] and body["traceback"] is None
        channel.queue_delete("rpc_t_probe")
    finally:
        conn.collect()


def test_a_taskworker_process_with_prefork_children_replies(rpc, rabbit_url):
    """``manage.py taskworker --pool prefork``: each child publishes (STARTED from the child,
    results from the parent) to this process's reply queue."""
    from tests.test_worker_process import WorkerProcess

    with WorkerProcess("default", "--pool", "prefork", "--concurrency", "2", "-Q", QUEUE,
                       broker_url=rabbit_url, result_backend="rpc://") as proc:
        results = [add.apply_async((i, 1), queue=QUEUE) for i in range(40)]
        failed = fail.apply_async(("in a child",), queue=QUEUE)
        try:
            assert [r.get(timeout=30) for r in results] == [i + 1 for i in range(40)]
        except Exception:
            print(proc.output())
            raise
        with pytest.raises(ValueError, match="in a child"):
            failed.get(timeout=10)


# -- interop with Celery ------------------------------------------------------------------------


def test_celery_client_with_rpc_gets_our_workers_result(rpc, worker, rabbit_url):
    from tests.celery_peer import make_app

    app = make_app(rabbit_url, "rpc://")
    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    try:
        assert app.send_task("tests.testapp.tasks.add", (20, 22), queue=QUEUE).get(
            timeout=15) == 42
        failed = app.send_task("tests.testapp.tasks.fail", ("celery asked",), queue=QUEUE)
        with pytest.raises(Exception, match="celery asked") as info:
            failed.get(timeout=15)
        assert type(info.value).__name__ == "ValueError"
        from celery import group as celery_group

        members = celery_group(app.signature("tests.testapp.tasks.add", (i, i), queue=QUEUE)
                               for i in range(3))
        assert members.apply_async().get(timeout=15) == [0, 2, 4]
    finally:
        worker.request_stop()
        runner.join(10)
        app.close()


def test_our_client_gets_a_celery_workers_rpc_result(rpc, rabbit_url):
    root = Path(__file__).resolve().parent.parent
    env = dict(os.environ, PYTHONPATH=str(root), CELERY_PEER_BROKER=rabbit_url,
               CELERY_PEER_BACKEND="rpc://")
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tests.celery_peer", "worker", "--pool", "solo",
         "-Q", CELERY_QUEUE, "--without-gossip", "--without-mingle", "--without-heartbeat",
         "--loglevel", "WARNING"], cwd=root, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    try:
        ok = send_task("tests.testapp.tasks.add", (5, 6), queue=CELERY_QUEUE)
        bad = send_task("tests.testapp.tasks.fail", ("from celery",), queue=CELERY_QUEUE)
        assert ok.get(timeout=30) == 11
        with pytest.raises(ValueError, match="from celery"):
            bad.get(timeout=10)
    finally:
        proc.kill()
        proc.communicate()


# -- what rpc:// cannot do, and bad settings -----------------------------------------------------


def test_chords_and_saved_groups_are_refused_naming_a_store_that_can(rpc):
    with pytest.raises(NotImplementedError, match="cannot run chords.*redis://"):
        chord([add.s(1, 1)], add.s(1)).apply_async(queue=QUEUE)
    with pytest.raises(NotImplementedError, match="cannot save groups.*redis://"):
        group(add.s(1, 1)).apply_async(queue=QUEUE).save()


def test_rpc_needs_an_amqp_broker(settings, redis_url):
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": redis_url, "RESULT_BACKEND": "rpc://"}
    with pytest.raises(ConfigurationError, match=r"AMQP messages.*amqp://.*redis://") as info:
        get_backend()
    assert "redis://127.0.0.1" in str(info.value)


def test_system_check_reports_rpc_without_rabbitmq(settings, redis_url):
    from django.core import checks

    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": redis_url, "RESULT_BACKEND": "rpc://"}
    [error] = [e for e in checks.run_checks() if e.id == "django_taskq.E004"]
    assert "AMQP messages" in error.msg and "amqp://" in error.msg


def test_rpc_takes_no_server(settings, rabbit_url):
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": rabbit_url,
                      "RESULT_BACKEND": "rpc://user:secret@elsewhere/"}
    with pytest.raises(ConfigurationError, match="takes no server") as info:
        get_backend()
    assert "secret" not in str(info.value)


def test_unreachable_rabbitmq_is_a_clear_error(settings):
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": "amqp://guest:pw@127.0.0.1:1//",
                      "RESULT_BACKEND": "rpc://"}
    with pytest.raises(BrokerConnectionError, match="RabbitMQ unreachable") as info:
        add.delay(1, 2)  # the reply queue is declared on the broker: a send's failure
    assert "pw" not in str(info.value)
    with pytest.raises(ResultBackendConnectionError, match="RabbitMQ unreachable") as info:
        AsyncResult("some-id").ready()
    assert "pw" not in str(info.value)
