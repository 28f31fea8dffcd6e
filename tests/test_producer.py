"""The calling API: options, validation, transactions, bulk sends, eager mode."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from django.db import transaction

from django_taskq import states
from django_taskq.brokers import get_broker
from django_taskq.exceptions import BrokerConnectionError, SerializationError
from django_taskq.message import decode
from django_taskq.registry import registry
from tests.testapp import tasks


def sent(queue="default"):
    """Messages waiting in the memory broker's queue, decoded, oldest first."""
    broker = get_broker()
    deliveries = broker.reserve([queue], max_messages=100, lease=5, worker="t")
    broker.release(deliveries)
    return [decode(d.envelope) for d in deliveries]


def test_task_is_registered_by_module_and_name():
    assert registry.get("tests.testapp.tasks.add") is tasks.add
    assert registry.get("tests.echo") is tasks.echo


def test_calling_a_task_runs_it_inline():
    assert tasks.add(2, 3) == 5
    assert tasks.whoami()["task"] == "tests.testapp.tasks.whoami"


def test_delay_sends_protocol_v2_message():
    result = tasks.add.delay(2, 3)
    [message] = sent()
    assert message.task_id == result.id
    assert (message.args, message.kwargs) == ((2, 3), {})
    assert message.headers["lang"] == "py"
    assert message.headers["root_id"] == result.id
    assert message.headers["timelimit"] == [None, None]
    assert message.headers["argsrepr"] == "(2, 3)"


def test_apply_async_options_reach_the_message():
    eta = datetime(2030, 1, 1, tzinfo=timezone.utc)
    result = tasks.add.apply_async(
        (1,), {"y": 2}, eta=eta, expires=timedelta(hours=1), queue="q2", priority=7,
        task_id="my-id", headers={"tenant": "acme"}, time_limit=30, soft_time_limit=20)
    assert result.id == "my-id"
    broker = get_broker()
    assert broker.size("q2") == 1
    [delivery] = broker.reserve(["q2"], max_messages=1, lease=5, worker="t") or [None]
    assert delivery is None  # not due before its eta
    message_headers = broker._queues["q2"][0][3].headers
    assert message_headers["eta"] == eta.isoformat()
    assert message_headers["tenant"] == "acme"
    assert message_headers["timelimit"] == [30, 20]
    assert broker._queues["q2"][0][3].priority == 7


def test_countdown_sets_eta():
    before = datetime.now(timezone.utc)
    tasks.add.apply_async((1, 2), countdown=60)
    envelope = get_broker()._queues["default"][0][3]
    eta = datetime.fromisoformat(envelope.headers["eta"])
    assert before + timedelta(seconds=59) < eta < before + timedelta(seconds=62)


@pytest.mark.parametrize("options, error", [
    ({"priority": 10}, "priority must be a whole number from 0 to 9"),
    ({"priority": "high"}, "priority must be"),
    ({"countdown": 5, "eta": datetime(2030, 1, 1, tzinfo=timezone.utc)}, "either countdown"),
])
def test_bad_options_are_clear_errors(options, error):
    with pytest.raises(ValueError, match=error):
        tasks.add.apply_async((1, 2), **options)
    assert get_broker().size("default") == 0


def test_arguments_that_cannot_be_encoded_are_refused_at_send():
    with pytest.raises(SerializationError, match="not JSON serializable"):
        tasks.echo.delay(object())
    assert get_broker().size("default") == 0


def test_args_must_be_a_sequence():
    with pytest.raises(TypeError, match="args must be a list or tuple"):
        tasks.add.apply_async("12")


def test_typed_values_round_trip():
    from decimal import Decimal
    from uuid import UUID

    when = datetime(2024, 5, 1, 12, 30, tzinfo=timezone.utc)
    tasks.echo.delay(when, Decimal("1.10"), UUID(int=5))
    [message] = sent()
    assert message.args == (when, Decimal("1.10"), UUID(int=5))


def test_bulk_send_uses_one_call_and_keeps_order():
    results = tasks.add.delay_many([(i, i) for i in range(50)])
    assert len({r.id for r in results}) == 50
    assert [m.args for m in sent()] == [(i, i) for i in range(50)]
    pairs = tasks.add.apply_many([((1,), {"y": 2})], queue="other")
    assert [m.kwargs for m in sent("other")] == [{"y": 2}]
    assert pairs[0].state == states.PENDING


def test_apply_many_rejects_bad_items():
    with pytest.raises(TypeError, match=r"\(args, kwargs\) pairs"):
        tasks.add.apply_many([(1, 2, 3)])


def test_eager_mode_runs_inline(settings):
    settings.TASKQ = {**settings.TASKQ, "TASK_ALWAYS_EAGER": True}
    assert tasks.add.delay(2, 2).get() == 4
    failed = tasks.fail.delay("eager")
    assert failed.failed()
    with pytest.raises(ValueError, match="eager"):
        failed.get()
    assert get_broker().size("default") == 0


@pytest.mark.django_db(transaction=True)
def test_delay_on_commit_waits_for_commit(settings):
    with transaction.atomic():
        result = tasks.add.delay_on_commit(1, 2)
        assert get_broker().size("default") == 0
    assert get_broker().size("default") == 1
    assert [m.task_id for m in sent()] == [result.id]
    with pytest.raises(RuntimeError), transaction.atomic():
        tasks.add.delay_on_commit(1, 2)
        raise RuntimeError
    assert get_broker().size("default") == 1


@pytest.mark.django_db(transaction=True)
def test_eager_delay_on_commit_runs_at_commit(settings):
    settings.TASKQ = {**settings.TASKQ, "TASK_ALWAYS_EAGER": True}
    with transaction.atomic():
        result = tasks.add.delay_on_commit(3, 4)
        assert result.state == states.PENDING
    assert result.get() == 7


@pytest.mark.django_db(transaction=True)
def test_database_broker_enqueue_rolls_back_with_the_transaction(settings):
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": "db://default",
                      "RESULT_BACKEND": "db://default"}
    with pytest.raises(RuntimeError), transaction.atomic():
        result = tasks.add.delay(1, 2)
        raise RuntimeError
    assert get_broker().size("default") == 0
    assert not result.known  # no PENDING record survives the rollback either


def test_unreachable_database_is_a_broker_error(settings, django_db_blocker):
    settings.DATABASES["gone"] = {
        "ENGINE": "django.db.backends.postgresql", "NAME": "x", "HOST": "127.0.0.1", "PORT": 1,
        "USER": "x", "PASSWORD": "", "OPTIONS": {"connect_timeout": 2}, "TIME_ZONE": None,
        "CONN_MAX_AGE": 0, "CONN_HEALTH_CHECKS": False, "AUTOCOMMIT": True,
        "ATOMIC_REQUESTS": False, "TEST": {}}
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": "db://gone", "RESULT_BACKEND": "memory://"}
    try:
        with django_db_blocker.unblock(), pytest.raises(BrokerConnectionError,
                                                        match="could not enqueue"):
            tasks.add.delay(1, 2)
    finally:
        from django.db import connections

        connections["gone"].close()
        del connections["gone"]
        del settings.DATABASES["gone"]
