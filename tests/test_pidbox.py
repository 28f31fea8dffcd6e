"""Celery's remote control (pidbox) reaches our workers on Redis and RabbitMQ.

The unit cases drive :class:`PidboxBridge` through a fake transport (addressing, expiry, the
reply's shape, a failing broker). The live cases run one worker loop in a thread per broker and
ask it with a real Celery app (``celery.Celery(broker=url).control``), as ``celery inspect``,
``celery control`` and Flower do.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connections

from django_taskq import task
from django_taskq.control import get_control_store
from django_taskq.registry import registry
from django_taskq.service_url import mask
from django_taskq.worker import pidbox
from django_taskq.worker.pidbox import Incoming, PidboxBridge

QUEUE = "pidbox"
HOST = "pidbox@test"
#: Seconds a test waits for something that happens within a poll or two (generous for CI).
PATIENCE = 20.0


@task(name="tests.pidbox.gated")
def gated(gate: str) -> str:
    """Wait until the file ``gate`` exists."""
    deadline = time.monotonic() + 60
    while not Path(gate).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return "done"


def eventually(check: Any, what: str) -> Any:
    """``check()``'s first truthy value, polled until PATIENCE."""
    deadline = time.monotonic() + PATIENCE
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


# -- the bridge, on a fake transport ---------------------------------------------------------

class FakeTransport:
    def __init__(self, messages: list[Incoming], fail: bool = False) -> None:
        self.messages, self.fail = messages, fail
        self.replies: list[tuple[Any, str, str, dict[str, Any]]] = []
        self.closed = 0

    def receive(self, limit: int) -> list[Incoming]:
        if self.fail:
            raise OSError("broker down")
        taken, self.messages = self.messages[:limit], self.messages[limit:]
        return taken

    def reply(self, body: bytes, exchange: str, routing_key: str,
              headers: dict[str, Any]) -> None:
        self.replies.append((json.loads(body), exchange, routing_key, headers))

    def close(self) -> None:
        self.closed += 1


class FakeWorker:
    class options:  # noqa: N801 - stands for WorkerOptions
        hostname = HOST

    def events_clock(self) -> int:
        return 7


class FakeRemote:
    def __init__(self) -> None:
        self.ran: list[tuple[str, dict[str, Any]]] = []

    def run(self, name: str, arguments: dict[str, Any]) -> Any:
        self.ran.append((name, arguments))
        return {"ok": name}


def command(method: str = "ping", *, expires: float = 0, content_type: str = "application/json",
            **fields: Any) -> Incoming:
    body = {"method": method, "arguments": {}, "destination": None, "pattern": None,
            "matcher": None, "ticket": "t-1",
            "reply_to": {"exchange": "reply.celery.pidbox", "routing_key": "oid-1"}} | fields
    return Incoming(json.dumps(body).encode(), content_type, {"clock": 3, "expires": expires})


def bridge(*messages: Incoming, fail: bool = False) -> tuple[PidboxBridge, FakeTransport,
                                                            FakeRemote]:
    transport, remote = FakeTransport(list(messages), fail), FakeRemote()
    made = PidboxBridge(FakeWorker(), remote, transport, clock=lambda: 1000.0)  # type: ignore[arg-type]
    return made, transport, remote


def test_a_command_is_answered_as_kombu_replies() -> None:
    made, transport, remote = bridge(command("rate_limit", arguments={"task_name": "t",
                                                                      "rate_limit": "1/s"}))
    assert made.poll() == 1
    assert remote.ran == [("rate_limit", {"task_name": "t", "rate_limit": "1/s"})]
    assert transport.replies == [({HOST: {"ok": "rate_limit"}}, "reply.celery.pidbox", "oid-1",
                                  {"ticket": "t-1", "clock": 7})]


def test_a_cast_runs_without_a_reply() -> None:
    made, transport, remote = bridge(command("pool_grow", reply_to=None, ticket=None))
    assert made.poll() == 1
    assert remote.ran == [("pool_grow", {})] and transport.replies == []


