"""Celery's event messages on Redis and RabbitMQ: what Celery's own ``app.events.Receiver`` (the
receiver Flower and ``celery events`` use) gets from our worker, and the messages themselves
next to the ones Celery's own EventDispatcher publishes."""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any

import pytest
from celery import Celery

from django_taskq import AsyncResult, task
from django_taskq.brokers import get_broker
from django_taskq.events import wire
from django_taskq.events.dispatcher import EventDispatcher
from django_taskq.events.wire import celery_sink_for
from django_taskq.exceptions import BrokerConnectionError

on_brokers = pytest.mark.parametrize("broker_kind", ["redis", "amqp"])


@task(name="wire.add")
def add(x, y):
    return x + y


@task(name="wire.boom")
def boom(message):
    raise KeyError(message)


@task(name="wire.again", bind=True, max_retries=2, default_retry_delay=0)
def again(self):
    if self.request.retries == 0:
        raise self.retry(exc=ValueError("once more"))
    return "done"


class Listener:
    """Celery's event Receiver on a thread, collecting every event it gets."""

    def __init__(self, url: str) -> None:
        self.app = Celery("listener", broker=url, set_as_current=False)
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._receiver: Any = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with self.app.connection() as connection:
            self._receiver = self.app.events.Receiver(connection, handlers={"*": self._take})
            for _ in self._receiver.consume(wakeup=False, safety_interval=0.1):
                pass

    def _take(self, event: dict[str, Any]) -> None:
        with self._lock:
            self.events.append(event)

    def of(self, **match: Any) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if all(e.get(k) == v for k, v in match.items())]

    def start(self, sink: Any) -> None:
        """Start, then probe until the receiver is subscribed (nothing before that arrives)."""
        self._thread.start()
        probe = EventDispatcher("probe@wire", [sink])

        def heard() -> bool:
            probe.send("worker-heartbeat")
            probe.flush()
            return bool(self.of(hostname="probe@wire"))

        wait_for(heard, step=0.1)

    def stop(self) -> None:
        if self._receiver is not None:
            self._receiver.should_stop = True
        self._thread.join(timeout=10)
        self.app.close()


