"""The result backends (memory and database on every engine) and AsyncResult."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from django_taskq import AsyncResult, states
from django_taskq.exceptions import RemoteTaskError, TimeoutError
from django_taskq.outcome import Outcome, failure
from django_taskq.results.database import DatabaseResultBackend
from django_taskq.results.memory import MemoryResultBackend
from django_taskq.results.redis import RedisResultBackend
from django_taskq.service_url import parse
from tests.conftest import require_alias


@pytest.fixture(params=["memory", "sqlite", "postgres", "mariadb", "redis"])
def backend(request):
    if request.param == "memory":
        return MemoryResultBackend()
    if request.param == "redis":
        made = RedisResultBackend(parse(request.getfixturevalue("redis_url"),
                                        setting="RESULT_BACKEND"))
        request.addfinalizer(made.close)
        return made
    alias = require_alias(request.param)
    request.getfixturevalue("transactional_db")
    return DatabaseResultBackend(alias=alias)


# Backends that delete expired results by date in cleanup(); Redis uses key TTLs instead.
BY_DATE = pytest.mark.parametrize("backend", ["memory", "sqlite", "postgres", "mariadb"],
                                  indirect=True)

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


def success(task_id: str, payload: bytes = b'{"a":1}') -> Outcome:
    now = timezone.now()
    return Outcome(task_id=task_id, task_name="t", state=states.SUCCESS, payload=payload,
                   date_started=now, date_done=now, worker="w1")


def test_pending_then_success(backend):
    backend.mark_pending([("id1", "t")])
    assert backend.get("id1").state == states.PENDING
    backend.store(success("id1"))
    meta = backend.get("id1")
    assert (meta.state, meta.result, meta.worker) == (states.SUCCESS, {"a": 1}, "w1")
    backend.mark_pending([("id1", "t")])  # a late PENDING never overwrites a result
    assert backend.get("id1").state == states.SUCCESS


def test_unknown_id_is_none(backend):
    assert backend.get("never") is None


def test_batch_store_keeps_the_last_outcome_per_id(backend):
    backend.store_many([success("a", b"1"), success("b", b"2"), success("a", b"3")])
    assert backend.get("a").result == 3 and backend.get("b").result == 2


def test_failure_round_trips_as_exception(backend):
    backend.store(failure("f", "t", KeyError("k"), traceback="Traceback ..."))
    result = AsyncResult("f", backend=backend)
    assert result.failed()
    assert isinstance(result.result, KeyError)
    assert result.traceback == "Traceback ..."


def test_custom_exception_types_are_not_imported(backend):
    class Custom(Exception):
        pass

    backend.store(failure("c", "t", Custom("no import"), traceback="tb"))
    with pytest.raises(RemoteTaskError, match="Custom: no import") as info:
        AsyncResult("c", backend=backend).get(timeout=1)
    assert info.value.exc_type == "Custom"
    assert info.value.remote_traceback == "tb"


def test_binary_serializer_payload_is_stored(backend):
    import msgpack

    backend.accept = ("json", "msgpack")
    outcome = Outcome(task_id="m", task_name="t", state=states.SUCCESS,
                      payload=msgpack.packb({"x": [1, 2]}), content_type="application/x-msgpack",
                      content_encoding="binary", date_done=timezone.now())
    backend.store(outcome)
    assert backend.get("m").result == {"x": [1, 2]}


@BY_DATE
def test_forget_and_cleanup(backend):
    backend.store(success("old"))
    backend.store(success("new"))
    backend.forget("new")
    assert backend.get("new") is None
    backend.expires = -1  # everything done is older than "now + 1s"
    assert backend.cleanup() >= 1
    assert backend.get("old") is None


def test_get_times_out_with_a_clear_error(backend):
    backend.mark_pending([("slow", "t")])
    with pytest.raises(TimeoutError, match="did not finish within 0.1 seconds"):
        AsyncResult("slow", backend=backend).get(timeout=0.1)


@BY_DATE
def test_expired_results_are_removed_by_date(backend):
    old = success("x")
    backend.store(Outcome(**{**{f: getattr(old, f) for f in old.__slots__},
                             "date_done": timezone.now() - timedelta(days=2)}))
    backend.expires = 86400
    assert backend.cleanup() == 1


def test_redis_forget_deletes_and_results_expire_by_ttl(redis_url):
    import redis

    backend = RedisResultBackend(parse(redis_url, setting="RESULT_BACKEND"), expires=120)
    backend.mark_pending([("p", "t")])
    backend.store(success("done"))
    client = redis.Redis.from_url(redis_url)
    assert 0 < client.ttl("celery-task-meta-p") <= 120
    assert 0 < client.ttl("celery-task-meta-done") <= 120
    backend.forget("done")
    assert backend.get("done") is None and client.exists("celery-task-meta-done") == 0
    assert backend.cleanup() == 0  # nothing to sweep: Redis drops expired keys itself


def test_redis_wait_wakes_on_publish_without_polling(redis_url):
    """get() subscribes, reads the key once, then is woken by the worker's PUBLISH."""
    import threading

    backend = RedisResultBackend(parse(redis_url, setting="RESULT_BACKEND"))
    writer = RedisResultBackend(parse(redis_url, setting="RESULT_BACKEND"))
    backend.mark_pending([("w", "t")])
    reads = []
    original = backend.get
    backend.get = lambda task_id: reads.append(task_id) or original(task_id)
    timer = threading.Timer(0.3, lambda: writer.store(success("w", b"42")))
    timer.start()
    try:
        assert AsyncResult("w", backend=backend).get(timeout=10) == 42
    finally:
        timer.cancel()
    assert reads == ["w"]