@pytest.mark.parametrize(("fields", "runs"), [
    ({"destination": [HOST, "other@x"]}, True),
    ({"destination": ["other@x"]}, False),
    ({"pattern": "pidbox@*", "matcher": "glob"}, True),
    ({"pattern": "celery@*", "matcher": "glob"}, False),
    ({"pattern": r"pid\w+@", "matcher": "pcre"}, True),
    ({"pattern": r"test", "matcher": "pcre"}, False),  # matched from the start, as re.match
    ({"pattern": "pidbox@*"}, True),  # a pattern without a matcher: every worker, as kombu
])
def test_commands_are_addressed_as_kombu_nodes_decide(fields: dict[str, Any], runs: bool) -> None:
    made, transport, remote = bridge(command(**fields))
    assert made.poll() == int(runs)
    assert len(transport.replies) == int(runs)


def test_expired_and_malformed_commands_are_skipped(caplog: pytest.LogCaptureFixture) -> None:
    late = 1000.0 - pidbox.EXPIRES_GRACE - 1
    made, transport, remote = bridge(
        command(expires=late), command(content_type="application/x-python-serialize"),
        Incoming(b"[1, 2]", "application/json"), command(arguments=[1]),
        command(pattern="x", matcher="regex"), command(expires=1000.0 - 1))  # the last: in grace
    assert made.poll() == 1
    assert len(remote.ran) == 1 and len(transport.replies) == 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 4, warnings
    assert any("only JSON" in w for w in warnings)
    assert any("unknown matcher 'regex'" in w for w in warnings)


