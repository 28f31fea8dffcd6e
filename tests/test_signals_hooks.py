"""Signals, middleware, track_started and update_state on every broker."""

from __future__ import annotations

import threading
import time

import pytest

from django_taskq import signals, states
from django_taskq.exceptions import ConfigurationError
from tests.testapp import feature_tasks as ft
from tests.testapp import middleware as mw
from tests.testapp import tasks


def drain(worker, *results, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not all(r.ready() for r in results) and time.monotonic() < deadline:
        worker.step()


@pytest.fixture
def received():
    """Connect a recorder to every signal; yields the list of (signal name, kwargs)."""
    seen = []
    receivers = {}
    for name in ("task_received", "task_prerun", "task_postrun", "task_success",
                 "task_failure", "task_retry", "task_revoked", "worker_ready",
                 "worker_shutdown"):
        def receiver(sender, _name=name, **kwargs):
            kwargs.pop("signal", None)
            seen.append((_name, sender, kwargs))
        receivers[name] = receiver
        getattr(signals, name).connect(receiver, weak=False)
    yield seen
    for name, receiver in receivers.items():
        getattr(signals, name).disconnect(receiver)


def names(seen, task_id=None):
    out = []
    for name, _, kwargs in seen:
        request = kwargs.get("request")
        ident = kwargs.get("task_id") or (request.id if request is not None else None)
        if task_id is None or ident in (task_id, None):
            out.append(name)
    return out


def test_signals_fire_in_celery_order_with_celery_arguments(make_worker, received, tmp_path):
    ok, bad = tasks.add.delay(1, 2), tasks.fail.delay("no")
    retried = ft.retry_until.delay(str(tmp_path / "r"), 2)
    worker = make_worker()
    worker.start()
    drain(worker, ok, bad, retried)
    worker.shutdown()
    assert names(received)[0] == "worker_ready" and names(received)[-1] == "worker_shutdown"
    ok_signals = [(n, s, k) for n, s, k in received
                  if k.get("task_id") == ok.id or getattr(k.get("request"), "id", None) == ok.id
                  or (n == "task_success" and k.get("result") == 3)]
    assert [n for n, _, _ in ok_signals] == ["task_received", "task_prerun", "task_success",
                                             "task_postrun"]
    prerun = next(k for n, _, k in ok_signals if n == "task_prerun")
    assert prerun["args"] == (1, 2) and prerun["task"] is tasks.add
    postrun = next(k for n, _, k in ok_signals if n == "task_postrun")
    assert postrun["retval"] == 3 and postrun["state"] == states.SUCCESS
    failure = next(k for n, s, k in received if n == "task_failure")
    assert failure["task_id"] == bad.id and isinstance(failure["exception"], ValueError)
    # Celery's arguments: the traceback object and an ExceptionInfo whose text is the traceback.
    assert failure["traceback"] is failure["einfo"].tb
    assert "raise ValueError" in str(failure["einfo"])
    retry = next((s, k) for n, s, k in received if n == "task_retry")
    assert retry[0] is ft.retry_until and retry[1]["request"].id == retried.id
    assert "run 1 failed" in str(retry[1]["reason"])
    assert retried.get(timeout=5)["run"] == 2


def test_a_failing_receiver_does_not_break_the_task(make_worker, caplog):
    def broken(sender, **kwargs):
        raise RuntimeError("receiver bug")

    signals.task_prerun.connect(broken, weak=False)
    try:
        result = tasks.add.delay(2, 2)
        drain(make_worker(), result)
        assert result.get(timeout=5) == 4
        assert "receiver bug" in caplog.text
    finally:
        signals.task_prerun.disconnect(broken)


def test_middleware_wraps_enqueue_and_execution(make_worker, settings):
    settings.TASKQ = {**settings.TASKQ, "MIDDLEWARE": ["tests.testapp.middleware.Outer",
                                                       "tests.testapp.middleware.Tenant"]}
    mw.calls.clear()
    token = mw.current_tenant.set("acme")
    try:
        result = ft.tenant_now.delay()
    finally:
        mw.current_tenant.reset(token)
    drain(make_worker(), result)
    assert result.get(timeout=5) == "acme"  # the header travelled and was made current
    assert mw.calls == ["enqueue 1", "outer before", f"execute {ft.tenant_now.name}",
                        "outer after"]


def test_middleware_can_refuse_a_send(configured, settings):
    settings.TASKQ = {**settings.TASKQ, "MIDDLEWARE": ["tests.testapp.middleware.Refuse"]}
    with pytest.raises(PermissionError, match="Sundays"):
        tasks.add.delay(1, 1)


@pytest.mark.parametrize("entry, message", [
    ("tests.testapp.middleware.Missing", "cannot be imported"),
    ("tests.testapp.tasks.Path", "neither an enqueue"),
])
def test_bad_middleware_setting_is_a_clear_error(configured, settings, entry, message):
    settings.TASKQ = {**settings.TASKQ, "MIDDLEWARE": [entry]}
    with pytest.raises(ConfigurationError, match=message):
        tasks.add.delay(1, 1)


def test_middleware_setting_must_be_a_list_of_paths(settings):
    from django_taskq.conf import find_problems

    assert find_problems({"MIDDLEWARE": "tests.testapp.middleware.Tenant"})
    assert find_problems({"MIDDLEWARE": ["nodots"]})
    assert not find_problems({"MIDDLEWARE": ["tests.testapp.middleware.Tenant"]})


def _drain_and_close(worker, result):
    from django.db import connections

    try:
        drain(worker, result)
    finally:
        connections.close_all()  # this thread's connections, or test teardown waits on them


def _run_in_thread(worker, result):
    thread = threading.Thread(target=_drain_and_close, args=(worker, result), daemon=True)
    thread.start()
    return thread


def test_update_state_progress_is_visible_while_running(make_worker, tmp_path):
    release = tmp_path / "release"
    result = ft.progress.delay(str(release))
    thread = _run_in_thread(make_worker(), result)
    deadline = time.monotonic() + 10
    while result.state != "PROGRESS" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert result.state == "PROGRESS"
    assert result.info == {"done": 1, "total": 2}
    assert not result.ready()
    release.touch()
    thread.join(15)
    assert result.get(timeout=5) == "finished"


def test_track_started_records_started_with_pid_and_host(make_worker, tmp_path):
    release = tmp_path / "release"
    result = ft.started_then_wait.delay(str(release))
    worker = make_worker()
    thread = _run_in_thread(worker, result)
    deadline = time.monotonic() + 10
    while result.state != states.STARTED and time.monotonic() < deadline:
        time.sleep(0.02)
    assert result.state == states.STARTED
    assert result.info["hostname"] == worker.options.hostname and result.info["pid"] > 0
    release.touch()
    thread.join(15)
    assert result.get(timeout=5) == "done"


def test_track_started_setting_applies_to_every_task():
    from django_taskq.worker.job import prepare
    from tests.helpers import envelope

    job, _ = prepare(1, envelope(), accept=("json",), hostname="h", result_serializer="json",
                     track_started=True)
    assert job.track_started
    job, _ = prepare(1, envelope(), accept=("json",), hostname="h", result_serializer="json")
    assert not job.track_started


def test_update_state_outside_a_task_needs_an_id():
    with pytest.raises(ValueError, match="task_id"):
        ft.progress.update_state(state="PROGRESS", meta={})
