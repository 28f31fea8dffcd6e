"""Wire compatibility with the real ``celery`` package, both ways, on Redis and on RabbitMQ
(tasks, and chains, links and chords built by either side's canvas).

Celery client → ``taskworker``: Celery's ``send_task`` reaches our worker and Celery's
``AsyncResult.get()`` reads what we store. Our ``delay()`` → a real ``celery worker``: it runs the
task and our ``AsyncResult.get()`` reads Celery's result.
"""

from __future__ import annotations

import time

import pytest
from django.utils import timezone

from django_taskq import AsyncResult, chord, states
from django_taskq.brokers import get_broker
from tests.celery_peer import make_app, worker_process
from tests.testapp import tasks

pytestmark = pytest.mark.parametrize("broker_kind", ["redis", "amqp"])


@pytest.fixture
def urls(configured, broker_kind, request, settings):
    """(broker, result backend) shared by Celery and django_taskq: results live in Redis (the
    result store both read) whichever broker carries the messages."""
    backend = configured if broker_kind == "redis" else request.getfixturevalue("redis_url")
    settings.TASKQ = {**settings.TASKQ, "RESULT_BACKEND": backend}
    return configured, backend


@pytest.fixture
def celery_client(urls):
    app = make_app(*urls)
    # The amqp fixture deletes queues between tests, while kombu remembers process-wide what
    # it declared: declare Celery's queues again, as a fresh Celery process would.
    with app.connection_for_write() as connection:
        for queue in app.amqp.queues.values():
            queue(connection.default_channel).declare()
    yield app
    app.close()


def run_until(worker, condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        worker.step()


def test_celery_client_task_runs_on_taskq_and_celery_reads_the_result(make_worker, celery_client):
    ok = celery_client.send_task("tests.testapp.tasks.add", args=(2, 3))
    failed = celery_client.send_task("tests.testapp.tasks.fail", args=("bad input",))
    worker = make_worker()
    run_until(worker, lambda: AsyncResult(failed.id).ready())
    assert ok.get(timeout=10) == 5
    with pytest.raises(ValueError, match="bad input"):
        failed.get(timeout=10)
    assert AsyncResult(ok.id).name == "tests.testapp.tasks.add"


def test_a_celery_chain_and_link_complete_on_taskq(make_worker, celery_client):
    """A chain and a link built by Celery's canvas: our worker sends each next step, and
    Celery's results (with their parents) read the outcome."""
    add = celery_client.tasks["tests.testapp.tasks.add"]
    chained = (add.s(1, 2) | add.s(10) | add.s(100)).apply_async()
    callback = add.s(5)
    callback.freeze()
    linked = add.apply_async((2, 2), link=callback)
    worker = make_worker()
    run_until(worker, lambda: AsyncResult(chained.id).ready()
              and AsyncResult(callback.id).ready())
    assert chained.get(timeout=10) == 113
    assert chained.parent.get(timeout=10) == 13 and chained.parent.parent.get(timeout=10) == 3
    assert linked.get(timeout=10) == 4
    assert celery_client.AsyncResult(callback.id).get(timeout=10) == 9
    starred = add.starmap([(1, 2), (3, 4)]).apply_async()  # Celery's celery.starmap message
    run_until(worker, lambda: AsyncResult(starred.id).ready())
    assert starred.get(timeout=10) == [3, 7]


def test_a_celery_chord_completes_on_taskq_and_celery_reads_it(make_worker, celery_client):
    """Celery's chord (header tasks counted in Celery's Redis keys), a chord inside a Celery
    chain, and a Celery chord whose header task fails: all complete on our worker."""
    from celery import chord as celery_chord
    from celery import group as celery_group

    add = celery_client.tasks["tests.testapp.tasks.add"]
    fail = celery_client.tasks["tests.testapp.tasks.fail"]
    tsum = celery_client.tasks["tests.testapp.tasks.tsum"]
    plain = celery_chord([add.s(i, i) for i in range(5)])(tsum.s())
    chained = (add.s(1, 1) | celery_group(add.s(10), add.s(20)) | tsum.s()).apply_async()
    failing = celery_chord([add.s(1, 1), fail.s("header")], tsum.s()).apply_async()
    worker = make_worker()
    run_until(worker, lambda: all(AsyncResult(r.id).ready() for r in (plain, chained, failing)))
    assert plain.get(timeout=10) == 20 and plain.parent.get(timeout=10) == [0, 2, 4, 6, 8]
    assert chained.get(timeout=10) == 34
    assert celery_client.AsyncResult(failing.id).state == states.FAILURE
    assert "Dependency" in str(celery_client.AsyncResult(failing.id).result)


def test_celery_priorities_mean_the_same_to_us(make_worker, celery_client):
    low = celery_client.send_task("tests.testapp.tasks.add", args=(0, 0), priority=0)
    high = celery_client.send_task("tests.testapp.tasks.add", args=(9, 9), priority=9)
    got: list = []
    deadline = time.monotonic() + 10
    while len(got) < 2 and time.monotonic() < deadline:
        got += get_broker().reserve(["default"], max_messages=2 - len(got), lease=30,
                                    worker="w", timeout=1)
    assert [d.message_id for d in got] == [high.id, low.id]


def test_celery_eta_message_waits_in_the_broker_not_in_worker_memory(make_worker, celery_client):
    sent = celery_client.send_task("tests.testapp.tasks.add", args=(1, 1), countdown=1.5)
    eta = timezone.now() + timezone.timedelta(seconds=1.4)
    worker = make_worker()
    for _ in range(3):
        worker.step()
    assert not worker.prefetched and not worker.running
    assert get_broker().size("default") == 1  # parked in the broker (delayed set, delay queue)
    assert not AsyncResult(sent.id).ready()
    run_until(worker, lambda: AsyncResult(sent.id).ready())
    assert sent.get(timeout=5) == 2
    assert AsyncResult(sent.id).date_done >= eta


@pytest.fixture
def celery_worker(urls):
    with worker_process(urls[0], urls[1]) as proc:
        yield proc


def test_taskq_delay_runs_on_a_real_celery_worker(celery_worker, urls):
    ok = tasks.add.delay(20, 22)
    failed = tasks.fail.delay("from celery")
    assert ok.get(timeout=60) == 42
    with pytest.raises(ValueError, match="from celery"):
        failed.get(timeout=30)
    assert AsyncResult(ok.id).state == states.SUCCESS
    assert celery_worker.poll() is None  # the Celery worker did not choke on our messages
    # A chain and a link built by our canvas: the Celery worker sends each next step.
    chained = (tasks.add.s(1, 2) | tasks.add.s(10) | tasks.add.s(100)).delay()
    callback = tasks.add.s(5)
    callback.freeze()
    linked = tasks.add.apply_async((2, 2), link=callback)
    assert chained.get(timeout=60) == 113
    assert chained.parent.get(timeout=30) == 13 and chained.parent.parent.get(timeout=30) == 3
    assert linked.get(timeout=30) == 4 and AsyncResult(callback.id).get(timeout=30) == 9
    # A chord built by our canvas: the Celery worker counts it in the same Redis keys.
    if urls[1].startswith("redis://"):
        chorded = chord([tasks.add.s(i, i) for i in range(4)], tasks.tsum.s()).delay()
        assert chorded.get(timeout=60) == 12 and chorded.parent.get(timeout=30) == [0, 2, 4, 6]
