"""Retries on every broker: self.retry, autoretry_for, backoff, the RETRY state, exhaustion."""

from __future__ import annotations

import time

import pytest

from django_taskq import AsyncResult, MaxRetriesExceededError, states
from django_taskq.exceptions import Retry
from django_taskq.retries import backoff_delay
from tests.testapp import feature_tasks as ft


def drain_until(worker, result, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not result.ready() and time.monotonic() < deadline:
        worker.step()
    return result


def runs(path):
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_retry_is_a_new_delivery_of_the_same_id_until_it_succeeds(make_worker, tmp_path):
    marker = tmp_path / "runs"
    result = ft.retry_until.delay(str(marker), 3)
    drain_until(make_worker(), result)
    assert result.get(timeout=5) == {"run": 3, "retries": 2}
    assert runs(marker) == 3


def test_exhausted_retries_fail_with_the_original_exception(make_worker, tmp_path):
    marker = tmp_path / "runs"
    result = ft.retry_until.delay(str(marker), 10)  # max_retries=3: four runs, then give up
    drain_until(make_worker(), result)
    assert result.state == states.FAILURE
    with pytest.raises(Exception, match="run 4 failed") as caught:
        result.get(timeout=5)
    assert type(caught.value).__name__ in ("Flaky", "RemoteTaskError")
    assert runs(marker) == 4


def test_retry_without_exc_ends_in_max_retries_exceeded(make_worker):
    result = ft.retry_without_exc.delay()
    drain_until(make_worker(), result)
    with pytest.raises(MaxRetriesExceededError, match="max_retries=1"):
        result.get(timeout=5)


def test_retry_can_change_the_arguments(make_worker):
    result = ft.retry_with_new_args.delay(0)
    drain_until(make_worker(), result)
    assert result.get(timeout=5) == {"n": 2, "retries": 2}


def test_autoretry_for_retries_and_dont_autoretry_for_does_not(make_worker, tmp_path):
    flaky, fatal = tmp_path / "flaky", tmp_path / "fatal"
    retried = ft.auto.delay(str(flaky))
    not_retried = ft.auto.delay(str(fatal), kind="fatal")
    worker = make_worker()
    drain_until(worker, retried)
    drain_until(worker, not_retried)
    assert retried.failed() and runs(flaky) == 3  # first run + max_retries=2
    assert not_retried.failed() and runs(fatal) == 1
    with pytest.raises(Exception, match="do not retry me"):
        not_retried.get(timeout=5)


def test_retry_shows_retry_state_with_the_reason_until_its_eta(make_worker):
    result = ft.retry_later.delay(1.5)
    worker = make_worker()
    started = time.monotonic()
    deadline = time.monotonic() + 10
    while result.state != states.RETRY and time.monotonic() < deadline:
        worker.step()
    assert result.state == states.RETRY
    assert isinstance(result.info, Retry) or "Retry" in str(result.info)
    for _ in range(5):
        worker.step()
    assert result.state == states.RETRY  # not before its countdown
    drain_until(worker, result)
    assert result.get(timeout=5) == "second run"
    assert time.monotonic() - started >= 1.4


def test_backoff_grows_exponentially_and_is_capped():
    assert [backoff_delay(2, n, 600, jitter=False) for n in range(4)] == [2, 4, 8, 16]
    assert backoff_delay(2, 20, 600, jitter=False) == 600
    assert all(0 <= backoff_delay(2, 3, 600, jitter=True) <= 16 for _ in range(50))


def test_autoretry_uses_backoff_for_the_countdown(monkeypatch):
    from django_taskq.task import build_task

    seen = {}

    def fake_make_retry(task, **options):
        seen.update(options)
        return Retry(when=options.get("countdown"))

    monkeypatch.setattr("django_taskq.retries.make_retry", fake_make_retry)

    def always_fails():
        raise ft.Flaky("x")

    flaky = build_task(always_fails, name="tests.backoff", autoretry_for=(ft.Flaky,),
                       retry_backoff=3, retry_jitter=False)
    from django_taskq.context import Request, activate

    with activate(Request(id="x", task="tests.backoff", retries=2)), pytest.raises(Retry):
        flaky.run()
    assert seen["countdown"] == 12  # 3 * 2**2


def test_eager_retry_runs_again_at_once(settings, tmp_path):
    settings.TASKQ = {**settings.TASKQ, "TASK_ALWAYS_EAGER": True}
    marker = tmp_path / "runs"
    result = ft.retry_until.delay(str(marker), 3)
    assert result.get() == {"run": 3, "retries": 2}


def test_retry_called_directly_raises_the_exception(tmp_path):
    with pytest.raises(ft.Flaky):
        ft.retry_until(str(tmp_path / "runs"), 5)


def test_retry_rejects_unknown_options():
    from django_taskq.context import Request, activate

    with activate(Request(id="x", task=ft.retry_later.name)), \
            pytest.raises(TypeError, match="does not take routing_key; pass .*queue"):
        ft.retry_later.retry(routing_key="other")


@pytest.mark.parametrize("broker_kind", ["memory", "sqlite", "redis"])
def test_retry_options_send_the_retry_elsewhere(make_worker):
    result = ft.retry_elsewhere.delay()
    worker = make_worker(queues=("default", "other"))
    drain_until(worker, result)
    assert result.get(timeout=5) == {"queue": "other", "priority": 7, "why": "moved"}


def test_retry_options_are_checked_in_the_task():
    from django_taskq.context import Request, activate

    with activate(Request(id="x", task=ft.retry_later.name)), \
            pytest.raises(ValueError, match=r"retry\(priority=...\) must be a whole number"):
        ft.retry_later.retry(priority=12)


def test_max_retries_exceeded_error_is_exported():
    assert issubclass(MaxRetriesExceededError, Exception)
    assert AsyncResult("x").id == "x"


@pytest.mark.parametrize("bad", [
    {"time_limit": -1}, {"soft_time_limit": "10"}, {"rate_limit": "100 per m"},
    {"key_rate_limit": "5/s"},
])
def test_bad_task_options_are_clear_errors(bad):
    from django_taskq.options import TaskOptionError
    from django_taskq.task import build_task

    option = next(iter(bad))
    with pytest.raises(TaskOptionError, match=rf"Task tests.bad: {option}"):
        build_task(lambda: None, name="tests.bad", **bad)


def test_retry_throw_false_then_failure_still_retries_and_does_not_leak(make_worker):
    first = ft.retry_then_raise.delay()
    plain = ft.tenant_now.delay()  # an unrelated task after the first on the same thread
    worker = make_worker()
    for result in (first, plain):
        drain_until(worker, result)
    assert first.get(timeout=5) == "retried"
    assert plain.state == states.SUCCESS
    assert plain.backend.get(plain.id).retries == 0  # it did not inherit the first's retry


def test_retry_with_arguments_that_cannot_be_encoded_fails_the_task_not_the_worker(make_worker):
    bad = ft.retry_with_unencodable_args.delay()
    after = ft.tenant_now.delay()
    worker = make_worker()
    drain_until(worker, bad)
    drain_until(worker, after)
    assert bad.state == states.FAILURE
    assert "encode" in str(bad.result).lower() or "serializ" in str(bad.result).lower()
    assert after.state == states.SUCCESS


def test_retries_added_after_a_failed_ack_are_still_sent():
    """A flush that sent its retries but failed to ack must not skip later retries."""
    from django_taskq.brokers.memory import MemoryBroker
    from django_taskq.outcome import Outcome, RetryOrder
    from django_taskq.results.memory import MemoryResultBackend
    from django_taskq.worker.settler import Settler
    from tests.helpers import envelope

    broker, backend = MemoryBroker(), MemoryResultBackend()
    for _ in range(2):
        broker.enqueue(envelope())
    first, second = broker.reserve(["default"], max_messages=2, lease=30, worker="w")
    settler = Settler(broker, backend)

    def retry_of(delivery):
        return Outcome(task_id=delivery.message_id, task_name="t", state=states.RETRY,
                       retry=RetryOrder(eta=None))

    settler.add(first, retry_of(first))
    real_ack, calls = broker.ack_many, []

    def ack_fails_once(deliveries):
        calls.append(len(deliveries))
        if len(calls) == 1:
            raise RuntimeError("ack lost")
        real_ack(deliveries)

    broker.ack_many = ack_fails_once
    with pytest.raises(RuntimeError):
        settler.flush()
    settler.add(second, retry_of(second))
    settler.flush()
    assert broker.size("default") == 2  # one retry each: none skipped, none sent twice
    retried = broker.reserve(["default"], max_messages=5, lease=30, worker="w")
    assert sorted(d.message_id for d in retried) == sorted([first.message_id, second.message_id])
    assert all(d.envelope.headers["retries"] == 1 for d in retried)
