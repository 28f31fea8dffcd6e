"""Eager runs (``apply()``, TASK_ALWAYS_EAGER) take the worker's path: encoding, middleware,
signals, retries by loop, TASK_EAGER_PROPAGATES, TASK_STORE_EAGER_RESULT."""

from __future__ import annotations

import pytest

from django_taskq import AsyncResult, MaxRetriesExceededError, signals, states
from django_taskq.brokers import get_broker
from django_taskq.exceptions import BadMessage, SerializationError
from django_taskq.result import EagerResult
from tests.testapp import feature_tasks as ft
from tests.testapp import middleware as mw
from tests.testapp import surface_tasks as st
from tests.testapp import tasks

pytestmark = pytest.mark.parametrize("broker_kind", ["memory"])


@pytest.fixture
def eager(configured, settings):
    settings.TASKQ = {**settings.TASKQ, "TASK_ALWAYS_EAGER": True}
    return settings


def taskq(settings, **values):
    settings.TASKQ = {**settings.TASKQ, **values}


def test_apply_returns_an_eager_result(configured):
    result = tasks.add.apply((2, 3))
    assert isinstance(result, EagerResult)
    assert (result.get(), result.state, result.successful()) == (5, states.SUCCESS, True)
    assert get_broker().size("default") == 0


def test_always_eager_runs_delay_here(eager):
    result = tasks.add.delay(2, 3)
    assert isinstance(result, EagerResult) and result.get() == 5
    assert get_broker().size("default") == 0


@pytest.mark.parametrize("always_eager", [False, True])
def test_an_argument_that_cannot_be_encoded_fails_at_call_time(configured, settings,
                                                             always_eager):
    taskq(settings, TASK_ALWAYS_EAGER=always_eager)
    with pytest.raises(SerializationError, match="not JSON serializable"):
        tasks.echo.delay(object())
    with pytest.raises(SerializationError):
        tasks.echo.apply((object(),))
    assert get_broker().size("default") == 0


def test_arguments_arrive_as_a_worker_would_see_them(configured):
    # A tuple becomes a list after the JSON round trip, as in a worker.
    assert tasks.echo.apply(((1, 2),), {"k": (3,)}).get() == {"args": [[1, 2]],
                                                             "kwargs": {"k": [3]}}


def test_a_return_value_that_cannot_be_encoded_is_a_failure(configured):
    result = st.returns_unserializable.apply()
    assert result.state == states.FAILURE
    with pytest.raises(SerializationError, match="not JSON serializable"):
        result.get()


def test_content_a_worker_would_refuse_is_refused(configured, settings):
    taskq(settings, TASK_SERIALIZER="pickle")
    with pytest.raises(BadMessage, match="dead-letter"):
        tasks.add.apply((1, 2))


def test_execute_middleware_runs_eagerly(configured, settings):
    taskq(settings, MIDDLEWARE=["tests.testapp.middleware.Tenant"])
    mw.calls.clear()
    token = mw.current_tenant.set("acme")
    try:
        assert ft.tenant_now.apply().get() is None  # apply() sends nothing: no enqueue hook
        assert mw.calls == [f"execute {ft.tenant_now.name}"]
        mw.calls.clear()
        taskq(settings, TASK_ALWAYS_EAGER=True)
        assert ft.tenant_now.delay().get() == "acme"  # enqueue set the header, execute read it
        assert mw.calls == ["enqueue 1", f"execute {ft.tenant_now.name}"]
    finally:
        mw.current_tenant.reset(token)
        mw.calls.clear()


def test_an_enqueue_middleware_that_refuses_stops_an_eager_send(eager):
    taskq(eager, MIDDLEWARE=["tests.testapp.middleware.Refuse"])
    with pytest.raises(PermissionError):
        tasks.add.delay(1, 2)


def test_task_signals_fire_eagerly(configured):
    seen = []

    def receiver(sender, signal, **kwargs):
        seen.append(signal.name)

    names = ("task_prerun", "task_success", "task_failure", "task_postrun")
    for name in names:
        getattr(signals, name).connect(receiver, weak=False)
    try:
        tasks.add.apply((1, 2))
        tasks.fail.apply()
    finally:
        for name in names:
            getattr(signals, name).disconnect(receiver)
    assert seen == ["task_prerun", "task_success", "task_postrun",
                    "task_prerun", "task_failure", "task_postrun"]


