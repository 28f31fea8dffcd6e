"""The result backends (memory and database on every engine) and AsyncResult."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import pytest
from django.utils import timezone

from django_taskq import AsyncResult, states
from django_taskq.exceptions import RemoteTaskError, TimeoutError
from django_taskq.outcome import Outcome, failure
from django_taskq.results.database import DatabaseResultBackend
from django_taskq.results.redis import RedisResultBackend
from django_taskq.service_url import parse
from tests.result_stores import STORES, kinds_that_can


@pytest.fixture(params=list(STORES))
def backend(request):
    return STORES[request.param](request)


# Backends that delete expired results by date in cleanup(); Redis uses key TTLs instead.
BY_DATE = pytest.mark.parametrize("backend", kinds_that_can("cleanup_by_date"), indirect=True)

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
    original = backend.client.get
    backend.client.get = lambda key: reads.append(key) or original(key)
    timer = threading.Timer(0.3, lambda: writer.store(success("w", b"42")))
    timer.start()
    try:
        assert AsyncResult("w", backend=backend).get(timeout=10) == 42
    finally:
        timer.cancel()
    assert reads == ["celery-task-meta-w"]


def test_get_reports_states_intervals_and_the_value(backend):
    """on_message sees each state, on_interval runs while waiting, callback gets the value."""
    started = Outcome(task_id="cb", task_name="t", state=states.STARTED, payload=b'{"pid": 1}')
    backend.store(started)
    seen, ticks, calls = [], [], []

    def on_interval():
        ticks.append(1)
        if len(ticks) == 1:
            backend.store(success("cb"))

    value = AsyncResult("cb", backend=backend).get(
        timeout=10, on_message=seen.append, on_interval=on_interval,
        callback=lambda *args: calls.append(args))
    assert value == {"a": 1} and calls == [("cb", {"a": 1})] and ticks
    assert [m["status"] for m in seen] == ["STARTED", "SUCCESS"]
    assert seen[-1]["task_id"] == "cb" and seen[-1]["result"] == {"a": 1}


# -- extended results (RESULT_EXTENDED) --------------------------------------------------------

WHEN = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=dt_timezone.utc)


def extended(task_id: str, **fields) -> Outcome:
    defaults = {"task_name": "proj.add", "state": states.SUCCESS, "payload": b"5",
                "date_started": WHEN, "date_done": WHEN, "worker": "w1@host", "retries": 2,
                "args": (2, "x", WHEN), "kwargs": {"k": [1, None]}, "queue": "q1"}
    return Outcome(task_id=task_id, **{**defaults, **fields})


def test_extended_fields_round_trip(backend):
    backend.store(extended("e"))
    result = AsyncResult("e", backend=backend)
    assert result.get(timeout=1) == 5
    assert result.args == [2, "x", WHEN]  # JSON-able data: a list, the datetime as kombu's
    assert result.kwargs == {"k": [1, None]}
    assert (result.queue, result.name, result.worker, result.retries) == \
        ("q1", "proj.add", "w1@host", 2)
    assert result.date_started == WHEN and result.date_done == WHEN


def test_results_without_extended_fields_have_none(backend):
    backend.store(success("plain"))
    result = AsyncResult("plain", backend=backend)
    assert (result.args, result.kwargs, result.queue) == (None, None, None)
    assert result.name == "t" and result.worker == "w1" and result.retries == 0


def test_arguments_the_serializer_cannot_encode_are_stored_as_repr(backend):
    class Opaque:
        def __repr__(self) -> str:
            return "<Opaque>"

    backend.store(extended("o", args=(1, Opaque()), kwargs={"fine": 1}))
    meta = backend.get("o")
    assert (meta.state, meta.result) == (states.SUCCESS, 5)
    assert meta.args == "[1, <Opaque>]"
    assert meta.kwargs == {"fine": 1}


def test_extended_arguments_use_a_binary_result_serializer(backend):
    import msgpack

    backend.accept = ("json", "msgpack")
    backend.serializer = "msgpack"
    backend.store(extended("mp", payload=msgpack.packb({"x": 1}),
                           content_type="application/x-msgpack", content_encoding="binary",
                           args=(1, 2), kwargs={"b": b"raw"}))
    meta = backend.get("mp")
    assert (meta.result, meta.args, meta.kwargs) == ({"x": 1}, [1, 2], {"b": b"raw"})


def test_database_row_keeps_arguments_encoded_like_the_result(transactional_db):
    from django_taskq.models import TaskResult

    DatabaseResultBackend().store(extended("row"))
    row = TaskResult.objects.get(task_id="row")
    assert json.loads(row.task_args)[:2] == [2, "x"]
    assert json.loads(row.task_kwargs) == {"k": [1, None]}
    assert (row.queue, row.content_type) == ("q1", "application/json")


def test_redis_meta_has_celery_result_extended_keys(redis_url):
    import redis

    backend = RedisResultBackend(parse(redis_url, setting="RESULT_BACKEND"))
    backend.store(extended("r"))
    meta = json.loads(redis.Redis.from_url(redis_url).get("celery-task-meta-r"))
    assert {k: meta[k] for k in ("status", "result", "task_id", "name", "args", "kwargs",
                                 "worker", "retries", "queue")} == {
        "status": "SUCCESS", "result": 5, "task_id": "r", "name": "proj.add",
        "args": [2, "x", {"__type__": "datetime", "__value__": WHEN.isoformat()}],
        "kwargs": {"k": [1, None]}, "worker": "w1@host", "retries": 2, "queue": "q1"}
    backend.store(success("plain"))
    plain = json.loads(redis.Redis.from_url(redis_url).get("celery-task-meta-plain"))
    assert not {"args", "kwargs", "queue"} & set(plain)  # as Celery without result_extended


def test_redis_reads_a_celery_meta_with_a_naive_date_done(redis_url):
    """Celery producers write ``date_done`` without an offset (UTC); read it as aware UTC."""
    import redis

    meta = {"status": "SUCCESS", "result": 5, "traceback": None, "children": [],
            "date_done": "2026-11-30T12:00:00.123456", "task_id": "naive", "name": "proj.add",
            "args": [2, 3], "kwargs": {}, "worker": "celery@host", "retries": 0,
            "queue": "celery"}
    redis.Redis.from_url(redis_url).set("celery-task-meta-naive", json.dumps(meta))
    backend = RedisResultBackend(parse(redis_url, setting="RESULT_BACKEND"))
    assert backend.get("naive").date_done == WHEN
    result = AsyncResult("naive", backend=backend)
    assert result.get(timeout=1) == 5
    assert result.date_done == WHEN and result.date_done.tzinfo is not None
    assert (result.args, result.kwargs, result.queue, result.worker) == \
        ([2, 3], {}, "celery", "celery@host")


def test_celery_client_reads_our_extended_result_and_we_read_celerys(redis_url):
    from celery.app.task import Context

    from tests.celery_peer import make_app

    app = make_app(redis_url, redis_url)  # result_extended=True
    try:
        RedisResultBackend(parse(redis_url, setting="RESULT_BACKEND")).store(extended("ours"))
        theirs = app.AsyncResult("ours")
        assert theirs.get(timeout=5) == 5
        assert (theirs.name, theirs.args, theirs.kwargs, theirs.worker, theirs.retries,
                theirs.queue) == ("proj.add", [2, "x", WHEN], {"k": [1, None]}, "w1@host", 2,
                                  "q1")
        request = Context(task="proj.add", args=[1, 2], kwargs={"z": 3}, hostname="celery@h",
                          retries=1, delivery_info={"routing_key": "high"})
        app.backend.store_result("celerys", 3, states.SUCCESS, request=request)
        ours = AsyncResult("celerys", backend=RedisResultBackend(
            parse(redis_url, setting="RESULT_BACKEND")))
        assert ours.get(timeout=5) == 3
        assert (ours.name, ours.args, ours.kwargs, ours.worker, ours.retries, ours.queue) == \
            ("proj.add", [1, 2], {"z": 3}, "celery@h", 1, "high")
        assert ours.date_done.tzinfo is not None
    finally:
        app.close()
