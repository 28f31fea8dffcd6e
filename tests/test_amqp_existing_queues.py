"""Queues a Celery deployment already declared (issue 9), on a real RabbitMQ with real Celery.

Celery declares the queue first: with its defaults (a classic queue without ``x-max-priority``)
or as a quorum queue. Our worker consumes it as it is and our producers send to it (now, with
an ETA, as a retry); nothing Celery had put in it is lost, and one warning per queue says what
it lacks. Queues we declare ourselves keep our arguments.
"""

from __future__ import annotations

import logging
import time
import uuid
from types import SimpleNamespace

import pytest
from celery import Celery
from kombu import Exchange, Queue

from django_taskq import AsyncResult, states
from django_taskq.brokers import get_broker
from django_taskq.brokers.amqp_options import connect, parse_options
from django_taskq.exceptions import BrokerConnectionError
from django_taskq.service_url import parse
from tests.conftest import delete_amqp_queues
from tests.test_amqp_broker import WorkerProcess
from tests.test_worker_process import runs, wait_for
from tests.testapp import feature_tasks as ft
from tests.testapp import tasks

on_rabbitmq = pytest.mark.parametrize("broker_kind", ["amqp"])
ADD = "tests.testapp.tasks.add"
DECLARE_LOG = "django_taskq.brokers.amqp_declare"
MISSING = {  # what each kind of Celery queue lacks, as the warning says it
    "classic": "without x-max-priority: priorities are ignored on it",
    "quorum": "it is a quorum queue: priorities are ignored on it",
    "quorum-limits": "it is a quorum queue: priorities are ignored on it",
}


def celery_settings(kind: str, queue: str) -> dict[str, object]:
    """Celery configuration declaring ``queue`` as ``kind`` says, when it sends to it."""
    if kind == "classic":
        return {}  # Celery's defaults: a missing queue is created classic, no x-max-priority
    if kind == "quorum":
        return {"task_default_queue": queue, "task_default_queue_type": "quorum"}
    arguments = {"x-queue-type": "quorum", "x-delivery-limit": 3,
                 "x-dead-letter-exchange": f"{queue}.dlx"}
    return {"task_default_queue": queue, "task_queues": [
        Queue(queue, Exchange(queue, "direct"), routing_key=queue, queue_arguments=arguments)]}


@pytest.fixture
def new_queue(configured):
    """A queue name of this test's own, deleted afterwards with its delay queues and exchange."""
    queue = f"taskq-test.celery.{uuid.uuid4().hex[:10]}"
    yield queue
    delete_amqp_queues(configured, (queue,))


def celery_app(url: str, **config: object) -> Celery:
    app = Celery("existing", broker=url, set_as_current=False)
    app.conf.update(broker_connection_retry_on_startup=True, **config)
    return app


@pytest.fixture(params=list(MISSING))
def celery_queue(request, configured, new_queue):
    """(Celery app, queue, kind): a Celery client whose queue Celery declares when it sends."""
    app = celery_app(configured, **celery_settings(request.param, new_queue))
    yield app, new_queue, request.param
    app.close()


def declare_warnings(caplog, name: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == DECLARE_LOG and f"{name!r}" in r.getMessage()]


def run_until_ready(worker, results, timeout: float = 20.0, *, reconnect: bool = False) -> None:
    """Step ``worker`` until every result is ready; with ``reconnect``, a lost connection is
    retried on the next step, as ``Worker.run`` does."""
    deadline = time.monotonic() + timeout
    while not all(AsyncResult(r.id).ready() for r in results):
        assert time.monotonic() < deadline, "timed out"
        try:
            worker.step()
        except BrokerConnectionError:
            if not reconnect:
                raise


