"""Calling: every apply_async option of Celery's calling API, send_task, the
publish signals and the publish retry policy."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from django_taskq import AsyncResult, calloptions, producer, signals, states
from django_taskq.brokers import get_broker
from django_taskq.brokers.memory import MemoryBroker
from django_taskq.exceptions import BrokerConnectionError
from django_taskq.registry import registry
from django_taskq.result import EagerResult
from tests.helpers import dead_letters
from tests.testapp import surface_tasks as st
from tests.testapp import tasks

memory_only = pytest.mark.parametrize("broker_kind", ["memory"])

VALUES = {
    "countdown": 5, "eta": datetime(2030, 1, 1, tzinfo=timezone.utc), "expires": 60,
    "queue": "default", "routing_key": "rk", "exchange": "ex", "priority": 3,
    "serializer": "json", "task_id": "fixed-id", "headers": {"a": 1}, "shadow": "shown",
    "argsrepr": "(...)", "kwargsrepr": "{...}", "ignore_result": True, "time_limit": 10,
    "soft_time_limit": 5, "root_id": "root", "parent_id": "parent", "group_id": "group",
    "group_index": 0, "reply_to": "replies", "correlation_id": "corr", "retry": False,
    "retry_policy": {"max_retries": 1}, "stamped_headers": ["s"], "stamps": {"s": 1},
    "replaced_task_nesting": 1, "periodic_task_name": "nightly", "exchange_type": "direct",
    "declare": [], "timeout": 1.0, "confirm_timeout": 1.0, "producer": None,
    "connection": None, "publisher": None, "add_to_parent": True, "mandatory": False,
    "immediate": False, "delivery_mode": 2, "compression": "zlib", "link": None,
    "link_error": None, "chain": None, "chord": None, "MessageGroupId": "tenant-7",
    "MessageDeduplicationId": "once",
}


def reserve_one(queue="default"):
    [delivery] = get_broker().reserve([queue], max_messages=10, lease=30, worker="t")
    return delivery.envelope


def test_the_table_covers_every_accepted_option():
    assert set(VALUES) == calloptions.ACCEPTED


@memory_only
@pytest.mark.parametrize("name", sorted(calloptions.ACCEPTED))
def test_every_accepted_option_is_accepted(configured, name):
    result = tasks.add.apply_async((1, 2), **{name: VALUES[name]})
    assert isinstance(result, AsyncResult)
    assert get_broker().size(VALUES["queue"]) == 1


@memory_only
def test_an_unknown_option_is_a_type_error_naming_it_and_the_accepted_ones(configured):
    with pytest.raises(TypeError, match="bogus") as caught:
        tasks.add.apply_async((1, 2), bogus=1)
    assert "countdown" in str(caught.value) and "soft_time_limit" in str(caught.value)
    with pytest.raises(TypeError, match="bogus"):
        producer.send_task("anything", bogus=1)
    assert get_broker().size("default") == 0


@memory_only
@pytest.mark.parametrize("name", ["link", "link_error", "chain", "chord"])
def test_workflow_options_that_are_not_signatures_are_a_clear_error(configured, name):
    with pytest.raises(TypeError, match="signature"):
        tasks.add.apply_async((1, 2), **{name: tasks.echo})
    assert get_broker().size("default") == 0


@memory_only
def test_link_and_link_error_travel_in_the_body_as_celery_writes_them(configured):
    echo = {"task": "tests.echo", "args": [1], "kwargs": {}, "options": {},
            "subtask_type": None, "immutable": False}
    tasks.add.apply_async((1, 2), link=echo, link_error=[{**echo, "immutable": True}])
    [delivery] = get_broker().reserve(["default"], max_messages=1, lease=10, worker="w")
    _, _, embed = json.loads(delivery.envelope.body)
    assert embed == {"callbacks": [echo], "errbacks": [{**echo, "immutable": True}],
                     "chain": None, "chord": None}


@memory_only
@pytest.mark.parametrize("headers", ["x-trace", [("a", 1)], 5])
def test_headers_that_are_not_a_dict_are_a_clear_error(configured, headers):
    with pytest.raises(ValueError, match="headers must be a dict"):
        tasks.add.apply_async((1, 2), headers=headers)


@memory_only
def test_countdown_and_eta_together_are_refused(configured):
    with pytest.raises(ValueError, match="either countdown or eta"):
        tasks.add.apply_async((1, 2), countdown=1, eta=VALUES["eta"])


# -- honoured options reach the envelope and the worker -----------------------------------

def drain(worker, *results, rounds=40):
    for _ in range(rounds):
        worker.step()
        if results and all(r.ready() for r in results):
            break


def test_honoured_options_reach_the_worker(make_worker, broker_kind):
    result = st.request_fields.apply_async(
        (1,), {"k": 2}, queue="other", routing_key="rk.other", priority=5, shadow="displayed",
        argsrepr="(secret,)", kwargsrepr="{hidden}", headers={"x-trace": "t-1", "tenant": "a"},
        group_id="g-1", group_index=2, root_id="root-1", parent_id="parent-1",
        reply_to="replies", correlation_id="corr-1", time_limit=30, soft_time_limit=20,
        task_id="chosen-id", expires=3600)
    assert result.id == "chosen-id"
    drain(make_worker(queues=("default", "other")), result)
    fields = result.get(timeout=5)
    assert fields["id"] == "chosen-id"
    # RabbitMQ reports the routing key it delivered with: our queues are bound by their name.
    expected_key = "other" if broker_kind == "amqp" else "rk.other"
    assert fields["delivery_info"]["routing_key"] == expected_key
    assert fields["delivery_info"]["queue"] == "other"
    assert fields["delivery_info"]["priority"] == 5
    assert fields["shadow"] == "displayed"
    assert (fields["argsrepr"], fields["kwargsrepr"]) == ("(secret,)", "{hidden}")
    headers = fields["headers"]  # merged flat into the message; the custom ones, as Celery's
    assert headers == {"x-trace": "t-1", "tenant": "a"} and fields["x-trace"] == "t-1"
    assert (fields["group"], fields["group_index"]) == ("g-1", 2)
    assert (fields["root_id"], fields["parent_id"]) == ("root-1", "parent-1")
    assert (fields["reply_to"], fields["correlation_id"]) == ("replies", "corr-1")
    assert fields["timelimit"] == [30.0, 20.0]
    assert fields["expires"] is not None


def test_extended_results_keep_the_arguments_and_the_queue(make_worker, settings):
    settings.TASKQ = {**settings.TASKQ, "RESULT_EXTENDED": True}
    result = tasks.echo.apply_async((1, "two"), {"three": 3}, queue="other")
    worker = make_worker(queues=("other",))
    drain(worker, result)
    assert result.get(timeout=5) == {"args": [1, "two"], "kwargs": {"three": 3}}
    assert (result.args, result.kwargs, result.queue) == ([1, "two"], {"three": 3}, "other")
    assert (result.name, result.worker) == ("tests.echo", worker.options.hostname)


@memory_only
def test_call_headers_cannot_replace_the_protocol_headers(configured):
    tasks.add.apply_async((1, 2), headers={"id": "forged", "task": "other.task", "x": 1})
    envelope = reserve_one()
    assert envelope.task_name == "tests.testapp.tasks.add" and envelope.message_id != "forged"
    assert envelope.headers["x"] == 1


def test_ignore_result_call_option_stores_nothing(make_worker):
    result = tasks.add.apply_async((1, 2), ignore_result=True)
    drain(make_worker(), rounds=5)
    assert not result.known and get_broker().size("default") == 0


def test_countdown_and_eta_hold_the_task_back(make_worker):
    before = datetime.now(timezone.utc)
    later = tasks.add.apply_async((1, 2), countdown=3600)
    at = tasks.add.apply_async((2, 2), eta=before + timedelta(hours=2))
    now = tasks.add.apply_async((3, 3), countdown=0)
    drain(make_worker(), now)
    assert now.get(timeout=5) == 6
    assert later.state == at.state == states.PENDING
    assert get_broker().size("default") == 2


@memory_only
def test_countdown_eta_and_expires_in_the_message(configured):
    before = datetime.now(timezone.utc)
    tasks.add.apply_async((1, 2), countdown=60, expires=timedelta(minutes=5))
    envelope = get_broker()._queues["default"][0][3]
    eta = datetime.fromisoformat(envelope.headers["eta"])
    expires = datetime.fromisoformat(envelope.headers["expires"])
    assert before + timedelta(seconds=59) < eta < before + timedelta(seconds=62)
    assert envelope.eta == eta
    assert before + timedelta(seconds=299) < expires < before + timedelta(seconds=302)


def test_expires_in_the_past_revokes_the_task(make_worker):
    result = tasks.add.apply_async((1, 2), expires=datetime.now(timezone.utc) - timedelta(seconds=1))
    drain(make_worker(), result)
    assert result.state == states.REVOKED


# -- send_task --------------------------------------------------------------------------

@memory_only
def test_send_task_of_a_registered_task_uses_its_options(configured):
    result = producer.send_task(st.optioned.name)
    envelope = reserve_one("surface")
    assert envelope.priority == 7 and envelope.content_type == "application/x-msgpack"
    assert envelope.message_id == result.id


def test_send_task_of_a_name_only_the_worker_knows(make_worker):
    name = st.WorkerOnly.name
    assert name not in registry
    result = producer.send_task(name, ("x",), {}, countdown=0)
    registry.register(st.WorkerOnly())
    try:
        drain(make_worker(), result)
    finally:
        registry.unregister(name)
    assert result.get(timeout=5) == "worker ran x"


def test_send_task_of_a_name_nobody_knows_is_dead_lettered(make_worker):
    result = producer.send_task("no.such.task", (1,), {"a": 2})
    drain(make_worker(), result)
    assert result.state == states.FAILURE
    [(dead_id, reason)] = dead_letters(get_broker())
    assert dead_id == result.id and reason.startswith("unknown task")


@memory_only
def test_send_task_under_always_eager_runs_a_registered_task_here(configured, settings):
    settings.TASKQ = {**settings.TASKQ, "TASK_ALWAYS_EAGER": True}
    result = producer.send_task("tests.testapp.tasks.add", (2, 3))
    assert isinstance(result, EagerResult) and result.get() == 5
    assert get_broker().size("default") == 0
    unknown = producer.send_task("no.such.task", (1,))  # nothing to run here: it is sent
    assert not isinstance(unknown, EagerResult)
    assert get_broker().size("default") == 1


@memory_only
def test_send_task_from_inside_a_task_is_a_child_of_it(configured):
    from django_taskq.context import Request, activate

    with activate(Request(id="p-1", task="x", root_id="r-1")):  # as inside a running task
        child = producer.send_task("tests.testapp.tasks.add", (1, 2))
    envelope = reserve_one()
    assert envelope.message_id == child.id
    assert (envelope.headers["parent_id"], envelope.headers["root_id"]) == ("p-1", "r-1")


# -- publish signals --------------------------------------------------------------------

@pytest.fixture
def publish_receivers():
    seen = []

    def before(sender, headers, properties, **kwargs):
        seen.append(("before", sender, dict(headers), kwargs))
        headers["x-added"] = "by receiver"

    def after(sender, **kwargs):
        kwargs.pop("signal", None)
        seen.append(("after", sender, kwargs))

    signals.before_task_publish.connect(before, weak=False)
    signals.after_task_publish.connect(after, weak=False)
    yield seen
    signals.before_task_publish.disconnect(before)
    signals.after_task_publish.disconnect(after)


def test_a_header_added_before_publish_reaches_the_worker(make_worker, publish_receivers):
    result = st.request_fields.apply_async((1,), {"k": 2}, routing_key="rk")
    drain(make_worker(), result)
    assert result.get(timeout=5)["headers"]["x-added"] == "by receiver"
    [before] = [s for s in publish_receivers if s[0] == "before"]
    assert before[1] == st.request_fields.name
    assert before[3]["body"] == ([1], {"k": 2}, {"callbacks": None, "errbacks": None,
                                                  "chain": None, "chord": None})
    assert before[3]["routing_key"] == "rk" and "retry_policy" in before[3]
    [after] = [s for s in publish_receivers if s[0] == "after"]
    assert after[1] == st.request_fields.name
    # Celery's arguments, and ours: the queue the message went to.
    assert set(after[2]) == {"body", "exchange", "routing_key", "headers", "queue"}
    assert after[2]["headers"]["x-added"] == "by receiver"
    assert after[2]["headers"]["id"] == result.id
    assert after[2]["body"][0] == [1] and after[2]["routing_key"] == "rk"


# -- publish retry ----------------------------------------------------------------------

class FlakyBroker(MemoryBroker):
    """Refuses the first ``failures`` sends, each after ``takes`` fake seconds."""

    def __init__(self, fake_time, failures, takes=0.0):
        super().__init__()
        self.fake_time, self.failures, self.takes, self.tries = fake_time, failures, takes, 0

    def enqueue_many(self, envelopes):
        self.tries += 1
        self.fake_time.now += self.takes
        if self.tries <= self.failures:
            raise BrokerConnectionError("connection refused")
        super().enqueue_many(envelopes)


class FakeTime:
    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def flaky(monkeypatch, configured):
    fake = FakeTime()
    monkeypatch.setattr(producer, "time", fake)

    def install(failures, takes=0.0):
        broker = FlakyBroker(fake, failures, takes)
        monkeypatch.setattr("django_taskq.brokers.get_broker", lambda: broker)
        return broker

    return fake, install


@memory_only
def test_quick_broker_failures_are_retried_per_the_policy(flaky, settings):
    fake, install = flaky
    settings.TASKQ = {**settings.TASKQ, "TASK_PUBLISH_RETRY_POLICY": {
        "max_retries": 3, "interval_start": 0.5, "interval_step": 0.25, "interval_max": 0.6}}
    broker = install(failures=2)
    result = tasks.add.delay(1, 2)
    assert broker.tries == 3 and broker.size("default") == 1
    assert fake.sleeps == [0.5, 0.6]  # interval_start, then + step capped at interval_max
    assert isinstance(result, AsyncResult)


@memory_only
def test_more_failures_than_the_policy_allows_raise(flaky):
    _, install = flaky
    broker = install(failures=10)
    with pytest.raises(BrokerConnectionError, match="could not enqueue"):
        tasks.add.apply_async((1, 2), retry_policy={"max_retries": 2})
    assert broker.tries == 3


@memory_only
def test_retry_false_does_not_retry(flaky):
    fake, install = flaky
    broker = install(failures=1)
    with pytest.raises(BrokerConnectionError):
        tasks.add.apply_async((1, 2), retry=False)
    assert broker.tries == 1 and fake.sleeps == []


@memory_only
def test_task_publish_retry_setting_false_does_not_retry(flaky, settings):
    _, install = flaky
    settings.TASKQ = {**settings.TASKQ, "TASK_PUBLISH_RETRY": False}
    broker = install(failures=1)
    with pytest.raises(BrokerConnectionError):
        tasks.add.delay(1, 2)
    assert broker.tries == 1


@memory_only
def test_a_slow_failure_is_not_retried(flaky):
    fake, install = flaky
    broker = install(failures=1, takes=producer.SLOW_FAILURE)
    with pytest.raises(BrokerConnectionError):
        tasks.add.delay(1, 2)
    assert broker.tries == 1 and fake.sleeps == []


@memory_only
def test_send_task_retries_too(flaky):
    _, install = flaky
    broker = install(failures=1)
    producer.send_task("no.such.task", task_id=str(uuid.uuid4()))
    assert broker.tries == 2 and broker.size("default") == 1
