"""Hostile data never names what runs (issue 13, promise 7).

Whoever can write to the result store or the broker chooses the data these tests write: a
stored failure naming ``os.system``, ``builtins.eval`` or a module nobody imported, JSON type
hooks naming other types, nested junk in ``children``; a message whose workflow names a module
path as its signature type. Nothing named may be imported, looked up or called: failures come
back as data (``RemoteTaskError`` with the remote type's name), bad workflows fail their task.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path

import pytest

from django_taskq import AsyncResult, maybe_signature, states, task
from django_taskq.brokers import get_broker
from django_taskq.exceptions import (
    RemoteTaskError,
    TaskqError,
    TaskRevokedError,
    TimeLimitExceeded,
)
from django_taskq.outcome import Outcome
from django_taskq.result import allow_join_result
from django_taskq.results import get_backend
from django_taskq.results.database import DatabaseResultBackend
from django_taskq.results.redis import RedisResultBackend
from django_taskq.service_url import parse
from tests.conftest import require_alias
from tests.helpers import envelope
from tests.testapp import canvas_tasks  # noqa: F401 - registers canvas.add, mul, tsum, boom

HOSTILE_MODULE = "tests.hostile_unimported"
MARKS = ("TASKQ_HOSTILE_MODULE_IMPORTED", "TASKQ_HOSTILE_BOOM_MADE")
STORES = ["sqlite", "postgres", "mariadb", "redis"]
WORKER_BROKERS = ["memory", "sqlite", "postgres", "mariadb", "redis"]


class Sneaky(Exception):
    """Already imported (this module), so a reader that looks classes up in ``sys.modules``
    (as Celery's does) would find it and run its constructor."""

    made = 0

    def __init__(self, *args: object) -> None:
        Sneaky.made += 1
        super().__init__(*args)


@task(name="hostile.relay")
def relay(task_id):
    """Wait for another task's result inside a task: its rebuilt failure leaves this task."""
    with allow_join_result():
        return AsyncResult(task_id).get(timeout=10)


@pytest.fixture(autouse=True)
def untouched(tmp_path):
    """Nothing hostile happened: the module stays unimported, no constructor ran, no file."""
    assert HOSTILE_MODULE not in sys.modules, "precondition: nothing imported it before"
    for mark in MARKS:
        os.environ.pop(mark, None)
    Sneaky.made = 0
    yield tmp_path / "pwned"
    assert HOSTILE_MODULE not in sys.modules
    assert [mark for mark in MARKS if mark in os.environ] == []
    assert Sneaky.made == 0
    assert not (tmp_path / "pwned").exists()


def hostile_failures(marker: Path) -> list[dict]:
    """Stored failures whose names, if resolved, import a module or run a command."""
    command = [f"echo pwned > {marker}"]
    return [
        {"exc_module": "os", "exc_type": "system", "exc_message": command},
        {"exc_module": "subprocess", "exc_type": "getoutput", "exc_message": command},
        {"exc_module": "subprocess", "exc_type": "Popen", "exc_message": [["sh", "-c", command[0]]]},
        {"exc_module": "builtins", "exc_type": "eval",
         "exc_message": [f"__import__({HOSTILE_MODULE!r})"]},
        {"exc_module": "builtins", "exc_type": "exec", "exc_message": [f"import {HOSTILE_MODULE}"]},
        {"exc_module": "builtins", "exc_type": "__import__", "exc_message": [HOSTILE_MODULE]},
        {"exc_module": HOSTILE_MODULE, "exc_type": "Boom", "exc_message": ["x"]},
        {"exc_module": "tests", "exc_type": "hostile_unimported.Boom", "exc_message": ["x"]},
        {"exc_module": Sneaky.__module__, "exc_type": "Sneaky", "exc_message": ["x"]},
        # Builtin, but raised from get() it would end the process.
        {"exc_module": "builtins", "exc_type": "SystemExit", "exc_message": [3]},
        # On django_taskq.exceptions by import only, not one of its classes.
        {"exc_module": "django_taskq.exceptions", "exc_type": "ImproperlyConfigured",
         "exc_message": ["x"]},
        # Control flow: raised from get() inside a task, data would requeue or replace it.
        {"exc_module": "django_taskq.exceptions", "exc_type": "Reject", "exc_message": ["x", True]},
        {"exc_module": "django_taskq.exceptions", "exc_type": "Replaced",
         "exc_message": [[{"task": "os.system"}]]},
    ]


@pytest.fixture(params=STORES)
def store(request):
    """(backend, write): ``write(task_id, meta)`` puts a raw record in the store, as anyone
    with write access to it could, bypassing every writer of ours."""
    if request.param == "redis":
        backend = RedisResultBackend(parse(request.getfixturevalue("redis_url"),
                                           setting="RESULT_BACKEND"))
        request.addfinalizer(backend.close)

        def write_redis(task_id, meta):
            record = {"status": states.FAILURE, "traceback": "remote tb", "children": [],
                      "date_done": None, "task_id": task_id, **meta}
            backend.client.set(backend.key(task_id), json.dumps(record))
        return backend, write_redis
    alias = require_alias(request.param)
    request.getfixturevalue("transactional_db")
    backend = DatabaseResultBackend(alias=alias)

    def write_row(task_id, meta):
        from django_taskq.models import TaskResult

        TaskResult.objects.using(alias).create(
            task_id=task_id, task_name=str(meta.get("name") or "t"),
            state=meta.get("status", states.FAILURE), result=json.dumps(meta["result"]),
            content_type="application/json", content_encoding="utf-8", traceback="remote tb")
    return backend, write_row


pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


def test_a_hostile_stored_failure_comes_back_as_data(store, untouched):
    backend, write = store
    for number, failure in enumerate(hostile_failures(untouched)):
        task_id = f"hostile-{number}"
        write(task_id, {"result": failure})
        result = AsyncResult(task_id, backend=backend)
        with pytest.raises(RemoteTaskError) as raised:
            result.get(timeout=1)
        error = raised.value
        assert (error.exc_type, error.exc_module) == (failure["exc_type"], failure["exc_module"])
        assert str(failure["exc_message"][0]) in error.message
        assert error.remote_traceback == "remote tb"
        assert isinstance(result.result, RemoteTaskError)  # .result rebuilds it the same way
        with pytest.raises(RemoteTaskError):
            result.maybe_throw()


def test_builtin_failures_are_still_rebuilt_as_their_class(store):
    backend, write = store
    write("builtin", {"result": {"exc_module": "builtins", "exc_type": "ValueError",
                                 "exc_message": ["bad", {"__type__": HOSTILE_MODULE + ".Boom",
                                                         "__value__": "x"}]}})
    write("ours", {"result": {"exc_module": "django_taskq.exceptions",
                              "exc_type": "TaskRevokedError", "exc_message": ["revoked"]}})
    with pytest.raises(ValueError, match="bad") as raised:
        AsyncResult("builtin", backend=backend).get(timeout=1)
    # The type hook naming a class stays the plain mapping it is.
    assert raised.value.args == ("bad", {"__type__": HOSTILE_MODULE + ".Boom", "__value__": "x"})
    with pytest.raises(TaskRevokedError, match="revoked"):
        AsyncResult("ours", backend=backend).get(timeout=1)


def test_celery_failures_with_a_namesake_here_are_caught_as_ours(store):
    """What a Celery worker stores for a revoked task or a time limit; not its control flow."""
    backend, write = store
    for module, name in [("celery.exceptions", "TaskRevokedError"),
                         ("billiard.exceptions", "TimeLimitExceeded"),
                         ("celery.exceptions", "Reject")]:
        write(name, {"result": {"exc_module": module, "exc_type": name, "exc_message": ["x"]}})
    with pytest.raises(TaskRevokedError, match="x"):
        AsyncResult("TaskRevokedError", backend=backend).get(timeout=1)
    with pytest.raises(TimeLimitExceeded, match="x"):
        AsyncResult("TimeLimitExceeded", backend=backend).get(timeout=1)
    with pytest.raises(RemoteTaskError, match="^celery.exceptions.Reject: x$"):
        AsyncResult("Reject", backend=backend).get(timeout=1)


def test_json_type_hooks_rebuild_only_the_fixed_value_types(store):
    backend, write = store
    value = {"module": {"__type__": HOSTILE_MODULE + ".Boom", "__value__": "x"},
             "call": {"__type__": "os.system", "__value__": "echo pwned"},
             "extra_key": {"__type__": "uuid", "__value__": str(uuid.UUID(int=1)), "x": 1},
             "known": {"__type__": "uuid", "__value__": str(uuid.UUID(int=2))}}
    write("typed", {"status": states.SUCCESS, "result": value})
    got = AsyncResult("typed", backend=backend).get(timeout=1)
    assert got == {**value, "known": uuid.UUID(int=2)}


@pytest.mark.parametrize("store", ["redis"], indirect=True)
def test_nested_hostile_children_and_parent_fields_are_left_alone(store, untouched):
    """Celery's meta carries ``children`` (result tuples) and may carry a parent: data only."""
    backend, write = store
    nested = hostile_failures(untouched)
    write("family", {"status": states.SUCCESS, "result": 7,
                     "children": [[["child", None], None], *nested,
                                  {"__type__": HOSTILE_MODULE + ".Boom", "__value__": "x"}],
                     "parent": nested[0], "parent_id": {"exc_type": "system", "exc_module": "os"},
                     "group_id": nested[-1]})
    result = AsyncResult("family", backend=backend)
    assert result.get(timeout=1) == 7
    assert result.children == [] and result.parent is None


def test_a_signature_type_naming_a_module_is_refused():
    with pytest.raises(ValueError, match="Unknown signature type 'tests.hostile_unimported.Boom'"):
        maybe_signature({"task": "canvas.add", "args": [1, 2],
                         "subtask_type": HOSTILE_MODULE + ".Boom"})


# -- in a worker ----------------------------------------------------------------------------


def drain(worker, *results, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not all(r.ready() for r in results):
        assert time.monotonic() < deadline, f"timed out waiting for {results!r}"
        worker.step()


def sig(name, *args, **options):
    return {"task": name, "args": list(args), "kwargs": {}, "options": options,
            "subtask_type": None, "immutable": False}


def send(task="canvas.add", **options):
    """A ``task(1, 2)`` message carrying ``options`` (its embed) as a client wrote it."""
    made = envelope(task=task, args=(1, 2), **options)
    get_broker().enqueue(made)
    return AsyncResult(made.message_id)


@pytest.mark.parametrize("broker_kind", WORKER_BROKERS)
def test_a_task_waiting_on_a_hostile_result_fails_with_data(make_worker):
    """Raised from get() inside a task, a Reject/Retry/Ignore/Replaced rebuilt from data would
    choose that task's fate (requeue it, retry it, drop it, send what the data lists)."""
    backend, relays = get_backend(), {}
    for name, args in [("Reject", ["x", True]), ("Retry", ["x", None, 0]), ("Ignore", ["x"]),
                       ("Replaced", [[{"task": "canvas.add"}]])]:
        payload = json.dumps({"exc_module": "django_taskq.exceptions", "exc_type": name,
                              "exc_message": args}).encode()
        backend.store(Outcome(task_id=f"stored-{name}", task_name="t", state=states.FAILURE,
                              payload=payload))
        relays[name] = relay.delay(f"stored-{name}")
    drain(make_worker(), *relays.values())
    for name, result in relays.items():
        assert result.state == states.FAILURE, name
        with pytest.raises(RemoteTaskError, match=f"^django_taskq.exceptions.{name}: ") as raised:
            result.get(timeout=1)
        assert (raised.value.exc_type, raised.value.exc_module) == (name, "django_taskq.exceptions")
    assert get_broker().size("default") == 0  # nothing requeued, retried or sent on


@pytest.mark.parametrize("broker_kind", WORKER_BROKERS)
def test_a_workflow_naming_a_module_as_its_type_fails_its_task(make_worker, untouched):
    hostile = {**sig("canvas.mul", 10), "subtask_type": HOSTILE_MODULE + ".Boom"}
    callback = send(callbacks=[hostile])
    chained = send(chain=[{**sig("canvas.mul", 10), "subtask_type": "os.system"}])
    errback = send(task="canvas.boom", errbacks=[hostile])
    drain(make_worker(), callback, chained, errback)
    for result, kind in [(callback, HOSTILE_MODULE + ".Boom"), (chained, "os.system")]:
        with pytest.raises(TaskqError, match=f"cannot run a signature of type '{kind}'"):
            result.get(timeout=1)
    with pytest.raises(ValueError, match="boom"):  # the errback is not sent; the failure stands
        errback.get(timeout=1)
    assert get_broker().size("default") == 0


@pytest.mark.parametrize("broker_kind", WORKER_BROKERS)
def test_extra_keys_in_callback_and_chord_dicts_are_ignored(make_worker, untouched):
    """Keys a signature dict does not define (Celery's ``type``/``app``, anything) are data: the
    callback and the chord's body run as the defined keys say."""
    extra = {"type": HOSTILE_MODULE + ".Boom", "app": HOSTILE_MODULE, "__class__": "os.system",
             "__reduce__": ["os.system", ["echo pwned"]]}
    options_extra = {"loader": HOSTILE_MODULE, "__type__": "os.system"}
    callback = {**sig("canvas.mul", 10, task_id="cb-extra", **options_extra), **extra}
    body = {**sig("canvas.tsum", task_id="body-extra", **options_extra), **extra}
    group_id = str(uuid.uuid4())
    get_backend().set_chord_size(group_id, 1)
    first = send(callbacks=[callback])
    member = send(group_id=group_id, group_index=0, chord=body)
    linked, summed = AsyncResult("cb-extra"), AsyncResult("body-extra")
    drain(make_worker(), first, member, linked, summed)
    assert (first.get(timeout=1), linked.get(timeout=1)) == (3, 30)
    assert (member.get(timeout=1), summed.get(timeout=1)) == (3, 3)