def test_a_failing_broker_is_logged_once_and_retried(caplog: pytest.LogCaptureFixture,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    made, transport, remote = bridge(command(), fail=True)
    monkeypatch.setattr(pidbox, "RETRY_AFTER", 0.0)
    assert made.poll() == 0 and made.poll() == 0
    assert transport.closed == 2
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    transport.fail = False
    assert made.poll() == 1 and len(transport.replies) == 1


def test_redis_messages_and_reply_routing_follow_kombu() -> None:
    from django_taskq.worker import pidbox_redis

    sent = pidbox_redis.reply_message(b'{"h": 1}', "reply.celery.pidbox", "oid-1",
                                      {"ticket": "t"})
    parsed = pidbox_redis.parse(sent)
    assert (parsed.body, parsed.content_type, parsed.headers) == (
        b'{"h": 1}', "application/json", {"ticket": "t"})
    assert json.loads(sent)["properties"]["delivery_info"] == {
        "exchange": "reply.celery.pidbox", "routing_key": "oid-1"}
    plain = json.dumps({"body": '{"method": "ping"}', "content-type": "application/json"})
    assert pidbox_redis.parse(plain).body == b'{"method": "ping"}'
    members = {b"oid-1\x06\x16\x06\x16oid-1.reply.celery.pidbox",
               b"oid-2\x06\x16\x06\x16oid-2.reply.celery.pidbox"}
    assert pidbox_redis.bound_queues(members, "oid-1") == ["oid-1.reply.celery.pidbox"]
    assert pidbox_redis.bound_queues(members, "gone") == []
    with pytest.raises(ValueError, match="not a kombu message"):
        pidbox_redis.parse("[1]")


# -- a live worker, asked by a real Celery app ----------------------------------------------

@pytest.fixture(autouse=True)
def quick_monitor(monkeypatch: pytest.MonkeyPatch) -> None:
    """The monitor ticks every FLUSH_EVERY (0.25 s): more often here, for speed."""
    from django_taskq.worker import monitor

    monkeypatch.setattr(monitor, "FLUSH_EVERY", 0.02)


@contextlib.contextmanager
def live_worker(hostname: str) -> Iterator[Any]:
    """A threads-pool worker of concurrency 2 looping in a thread."""
    from django_taskq.worker import Worker, WorkerOptions

    worker = Worker(WorkerOptions.from_settings(hostname=hostname, queues=(QUEUE,),
                                                pool="threads", concurrency=2))

    def run() -> None:
        try:
            worker.run()
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, name=f"worker-{hostname}", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.change(worker.request_stop)
        thread.join(PATIENCE)
        assert not thread.is_alive(), "the worker did not stop"


@contextlib.contextmanager
def celery_app(url: str) -> Iterator[Any]:
    """A plain Celery app on our broker (no tasks of its own), as Flower or a script has."""
    import celery

    app = celery.Celery("pidbox-test", broker=url.split("?", 1)[0], set_as_current=False)
    try:
        yield app
    finally:
        app.close()


@pytest.fixture
def reset_rate() -> Iterator[None]:
    yield
    registry.get("tests.pidbox.gated").forget_options()


@pytest.mark.network_broker
@pytest.mark.django_db(transaction=True, databases="__all__")
@pytest.mark.parametrize("kind", ["redis", "amqp"])
def test_celery_inspect_and_control_reach_a_live_worker(
        kind: str, request: pytest.FixtureRequest, settings: Any, tmp_path: Path,
        reset_rate: None) -> None:
    from tests.conftest import worker_urls

    url, _ = worker_urls(request, settings, kind)
    settings.TASKQ = {**settings.TASKQ, "POLL_INTERVAL": 0.01, "REVOKE_POLL_INTERVAL": 0.05,
                      "EVENTS_CELERY": True}
    gate = tmp_path / "gate"
    with live_worker(HOST) as worker, celery_app(url) as app:
        ask = app.control.inspect(timeout=PATIENCE, destination=[HOST])
        eventually(lambda: app.control.inspect(timeout=0.5, destination=[HOST]).ping(),
                   "the worker's first pidbox answer")
        # A broadcast without destination reaches it too (Celery waits out the timeout).
        assert app.control.inspect(timeout=1).ping() == {HOST: {"ok": "pong"}}
        assert app.control.inspect(timeout=0.3, destination=["other@host"]).ping() is None
        assert "tests.pidbox.gated" in ask.registered()[HOST]
        stats = ask.stats()[HOST]
        assert stats["pool"]["max-concurrency"] == 2 and stats["queues"] == [QUEUE]
        assert ask.conf()[HOST]["BROKER_URL"] == mask(url)  # no password

        sent = gated.apply_async((str(gate),), queue=QUEUE)
        active = eventually(lambda: ask.active()[HOST], "the task in inspect active")
        assert [(a["id"], a["name"]) for a in active] == [(sent.id, "tests.pidbox.gated")]

        assert app.control.pool_grow(1, reply=True, destination=[HOST], timeout=PATIENCE) == [
            {HOST: {"ok": "pool will grow"}}]
        eventually(lambda: ask.stats()[HOST]["pool"]["max-concurrency"] == 3, "a pool of 3")
        [scaled] = app.control.autoscale(4, 1, reply=True, destination=[HOST],
                                         timeout=PATIENCE)  # Celery's call, our answer
        assert "autoscale is not enabled on this worker" in scaled[HOST]["error"]
        assert app.control.rate_limit("tests.pidbox.gated", "10/m", reply=True,
                                      destination=[HOST], timeout=PATIENCE) == [
            {HOST: {"ok": "new rate limit set successfully"}}]
        assert registry.get("tests.pidbox.gated").options.rate_limit is not None

        # Celery's revoke, sent without waiting for a reply (as Flower's button), is durable.
        app.control.revoke("never-sent-id")
        eventually(lambda: get_control_store().is_revoked("never-sent-id"), "the revocation")
        assert "never-sent-id" in ask.revoked()[HOST]
        gate.touch()
        assert sent.get(timeout=PATIENCE) == "done"
        assert worker.processed >= 1


@pytest.mark.network_broker
def test_a_second_worker_with_the_same_hostname_is_told_to_rename(amqp_url: str) -> None:
    from django_taskq.brokers.amqp_options import parse_options
    from django_taskq.exceptions import BrokerError
    from django_taskq.service_url import parse
    from django_taskq.worker.pidbox_amqp import AmqpPidbox

    options = parse_options(parse(amqp_url, setting="BROKER_URL"))
    first, second = AmqpPidbox(options, "twin@test"), AmqpPidbox(options, "twin@test")
    try:
        assert first.receive(10) == []
        with pytest.raises(BrokerError, match="another worker runs with this hostname"):
            second.receive(10)
        first.close()  # the queue goes with its connection: the second one takes it over
        assert second.receive(10) == []
    finally:
        first.close()
        second.close()