@on_rabbitmq
def test_celery_declared_queue_is_consumed_as_it_is_and_loses_nothing(
        make_worker, celery_queue, caplog):
    app, queue, kind = celery_queue
    caplog.set_level(logging.WARNING, logger="django_taskq")
    before = [app.send_task(ADD, args=(i, i), queue=queue) for i in range(6)]
    before.append(app.send_task(ADD, args=(50, 50), queue=queue, countdown=0.3))  # Celery ETA
    ours = [tasks.add.apply_async((1, 2), queue=queue),
            tasks.add.apply_async((3, 4), queue=queue, countdown=0.3, priority=9)]
    worker = make_worker(queues=(queue,))
    run_until_ready(worker, before + ours)
    assert [AsyncResult(r.id).get(timeout=5) for r in before] == [0, 2, 4, 6, 8, 10, 100]
    assert [r.get(timeout=5) for r in ours] == [3, 7]
    warned = declare_warnings(caplog, queue)
    assert len(warned) == 1, warned  # one per queue per process: not per step, nor per sender
    assert MISSING[kind] in warned[0]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert get_broker().size(queue) == 0


@on_rabbitmq
def test_retries_reach_a_celery_declared_queue(make_worker, celery_queue, tmp_path):
    app, queue, _ = celery_queue
    app.send_task(ADD, args=(0, 0), queue=queue)  # Celery declares the queue
    marker = tmp_path / "runs"
    at_once = ft.retry_until.apply_async((str(marker), 3), queue=queue)  # back to the queue
    later = ft.retry_later.apply_async((0.3,), queue=queue)  # through a delay queue
    run_until_ready(make_worker(queues=(queue,)), [at_once, later])
    assert at_once.get(timeout=5) == {"run": 3, "retries": 2}
    assert later.get(timeout=5) == "second run"
    assert runs(marker) == 3


@on_rabbitmq
@pytest.mark.subprocess
def test_taskworker_process_consumes_a_celery_declared_queue(configured, new_queue):
    app = celery_app(configured)
    sent = [app.send_task(ADD, args=(i, 1), queue=new_queue) for i in range(5)]
    with WorkerProcess(configured, "-Q", new_queue) as worker:
        wait_for(lambda: all(AsyncResult(r.id).state == states.SUCCESS for r in sent))
        later = [tasks.add.apply_async((i, 2), queue=new_queue) for i in range(3)]
        assert [r.get(timeout=30) for r in later] == [2, 3, 4]
        code, output = worker.stop()
    app.close()
    assert code == 0, output
    assert "PRECONDITION_FAILED" not in output
    assert output.count(f"queue {new_queue!r} was declared without x-max-priority") == 1, output
    assert [AsyncResult(r.id).get(timeout=5) for r in sent] == [1, 2, 3, 4, 5]


@on_rabbitmq
def test_an_exchange_of_another_type_is_used_as_it_is(make_worker, configured, new_queue,
                                                      caplog):
    app = celery_app(configured, task_create_missing_queue_exchange_type="topic")
    caplog.set_level(logging.WARNING, logger="django_taskq")
    theirs = app.send_task(ADD, args=(1, 1), queue=new_queue)  # exchange new_queue is a topic
    ours = tasks.add.apply_async((2, 2), queue=new_queue)  # through the default exchange
    run_until_ready(make_worker(queues=(new_queue,)), [theirs, ours])
    assert (AsyncResult(theirs.id).get(timeout=5), ours.get(timeout=5)) == (2, 4)
    app.close()
    warned = declare_warnings(caplog, new_queue)
    assert len(warned) == 2, warned  # the exchange and the queue, once each
    assert any("exchange" in w and "'topic'" in w for w in warned)


@on_rabbitmq
def test_a_celery_queue_deleted_when_empty_comes_back_with_our_arguments(
        make_worker, configured, new_queue, caplog):
    caplog.set_level(logging.WARNING, logger="django_taskq")
    app = celery_app(configured)
    theirs = app.send_task(ADD, args=(1, 1), queue=new_queue)
    app.close()
    worker = make_worker(queues=(new_queue,))
    run_until_ready(worker, [theirs])
    assert not has_our_arguments(new_queue)
    get_broker().publisher.delete([new_queue])  # empty: deleted, as the warning advises
    # RabbitMQ cancels the worker's consumer: it reconnects and declares the queue as ours,
    # and so does a producer whose message comes back unroutable, whichever is first.
    ours = tasks.add.apply_async((2, 2), queue=new_queue)
    run_until_ready(worker, [ours], reconnect=True)
    assert ours.get(timeout=5) == 4
    assert has_our_arguments(new_queue)
    assert len(declare_warnings(caplog, new_queue)) == 1


