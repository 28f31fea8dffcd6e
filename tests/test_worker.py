"""The worker loop on every broker: results, bad input, expiry, pools, shutdown."""

from __future__ import annotations

import base64
import re
import time
import uuid

import pytest

from django_taskq import AsyncResult, states
from django_taskq.brokers import get_broker
from django_taskq.exceptions import SerializationError
from django_taskq.message import Envelope
from tests.helpers import dead_letters
from tests.testapp import tasks


def drain(worker, rounds=20):
    for _ in range(rounds):
        worker.step()


def test_tasks_run_and_results_are_readable(make_worker):
    ok, bad, bound = tasks.add.delay(2, 3), tasks.fail.delay("nope"), tasks.whoami.delay()
    assert ok.state == states.PENDING and ok.known
    worker = make_worker()
    drain(worker)
    assert ok.get(timeout=5) == 5
    assert ok.successful() and ok.ready() and ok.date_done is not None
    assert bad.failed()
    with pytest.raises(ValueError, match="nope"):
        bad.get(timeout=5)
    assert isinstance(bad.get(propagate=False), ValueError)
    assert "raise ValueError(message)" in bad.traceback
    info = bound.get(timeout=5)
    assert info["id"] == bound.id and info["hostname"] == worker.options.hostname


def test_unknown_id_is_pending_but_not_known(configured):
    result = AsyncResult(str(uuid.uuid4()))
    assert result.state == states.PENDING
    assert not result.known


def test_result_that_cannot_be_encoded_is_a_clear_failure(make_worker):
    result = tasks.unserializable.delay()
    drain(make_worker())
    with pytest.raises(SerializationError, match="not JSON serializable"):
        result.get(timeout=5)


def test_ignore_result_stores_nothing(make_worker):
    result = tasks.noop.delay()
    drain(make_worker())
    assert get_broker().size("default") == 0
    assert not result.known


def test_expired_task_is_revoked_not_run(make_worker, tmp_path):
    marker = tmp_path / "ran"
    result = tasks.record_and_sleep.apply_async((str(marker), 0), expires=-1)
    drain(make_worker())
    assert result.state == states.REVOKED
    assert not marker.exists()


def _raw(task_name: str, body: bytes, content_type: str = "application/json") -> Envelope:
    task_id = str(uuid.uuid4())
    return Envelope(queue="default", body=body, content_type=content_type,
                    headers={"lang": "py", "task": task_name, "id": task_id})


@pytest.mark.parametrize("bad, reason", [
    (lambda: _raw("no.such.task", b'[[], {}, {}]'), "unknown task"),
    (lambda: _raw("tests.testapp.tasks.add", b"{not json"), "malformed message"),
    (lambda: _raw("tests.testapp.tasks.add", b'{"a": 1}'), "not [args, kwargs, embed]"),
    (lambda: _raw("tests.testapp.tasks.add", b"\x80\x04K\x01.", "application/x-python-serialize"),
     "Refusing pickle"),
    (lambda: _raw("tests.testapp.tasks.add", b'[[1, 2, 3], {}, {}]'), "arguments do not match"),
    (lambda: _raw("tests.testapp.tasks.add", b'[[1], {"z": 1}, {}]'), "arguments do not match"),
])
def test_bad_message_fails_clearly_is_dead_lettered_and_worker_goes_on(make_worker, bad, reason):
    broker = get_broker()
    poison = bad()
    broker.enqueue(poison)
    good = tasks.add.delay(1, 1)
    drain(make_worker())
    assert good.get(timeout=5) == 2
    failed = AsyncResult(poison.message_id)
    assert failed.state == states.FAILURE
    with pytest.raises(Exception, match=re.escape(reason)):
        failed.get(timeout=1)
    [(dead_id, dead_reason)] = dead_letters(broker)
    assert dead_id == poison.message_id and reason in dead_reason


def test_message_without_headers_is_dead_lettered(make_worker):
    broker = get_broker()
    broker.enqueue(Envelope(queue="default", body=b"[[], {}, {}]", headers={"lang": "py"}))
    drain(make_worker())
    [(_, reason)] = dead_letters(broker)
    assert "no 'task' header" in reason


def test_base64_body_from_a_redis_style_producer_is_accepted(make_worker):
    body = base64.b64encode(b'[[4, 5], {}, {}]')
    sent = Envelope(queue="default", body=body, content_encoding="base64",
                    headers={"lang": "py", "task": "tests.testapp.tasks.add",
                             "id": str(uuid.uuid4())})
    get_broker().enqueue(sent)
    drain(make_worker())
    assert AsyncResult(sent.message_id).get(timeout=5) == 9


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_pools_run_tasks(make_worker, pool):
    results = tasks.add.delay_many([(i, i) for i in range(6)])
    worker = make_worker(pool=pool, concurrency=2)
    worker.pool.start()
    try:
        for _ in range(200):
            worker.step()
            if all(r.ready() for r in results):
                break
    finally:
        worker.pool.stop()
    assert [r.get(timeout=5) for r in results] == [0, 2, 4, 6, 8, 10]


@pytest.mark.parametrize("broker_kind", ["memory", "postgres"])
def test_prefork_child_death_requeues_then_dead_letters(make_worker, tmp_path, settings):
    settings.TASKQ = {**settings.TASKQ, "MAX_DELIVERIES": 2}  # the broker is built with it
    marker = tmp_path / "runs"
    result = tasks.record_and_sleep.delay(str(marker), 60)
    worker = make_worker(pool="prefork", concurrency=1)
    worker.pool.start()
    try:
        for attempt in (1, 2):  # two deliveries, each child killed while running it
            worker._fill()
            worker._dispatch()
            while not marker.exists() or len(marker.read_text().split()) < attempt:
                time.sleep(0.01)
            for child in worker.pool._children:
                child.process.kill()
            for _ in range(50):
                worker._collect(0.1)
                if not worker.running:
                    break
    finally:
        worker.pool.stop()
    assert result.state == states.FAILURE
    assert "worker lost" in str(result.result)
    [(_, reason)] = dead_letters(get_broker())
    assert "worker lost" in reason and "died 2 times" in reason


def test_warm_stop_releases_prefetched_messages(make_worker):
    results = tasks.add.delay_many([(1, 1)] * 5)
    worker = make_worker(prefetch_multiplier=5)
    worker._fill()
    assert len(worker.prefetched) == 5
    worker.request_stop()
    worker.shutdown()
    broker = get_broker()
    assert broker.size("default") == 5
    again = broker.reserve(["default"], max_messages=10, lease=5, worker="next")
    assert {d.attempts for d in again} == {1}  # released: the attempt was given back
    assert all(r.state == states.PENDING for r in results)


def test_run_until_empty_drains_and_returns(make_worker):
    results = tasks.add.delay_many([(i, 1) for i in range(10)])
    make_worker(prefetch_multiplier=3).run(until_empty=True)
    assert [r.get(timeout=1) for r in results] == list(range(1, 11))
