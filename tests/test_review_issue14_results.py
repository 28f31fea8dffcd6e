"""Review of issue 14's result stores (cache://, rpc://, plugged-in stores): cases a user coming
from Celery would meet, each a bug found in review."""

from __future__ import annotations

import json
import time

import pytest
from django.core.cache import caches

from django_taskq import send_task, states
from django_taskq.exceptions import TaskRevokedError, TimeLimitExceeded
from django_taskq.outcome import Outcome
from django_taskq.results import get_backend
from tests import services
from tests.conftest import require_service
from tests.memcachedserver import memcached, memcached_caches, redis_caches
from tests.plugin_backend import SQLiteFileBackend
from tests.testapp.tasks import add, record_and_sleep

pytestmark = [pytest.mark.own_server, pytest.mark.django_db(transaction=True)]
RPC_QUEUE, IDLE_QUEUE = "review14_rpc", "review14_idle"


class NarrowBackend(SQLiteFileBackend):
    """A plugged store whose constructor takes fewer options than every store is given."""

    def __init__(self, url, accept=("json",), expires=60.0):
        super().__init__(url, accept=accept, expires=expires)


@pytest.fixture(params=["memcached", "redis"])
def cache_store(request, settings):
    if request.param == "memcached":
        settings.CACHES = memcached_caches(memcached().location)
    else:
        settings.CACHES = redis_caches(request.getfixturevalue("redis_url"))
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": "memory://",
                      "RESULT_BACKEND": "cache://results"}
    yield get_backend()
    caches.close_all()


def done(task_id, value):
    return Outcome(task_id, "t", states.SUCCESS, payload=json.dumps(value).encode())


def test_a_chord_whose_counter_was_evicted_still_completes(cache_store):
    cache_store.set_chord_size("g1", 2)
    assert cache_store.add_chord_part("g1", 0, done("a", 1)) is None
    cache_store.cache.delete(cache_store.chord_key("g1", ".c"))  # evicted by memcached's LRU
    parts = cache_store.add_chord_part("g1", 1, done("b", 2))
    assert parts is not None and [p.value for p in parts] == [1, 2]


def test_a_chord_whose_size_was_evicted_is_logged_not_silent(cache_store, caplog):
    cache_store.set_chord_size("g2", 2)
    cache_store.cache.delete(cache_store.chord_key("g2", ".s"))  # evicted
    assert cache_store.add_chord_part("g2", 0, done("a", 1)) is None
    assert "chord g2 cannot complete" in caplog.text and "evicted" in caplog.text
    caplog.clear()
    cache_store.set_chord_size("g3", 1)  # a late duplicate after the body was sent: quiet
    assert cache_store.add_chord_part("g3", 0, done("c", 1)) is not None
    cache_store.chord_sent("g3")
    assert cache_store.add_chord_part("g3", 0, done("c", 1)) is None
    assert "cannot complete" not in caplog.text


# -- rpc://: every FAILURE/REVOKED the worker stores reaches the caller, as Celery's ---------------


@pytest.fixture(scope="module")
def rabbit_url():
    url = require_service(services.AMQP_URL, "RabbitMQ")
    yield url
    from tests.conftest import delete_amqp_queues

    delete_amqp_queues(url, (RPC_QUEUE, IDLE_QUEUE))


@pytest.fixture
def rpc_worker(settings, rabbit_url):
    from django_taskq.worker import Worker, WorkerOptions

    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": rabbit_url, "RESULT_BACKEND": "rpc://",
                      "DEFAULT_QUEUE": RPC_QUEUE}  # where a replacement's steps go
    made = Worker(WorkerOptions.from_settings(pool="solo", queues=(RPC_QUEUE,)))
    yield made
    made.heartbeat.stop()


def steps(worker, count=4):
    for _ in range(count):
        worker.step()