@on_rabbitmq
def test_queues_we_declare_keep_our_arguments(configured, new_queue, caplog):
    caplog.set_level(logging.WARNING, logger="django_taskq")
    tasks.add.apply_async((1, 1), queue=new_queue)
    assert has_our_arguments(new_queue)
    assert not declare_warnings(caplog, new_queue)


def has_our_arguments(queue: str) -> bool:
    """Whether ``queue`` is durable with x-max-priority 10 (RabbitMQ refuses otherwise)."""
    from amqp.exceptions import PreconditionFailed

    conn = connect(get_broker().options, heartbeat=0)
    try:
        conn.channel().queue_declare(queue, durable=True, auto_delete=False,
                                     arguments={"x-max-priority": 10})
        return True
    except PreconditionFailed:
        return False
    finally:
        conn.close()


# -- RabbitMQ's refusals as text (no server needed) -------------------------------------------

class RefusingChannel:
    """A declaring channel whose active queue declarations RabbitMQ refuses with ``replies``."""

    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)
        self.declared: list[object] = []

    def exchange_declare(self, *args: object, **kwargs: object) -> None:
        pass

    def queue_bind(self, *args: object) -> None:
        pass

    def queue_declare(self, name: str, passive: bool = False, arguments=None, **flags):
        from amqp.exceptions import PreconditionFailed

        self.declared.append("passive" if passive else arguments)
        if not passive and self.replies:
            raise PreconditionFailed(f"PRECONDITION_FAILED - {self.replies.pop(0)}")
        return SimpleNamespace(message_count=3)


def refused(arg: str, received: str, current: str) -> str:
    return (f"inequivalent arg '{arg}' for queue 'q' in vhost '/': received {received} but "
            f"current is {current}")


@pytest.mark.parametrize("replies, declared, warning", [
    ([refused("x-queue-type", "none", "the value 'quorum' of type 'longstr'"),
      refused("x-max-priority", "the value '10' of type 'signedint'", "none")],
     [{"x-max-priority": 10}, {"x-max-priority": 10, "x-queue-type": "quorum"},
      {"x-queue-type": "quorum"}], "it is a quorum queue"),
    ([refused("x-max-priority", "'10'", "'4'")],
     [{"x-max-priority": 10}, {"x-max-priority": 4}], "priorities above 4 count as 4"),
    ([refused("durable", "'true'", "'false'"), refused("x-max-priority", "'10'", "none")],
     [{"x-max-priority": 10}, {"x-max-priority": 10}, {}], "it is not durable"),
    (["an error worded otherwise"], [{"x-max-priority": 10}, "passive"], "worded otherwise"),
    ([refused("x-max-priority", "the value '10' of type 'signedint'", "none")] * 9,
     [{"x-max-priority": 10}, {}, "passive"], "other settings than ours"),  # no endless loop
])
def test_each_refusal_corrects_one_setting_until_rabbitmq_agrees(caplog, replies, declared,
                                                                 warning):
    from django_taskq.brokers.amqp_declare import declare_task_queue

    caplog.set_level(logging.WARNING, logger="django_taskq")
    options = parse_options(parse(f"amqp://nowhere-{uuid.uuid4().hex}//", setting="BROKER_URL"))
    channel = RefusingChannel(*replies)
    assert declare_task_queue(channel, "q", options) == (3, "q")
    assert channel.declared == declared
    assert warning in " ".join(declare_warnings(caplog, "q"))
    assert declare_task_queue(channel, "q", options) == (3, "q")  # known now: passive
    assert channel.declared[-1] == "passive"
    assert len(declare_warnings(caplog, "q")) == 1