def wait_for(condition, timeout: float = 20.0, step: float = 0.02, worker: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        if worker is not None:
            worker.step()
        else:
            time.sleep(step)


@pytest.fixture
def listener(configured, settings):
    settings.TASKQ = {**settings.TASKQ, "EVENTS_HEARTBEAT": 0.3}
    sink = celery_sink_for(get_broker())
    assert sink is not None
    made = Listener(configured)
    made.start(sink)
    sink.close()
    yield made
    made.stop()


def story(listener: Listener, task_id: str) -> list[str]:
    return [event["type"] for event in listener.of(uuid=task_id)]


@on_brokers
def test_celery_receiver_sees_our_workers_and_tasks(listener, make_worker):
    ok, failed, retried = add.delay(2, 3), boom.delay("gone"), again.delay()
    worker = make_worker()
    hostname = worker.options.hostname
    worker.start()
    try:
        wait_for(lambda: AsyncResult(retried.id).ready() and AsyncResult(failed.id).ready()
                 and AsyncResult(ok.id).ready(), worker=worker)
        wait_for(lambda: listener.of(uuid=retried.id, type="task-succeeded")
                 and listener.of(hostname=hostname, type="worker-heartbeat"), worker=worker)
    finally:
        worker.shutdown()
    wait_for(lambda: listener.of(hostname=hostname, type="worker-offline"))

    assert story(listener, ok.id) == ["task-received", "task-started", "task-succeeded"]
    succeeded = listener.of(uuid=ok.id, type="task-succeeded")[0]
    assert succeeded["name"] == "wire.add" and succeeded["hostname"] == hostname
    assert succeeded["result"] == "5" and succeeded["runtime"] >= 0
    assert listener.of(uuid=ok.id, type="task-received")[0]["args"] == "(2, 3)"
    assert story(listener, failed.id)[-1] == "task-failed"
    assert "KeyError" in listener.of(uuid=failed.id, type="task-failed")[0]["exception"]
    assert story(listener, retried.id)[:3] == ["task-received", "task-started", "task-retried"]
    assert "once more" in listener.of(uuid=retried.id, type="task-retried")[0]["exception"]
    assert story(listener, retried.id)[-1] == "task-succeeded"

    mine = [e["type"] for e in listener.of(hostname=hostname) if e["type"].startswith("worker-")]
    assert mine[0] == "worker-online" and mine[-1] == "worker-offline"
    beat = listener.of(hostname=hostname, type="worker-heartbeat")[-1]
    assert beat["freq"] == 0.3 and beat["sw_ident"] == "django-taskq"
    assert isinstance(beat["active"], int) and len(beat["loadavg"]) == 3
    assert listener.of(hostname=hostname, type="worker-offline")[0]["processed"] >= 4


@on_brokers
def test_celery_state_builds_flowers_picture(listener, make_worker):
    """Fed to ``celery.events.state.State`` (Flower's model): states, worker, runtime."""
    ok, failed = add.delay(1, 1), boom.delay("x")
    worker = make_worker()
    hostname = worker.options.hostname
    worker.start()
    try:
        wait_for(lambda: listener.of(uuid=failed.id, type="task-failed")
                 and listener.of(uuid=ok.id, type="task-succeeded"), worker=worker)
        state = listener.app.events.State()
        for event in list(listener.events):
            state.event(dict(event))
        assert state.workers[hostname].alive
    finally:
        worker.shutdown()
    assert state.tasks[ok.id].state == "SUCCESS" and state.tasks[ok.id].name == "wire.add"
    assert state.tasks[ok.id].worker.hostname == hostname
    assert state.tasks[ok.id].runtime is not None
    assert state.tasks[failed.id].state == "FAILURE"
    wait_for(lambda: listener.of(hostname=hostname, type="worker-offline"))
    for event in listener.of(hostname=hostname, type="worker-offline"):
        state.event(dict(event))
    assert not state.workers[hostname].alive


# -- the messages, next to Celery's own ------------------------------------------------------

def _redis_capture(url: str, send) -> dict[str, Any]:
    import redis

    client = redis.Redis.from_url(url)
    pubsub = client.pubsub()
    pubsub.psubscribe("*")
    wait_for(lambda: pubsub.get_message(timeout=0.1) is not None)  # the psubscribe reply
    send()
    message = None
    while message is None or message["type"] != "pmessage":
        message = pubsub.get_message(timeout=5)
        assert message is not None, "nothing published"
    pubsub.close()
    client.close()
    raw = json.loads(message["data"])
    raw["channel"] = message["channel"].decode()
    raw["event"] = json.loads(base64.b64decode(raw.pop("body")))
    raw["properties"].pop("delivery_tag")
    return raw


def _amqp_capture(url: str, send) -> dict[str, Any]:
    from django_taskq.brokers.amqp_options import connect, parse_options
    from django_taskq.service_url import parse

    connection = connect(parse_options(parse(url, setting="BROKER_URL")), heartbeat=0)
    try:
        channel = connection.channel()
        channel.exchange_declare("celeryev", "topic", durable=True, auto_delete=False)
        queue, _, _ = channel.queue_declare("", exclusive=True)
        channel.queue_bind(queue, "celeryev", "#")
        send()
        box: list[Any] = []
        wait_for(lambda: box.append(channel.basic_get(queue, no_ack=True)) or box[-1])
        message = box[-1]
        return {"properties": dict(message.properties), "event": json.loads(message.body),
                "exchange": message.delivery_info["exchange"],
                "routing_key": message.delivery_info["routing_key"]}
    finally:
        connection.close()


def _stamps(capture: dict[str, Any]) -> list[int]:
    """Take out what differs between two senders (pid, time); the Lamport clocks."""
    events = capture["event"] if isinstance(capture["event"], list) else [capture["event"]]
    for event in events:
        assert event.pop("pid") > 0 and event.pop("timestamp") > 0
    return [event.pop("clock") for event in events]


@on_brokers
@pytest.mark.parametrize("count", [1, 3])
def test_our_messages_are_the_ones_celery_publishes(configured, broker_kind, count):
    """One event: what ``EventDispatcher.send`` publishes. Several task events: the
    ``task.multi`` list a Celery worker's buffering dispatcher publishes."""
    batch = [{"uuid": f"id{n}", "name": "wire.add", "result": "3", "runtime": 0.5}
             for n in range(count)]
    capture = _redis_capture if broker_kind == "redis" else _amqp_capture

    def celerys() -> None:
        app = Celery("peer", broker=configured, set_as_current=False)
        with app.connection_for_write() as connection:
            dispatcher = app.events.Dispatcher(connection, hostname="w@wire",
                                               buffer_group=["task"] if count > 1 else None,
                                               buffer_limit=count)
            for fields in batch:
                dispatcher.send("task-succeeded", **fields)
            dispatcher.close()
        app.close()

    def ours() -> None:
        sink = celery_sink_for(get_broker())
        assert sink is not None
        dispatcher = EventDispatcher("w@wire", [sink])
        for fields in batch:
            dispatcher.send("task-succeeded", **fields)
        dispatcher.close()

    theirs, mine = capture(configured, celerys), capture(configured, ours)
    assert _stamps(mine) == list(range(1, count + 1))
    _stamps(theirs)
    assert mine == theirs


@on_brokers
def test_unreachable_broker_raises_and_the_next_publish_reconnects(configured, broker_kind):
    from django_taskq.brokers.memory import MemoryBroker

    sink: Any = celery_sink_for(get_broker())
    event = {"type": "worker-heartbeat", "hostname": "w@wire", "timestamp": 1.0}
    if broker_kind == "redis":
        from django_taskq.events.wire_redis import RedisEventSink
        from django_taskq.service_url import parse

        dead = RedisEventSink(parse("redis://127.0.0.1:1/0", setting="BROKER_URL"))
    else:
        from django_taskq.brokers.amqp_options import parse_options
        from django_taskq.events.wire_amqp import AmqpEventSink
        from django_taskq.service_url import parse

        dead = AmqpEventSink(parse_options(parse("amqp://guest:guest@127.0.0.1:1//",
                                                 setting="BROKER_URL")))
    with pytest.raises(BrokerConnectionError):
        dead.publish([event])
    sink.publish([event])
    sink.close()
    sink.publish([event])  # opens a new connection after close
    sink.close()
    assert celery_sink_for(MemoryBroker()) is None  # no event exchange there



def test_task_events_go_in_lists_worker_events_alone_in_order():
    def event(kind: str, host: str = "w@h") -> dict[str, Any]:
        return {"type": kind, "hostname": host, "uuid": kind}

    batch = [event("task-received"), event("task-started"), event("worker-heartbeat"),
             event("task-succeeded"), event("task-received", "other@h"),
             *[event("task-failed")] * (wire.MULTI_LIMIT + 1)]
    sent = wire.messages(batch)
    assert [(m.routing_key, m.hostname) for m in sent] == [
        ("task.multi", "w@h"), ("worker.heartbeat", "w@h"), ("task.succeeded", "w@h"),
        ("task.received", "other@h"), ("task.multi", "w@h"), ("task.failed", "w@h")]
    assert [e["type"] for e in json.loads(sent[0].body)] == ["task-received", "task-started"]
    assert len(json.loads(sent[4].body)) == wire.MULTI_LIMIT
    assert json.loads(sent[1].body)["loadavg"] == [0.0, 0.0, 0.0]  # Celery always sends three
    assert sent[1].headers == {"hostname": "w@h"}


def test_a_value_json_cannot_hold_goes_as_text():
    [message] = wire.messages([{"type": "worker-online", "hostname": "w", "when": b"x"}])
    assert json.loads(message.body)["when"] == "b'x'"
