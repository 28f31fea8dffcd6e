"""Custom task classes: the five handlers with Celery's arguments and order (solo, prefork and
eager runs), broken handlers, ``__call__`` overrides, class-based tasks, ``current_task`` and
the fields of ``self.request``."""

from __future__ import annotations

import json
import os
import time

import pytest

from django_taskq import current_task, signals, states
from django_taskq.einfo import ExceptionInfo
from django_taskq.exceptions import Retry
from django_taskq.producer import send_task
from tests.testapp import surface_tasks as st

SIGNALS = ("task_prerun", "task_success", "task_failure", "task_retry", "task_postrun",
           "task_internal_error")


@pytest.fixture
def recorded():
    """``st.calls``, emptied, with the task signals recorded into it too."""
    st.calls.clear()
    receivers = {}
    for name in SIGNALS:
        def receiver(sender, _name=name, **kwargs):
            kwargs.pop("signal", None)
            st.calls.append((_name, {"sender": sender, **kwargs}))
        receivers[name] = receiver
        getattr(signals, name).connect(receiver, weak=False)
    yield st.calls
    for name, receiver in receivers.items():
        getattr(signals, name).disconnect(receiver)
    st.calls.clear()


def drain(worker, *results, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not all(r.ready() for r in results) and time.monotonic() < deadline:
        worker.step()


def order(calls):
    return [name for name, _ in calls]


def details(calls, name):
    return [d for n, d in calls if n == name]


def check_success(calls, task_id):
    assert order(calls) == ["task_prerun", "before_start", "on_success", "task_success",
                            "after_return", "task_postrun"]
    [before] = details(calls, "before_start")
    assert before == {"task_id": task_id, "args": (4,), "kwargs": {}}
    [success] = details(calls, "on_success")
    assert success == {"retval": 8, "task_id": task_id, "args": (4,), "kwargs": {}}
    [after] = details(calls, "after_return")
    assert after == {"status": states.SUCCESS, "retval": 8, "task_id": task_id, "args": (4,),
                     "kwargs": {}, "einfo": None}


def check_failure(calls, task_id):
    assert order(calls) == ["task_prerun", "before_start", "on_failure", "task_failure",
                            "after_return", "task_postrun"]
    [failure] = details(calls, "on_failure")
    exc, einfo = failure["exc"], failure["einfo"]
    assert isinstance(exc, ValueError) and str(exc) == "handled boom"
    assert (failure["task_id"], failure["args"], failure["kwargs"]) == (task_id, (), {})
    assert isinstance(einfo, ExceptionInfo) and einfo.exception is exc
    assert "raise ValueError(\"handled boom\")" in einfo.traceback
    assert str(einfo) == einfo.traceback and einfo.type is ValueError
    [signal] = details(calls, "task_failure")
    assert signal["exception"] is exc and signal["einfo"] is einfo
    [after] = details(calls, "after_return")
    assert after["status"] == states.FAILURE and after["retval"] is exc
    assert after["einfo"] is einfo
    [postrun] = details(calls, "task_postrun")
    assert postrun["state"] == states.FAILURE and postrun["retval"] is exc


def check_retry(calls, task_id):
    assert order(calls) == [
        "task_prerun", "before_start", "on_retry", "task_retry", "task_postrun",  # no after_return
        "task_prerun", "before_start", "on_success", "task_success", "after_return",
        "task_postrun"]
    [retry] = details(calls, "on_retry")
    assert isinstance(retry["exc"], KeyError) and (retry["task_id"], retry["args"]) == (task_id, ())
    assert isinstance(retry["einfo"], ExceptionInfo)
    assert isinstance(retry["einfo"].exception, Retry)
    assert retry["einfo"].exception.exc is retry["exc"]
    [signal] = details(calls, "task_retry")
    assert signal["reason"] is retry["einfo"].exception and signal["einfo"] is retry["einfo"]
    [after] = details(calls, "after_return")
    assert (after["status"], after["retval"]) == (states.SUCCESS, "retried")


def test_handlers_on_success_in_a_worker(make_worker, recorded):
    result = st.handled.delay(4)
    drain(make_worker(), result)
    assert result.get(timeout=5) == 8
    check_success(recorded, result.id)


def test_handlers_on_failure_in_a_worker(make_worker, recorded):
    result = st.handled_fail.delay()
    drain(make_worker(), result)
    assert result.state == states.FAILURE
    check_failure(recorded, result.id)


def test_handlers_on_retry_in_a_worker(make_worker, recorded):
    result = st.handled_retry.delay()
    drain(make_worker(), result)
    assert result.get(timeout=5) == "retried"
    check_retry(recorded, result.id)


@pytest.mark.parametrize("broker_kind", ["memory"])
def test_handlers_eagerly(configured, recorded):
    check_success(recorded, st.handled.apply((4,)).id)
    recorded.clear()
    check_failure(recorded, st.handled_fail.apply().id)
    recorded.clear()
    result = st.handled_retry.apply()
    assert result.get() == "retried"
    check_retry(recorded, result.id)


@pytest.mark.parametrize("broker_kind", ["memory", "postgres"])
def test_handlers_run_in_the_prefork_child(make_worker, tmp_path):
    log = tmp_path / "handlers.jsonl"
    ok = st.handled.delay(4, log=str(log))
    bad = st.handled_fail.delay(log=str(log))
    again = st.handled_retry.delay(log=str(log))
    worker = make_worker(pool="prefork", concurrency=1)
    worker.pool.start()
    try:
        drain(worker, ok, bad, again, timeout=30)
    finally:
        worker.pool.stop()
    assert (ok.get(timeout=5), again.get(timeout=5), bad.state) == (8, "retried", states.FAILURE)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert {line["pid"] for line in lines} != {os.getpid()}  # not the test process
    by_id = {}
    for line in lines:
        by_id.setdefault(line["task_id"], []).append(line)
    assert [x["handler"] for x in by_id[ok.id]] == ["before_start", "on_success", "after_return"]
    assert by_id[ok.id][1]["retval"] == "8" and by_id[ok.id][1]["args"] == [4]
    assert by_id[ok.id][1]["kwargs"] == {"log": str(log)}
    assert [x["handler"] for x in by_id[bad.id]] == ["before_start", "on_failure", "after_return"]
    einfo = by_id[bad.id][1]["einfo"]
    assert einfo["is_exception_info"] and einfo["str_is_traceback"]
    assert einfo["exception"] == "ValueError('handled boom')"
    assert "Traceback (most recent call last)" in einfo["traceback"]
    assert by_id[bad.id][2]["status"] == states.FAILURE
    assert [x["handler"] for x in by_id[again.id]] == [
        "before_start", "on_retry", "before_start", "on_success", "after_return"]
    assert by_id[again.id][1]["exc"] == "KeyError('once more')"


def test_a_handler_that_raises_changes_nothing_and_is_reported(make_worker, recorded, caplog):
    ok, bad = st.broken_success.delay(), st.broken_failure.delay()
    drain(make_worker(), ok, bad)
    assert ok.get(timeout=5) == "fine"
    with pytest.raises(ValueError, match="the task's own failure"):
        bad.get(timeout=5)
    internal = details(recorded, "task_internal_error")
    assert sorted(str(d["exception"]) for d in internal) == [
        "after_return broke", "after_return broke", "on_failure broke", "on_success broke"]
    assert all(isinstance(d["einfo"], ExceptionInfo) for d in internal)
    assert {d["task_id"] for d in internal} == {ok.id, bad.id}
    assert "on_success handler of" in caplog.text


@pytest.mark.parametrize("broker_kind", ["memory"])
def test_a_handler_that_raises_in_an_eager_run_changes_nothing(configured, recorded):
    assert st.broken_success.apply().get() == "fine"
    assert isinstance(st.broken_failure.apply().result, ValueError)


def test_a_call_override_wraps_the_run_in_a_worker(make_worker, recorded):
    result = st.wrapped_add.delay(1, 2)
    drain(make_worker(), result)
    assert result.get(timeout=5) == {"wrapped": 3}
    assert [n for n in order(recorded) if n.startswith("__call__")] == ["__call__ before",
                                                                         "__call__ after"]
    assert details(recorded, "__call__ before") == [{"args": (1, 2), "kwargs": {}}]


@pytest.mark.parametrize("broker_kind", ["memory"])
def test_a_call_override_wraps_the_run_eagerly(configured, recorded, settings):
    assert st.wrapped_add.apply((1, 2)).get() == {"wrapped": 3}
    settings.TASKQ = {**settings.TASKQ, "TASK_ALWAYS_EAGER": True}
    assert st.wrapped_add.delay(2, 2).get() == {"wrapped": 4}
    assert order(recorded).count("__call__ before") == 2


def test_a_call_override_may_reshape_the_arguments_of_an_untyped_task(make_worker):
    result = st.unpacked.delay({"a": 5, "b": 2})
    drain(make_worker(), result)
    assert result.get(timeout=5) == 3
    assert st.unpacked.apply(({"a": 1, "b": 1},)).get() == 0


def test_calling_the_task_directly_goes_through_call(recorded):
    assert st.wrapped_add(1, 1) == {"wrapped": 2}


def test_a_class_based_task_runs_in_a_worker(make_worker):
    direct = st.class_add.delay(2, 3)
    by_name = send_task("tests.surface.class_add", (4, 5))
    drain(make_worker(), direct, by_name)
    assert (direct.get(timeout=5), by_name.get(timeout=5)) == (5, 9)
    assert st.class_add(1, 1) == 2


def test_current_task_is_the_running_task(make_worker):
    result = st.which_task.delay()
    drain(make_worker(), result)
    assert result.get(timeout=5) == {"truthy": True, "name": st.which_task.name}
    assert not current_task
    assert st.which_task.apply().get() == {"truthy": True, "name": st.which_task.name}
    with pytest.raises(AttributeError, match="no task is running"):
        current_task.name  # noqa: B018


def check_request(fields, result, args, kwargs):
    assert (fields["id"], fields["task"]) == (result.id, st.request_fields.name)
    assert (fields["args"], fields["kwargs"], fields["retries"]) == (args, kwargs, 0)
    assert fields["correlation_id"] == result.id
    assert fields["origin"].startswith("gen") and "@" in fields["origin"]
    assert fields["root_id"] == result.id and fields["parent_id"] is None
    # As in Celery: request.headers holds the custom headers only, each also an attribute.
    assert fields["headers"] == {"x-trace": "t-1"} and fields["x-trace"] == "t-1"
    assert fields["delivery_info"]["routing_key"] == "default"
    assert fields["called_directly"] is False


def test_request_fields_in_a_worker(make_worker):
    result = st.request_fields.apply_async((1,), {"k": 2}, headers={"x-trace": "t-1"},
                                           time_limit=30, soft_time_limit=20)
    worker = make_worker()
    drain(worker, result)
    fields = result.get(timeout=5)
    check_request(fields, result, [1], {"k": 2})
    assert fields["hostname"] == worker.options.hostname and fields["is_eager"] is False
    assert fields["delivery_info"]["queue"] == "default"
    assert fields["timelimit"] == [30.0, 20.0]


@pytest.mark.parametrize("broker_kind", ["memory"])
def test_request_fields_eagerly(configured):
    result = st.request_fields.apply((1,), {"k": 2}, headers={"x-trace": "t-1"})
    fields = result.get()
    check_request(fields, result, [1], {"k": 2})
    assert fields["is_eager"] is True and fields["hostname"].startswith("eager@")
    assert fields["timelimit"] == [None, None]


def test_request_when_called_directly():
    fields = st.request_fields(5)
    assert fields["called_directly"] is True and fields["is_eager"] is False
    assert fields["id"] is None and fields["task"] == st.request_fields.name