@pytest.mark.network_broker
def test_rpc_an_expired_task_is_revoked_for_its_caller(rpc_worker):
    result = add.apply_async((1, 1), queue=RPC_QUEUE, expires=0.01)
    time.sleep(0.05)
    steps(rpc_worker)
    with pytest.raises(TaskRevokedError):
        result.get(timeout=3)


@pytest.mark.network_broker
def test_rpc_a_task_stopped_at_its_hard_time_limit_fails_for_its_caller(rpc_worker, tmp_path):
    result = record_and_sleep.apply_async((str(tmp_path / "ran"), 3), queue=RPC_QUEUE,
                                          time_limit=0.3)
    steps(rpc_worker)
    with pytest.raises(TimeLimitExceeded):
        result.get(timeout=3)


@pytest.mark.network_broker
def test_rpc_an_unknown_task_fails_for_its_caller(rpc_worker):
    result = send_task("review14.no_such_task", (1,), queue=RPC_QUEUE)
    steps(rpc_worker)
    with pytest.raises(Exception, match="review14.no_such_task"):
        result.get(timeout=3)


@pytest.mark.network_broker
def test_rpc_sending_is_not_held_up_by_a_thread_waiting_for_replies(rpc_worker):
    """A thread blocked in get() reads the reply connection in turns of 0.25 s under its lock;
    each send asked for the reply queue under that same lock, so waited for the turn."""
    import threading

    from django_taskq.exceptions import TimeoutError as TaskqTimeout

    waiting = add.apply_async((1, 1), queue=RPC_QUEUE)  # nothing runs it

    def wait():
        with pytest.raises(TaskqTimeout):
            waiting.get(timeout=1.2)

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.2)
    start = time.monotonic()
    for i in range(5):
        add.apply_async((i, i), queue=RPC_QUEUE)
    took = time.monotonic() - start
    waiter.join(5)
    assert took < 0.4, f"5 sends took {took:.2f} s"


# -- plugged-in stores -----------------------------------------------------------------------------


def test_a_plugged_store_whose_constructor_refuses_the_common_options_is_a_clear_error(settings):
    from django_taskq.checks import check_result_stores
    from django_taskq.exceptions import ConfigurationError
    from django_taskq.results import _common, backend_from_url, plugins

    assert set(plugins.COMMON) == set(_common())  # what the check binds is what is given
    settings.TASKQ = {**settings.TASKQ, "RESULT_BACKEND_SCHEMES": {
        "narrow": f"{__name__}.NarrowBackend"}}
    with pytest.raises(ConfigurationError, match=r"RESULT_BACKEND_SCHEMES'\]\['narrow'\].*"
                       r"cls\(url, \*\*common\).*'serializer'.*super\(\).__init__\(\*\*common\)"):
        backend_from_url("narrow:///tmp/x.sqlite3")
    [message] = check_result_stores()
    assert message.id == "django_taskq.E020" and "cls(url, **common)" in message.msg


def test_celerys_result_backend_of_a_plugged_scheme_is_used():
    """A Celery project keeps CELERY_RESULT_BACKEND = 'sqlitefile://...' once the scheme is
    plugged in; without the plug, the warning says how to plug it."""
    from django.test import override_settings

    from django_taskq.checks import check_celery_settings
    from django_taskq.conf import get_settings

    table = {"sqlitefile": "tests.plugin_backend.SQLiteFileBackend"}
    with override_settings(TASKQ={"RESULT_BACKEND_SCHEMES": table},
                           CELERY_RESULT_BACKEND="sqlitefile:///tmp/r.sqlite3"):
        assert get_settings().RESULT_BACKEND == "sqlitefile:///tmp/r.sqlite3"
        assert check_celery_settings() == []
    with override_settings(TASKQ={}, CELERY_RESULT_BACKEND="sqlitefile:///tmp/r.sqlite3"):
        [message] = check_celery_settings()
        assert "RESULT_BACKEND_SCHEMES'] = {'sqlitefile'" in message.hint