def test_retries_loop_until_success(configured, tmp_path):
    marker = tmp_path / "runs"
    result = ft.retry_until.apply((str(marker), 3))
    assert result.get() == {"run": 3, "retries": 2}
    assert result.retries == 2


def test_retries_loop_up_to_max_retries_without_recursion(configured):
    st.runs.clear()
    result = st.retry_always.apply()  # max_retries=50, countdown=3600 (not waited)
    assert st.runs["retry_always"] == 51
    assert result.state == states.FAILURE
    with pytest.raises(MaxRetriesExceededError, match="max_retries=50"):
        result.get()


def test_retry_with_new_arguments_eagerly(configured):
    assert ft.retry_with_new_args.apply((0,)).get() == {"n": 2, "retries": 2}


def test_eager_propagates_raises_the_original_exception(configured, settings):
    taskq(settings, TASK_EAGER_PROPAGATES=True)
    st.raised.clear()
    with pytest.raises(ValueError) as caught:
        st.raise_recorded.apply()
    assert caught.value is st.raised[-1]
    taskq(settings, TASK_ALWAYS_EAGER=True)
    with pytest.raises(ValueError) as caught:
        st.raise_recorded.delay()
    assert caught.value is st.raised[-1]


def test_without_propagation_the_failure_is_the_result(configured):
    st.raised.clear()
    result = st.raise_recorded.apply()
    assert result.failed() and result.result is st.raised[-1]
    with pytest.raises(ValueError, match="the original"):
        result.get()
    assert "raise exc" in result.traceback


def test_apply_throw_overrides_the_setting(configured, settings):
    with pytest.raises(ValueError, match="the original"):
        st.raise_recorded.apply(throw=True)
    taskq(settings, TASK_EAGER_PROPAGATES=True)
    assert st.raise_recorded.apply(throw=False).failed()


def test_with_propagation_a_retry_is_raised_to_the_caller_as_in_celery(configured, settings):
    from django_taskq.exceptions import Retry

    taskq(settings, TASK_EAGER_PROPAGATES=True)
    with pytest.raises(Retry):
        st.retry_always.apply()
    taskq(settings, TASK_EAGER_PROPAGATES=False)  # without: retried in a loop until exhausted
    with pytest.raises(MaxRetriesExceededError):
        st.retry_always.apply().get()


def test_store_eager_result(configured, settings):
    taskq(settings, TASK_STORE_EAGER_RESULT=True)
    ok = tasks.add.apply((2, 2))
    bad = tasks.fail.apply(("stored",))
    assert AsyncResult(ok.id).get(timeout=1) == 4
    assert AsyncResult(bad.id).state == states.FAILURE
    with pytest.raises(ValueError, match="stored"):
        AsyncResult(bad.id).get(timeout=1)


def test_eager_results_are_not_stored_by_default(configured):
    result = tasks.add.apply((2, 2))
    assert not AsyncResult(result.id).known


def test_store_eager_result_respects_ignore_result(configured, settings):
    taskq(settings, TASK_STORE_EAGER_RESULT=True)
    assert not AsyncResult(tasks.noop.apply().id).known


def test_get_inside_an_eager_task_works(eager):
    assert st.get_inside.delay().get() == 3
    assert st.get_inside.apply().get() == 3


def test_get_of_a_stored_result_inside_an_eager_task_works(configured, settings):
    taskq(settings, TASK_STORE_EAGER_RESULT=True)
    stored = tasks.add.apply((5, 5))
    assert st.get_stored.apply((stored.id,)).get() == 10


def test_update_state_in_an_eager_run_stores_nothing(configured):
    result = ft.progress.apply((str(__file__),))  # the path exists: it does not wait
    assert result.get() == "finished"
    assert not AsyncResult(result.id).known


def test_apply_with_a_chosen_id_and_retries(configured):
    result = tasks.whoami.apply(task_id="my-id", retries=2)
    info = result.get()
    assert (result.id, info["id"], info["retries"]) == ("my-id", "my-id", 2)


def test_apply_async_on_commit_under_always_eager(eager, transactional_db):
    from django.db import transaction

    with transaction.atomic():
        handle = tasks.add.apply_async_on_commit((1, 2))
        assert handle.state == states.PENDING
    assert handle.get() == 3