def test_celerys_bare_rpc_alias_is_rpc():
    from django.test import override_settings

    from django_taskq.conf import get_settings

    with override_settings(TASKQ={}, CELERY_RESULT_BACKEND="rpc"):  # Celery(backend="rpc")
        assert get_settings().RESULT_BACKEND == "rpc://"


def test_rpc_sending_while_rabbitmq_refuses_is_a_broker_error_tried_again(settings):
    """The reply queue is declared on the broker's RabbitMQ before the send: its failure is the
    send's (BrokerConnectionError, as without rpc://), tried again per the retry policy."""
    from django_taskq.exceptions import BrokerConnectionError

    settings.TASKQ = {**settings.TASKQ, "RESULT_BACKEND": "rpc://",
                      "BROKER_URL": "amqp://guest:guest@127.0.0.1:1//"}
    start = time.monotonic()
    with pytest.raises(BrokerConnectionError, match="reply queue cannot be declared"):
        add.apply_async((1, 1), queue=RPC_QUEUE, retry_policy={
            "max_retries": 2, "interval_start": 0.15, "interval_step": 0})
    assert time.monotonic() - start >= 0.3  # tried three times


def test_the_plugin_api_module_has_the_errors_a_store_raises():
    """docs/result-backends.md: 'Import everything from django_taskq.results.api'."""
    from django_taskq import exceptions
    from django_taskq.results import api

    for name in ("ConfigurationError", "ResultBackendError", "ResultBackendConnectionError"):
        assert getattr(api, name) is getattr(exceptions, name) and name in api.__all__


@pytest.mark.network_broker
def test_rpc_a_replaced_task_replies_with_its_replacements_result(rpc_worker):
    from tests.testapp.canvas_tasks import replaced_by_chain

    result = replaced_by_chain.apply_async((3,), queue=RPC_QUEUE)
    steps(rpc_worker, 6)
    assert result.get(timeout=3) == 40  # (3 + 1) * 10


@pytest.mark.network_broker
def test_rpc_replies_nobody_waits_for_are_read_as_the_process_sends(rpc_worker):
    """A process that sends and never calls get() (beat, a web view) consumes its reply queue,
    so RabbitMQ would keep every reply for the process's lifetime: each send buffers them."""
    backend = get_backend()
    results = [add.apply_async((i, i), queue=RPC_QUEUE) for i in range(20)]
    deadline = time.monotonic() + 8
    while not all(backend.replies.latest(r.id)["status"] == states.SUCCESS for r in results):
        assert time.monotonic() < deadline, [backend.replies.latest(r.id)["status"] for r in results]
        rpc_worker.step()
        time.sleep(0.02)
        add.apply_async((0, 0), queue=IDLE_QUEUE)  # a send; nothing here reads the replies


@pytest.mark.network_broker
def test_rpc_a_reply_in_a_serializer_not_accepted_is_raised_not_waited_for(rpc_worker):
    """A Celery worker with result_serializer='pickle' replies in pickle: get() raises
    ContentDisallowed, as Celery's does, instead of waiting out its timeout."""
    import pickle

    from amqp import Message

    from django_taskq.brokers.amqp_options import connect
    from django_taskq.exceptions import ContentDisallowed

    backend = get_backend()
    result = add.apply_async((1, 1), queue=IDLE_QUEUE)
    body = pickle.dumps({"status": "SUCCESS", "result": 2, "task_id": result.id})
    conn = connect(backend.options, heartbeat=0)
    try:
        conn.channel().basic_publish(
            Message(body, content_type="application/x-python-serialize",
                    content_encoding="binary", correlation_id=result.id),
            exchange="", routing_key=backend.oid)
    finally:
        conn.collect()
    start = time.monotonic()
    with pytest.raises(ContentDisallowed):
        result.get(timeout=5)
    assert time.monotonic() - start < 2
