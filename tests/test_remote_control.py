"""Remote control reaches a live worker on every broker: inspect, pool, limits, queues, shutdown.

One real worker loop (``Worker.run()`` in a thread) per broker serves every assertion of its
test, so the file stays fast. The control store follows the broker (memory, database, Redis);
on RabbitMQ it follows RESULT_BACKEND (the database, or Redis): those cases run last.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connections

from django_taskq import states, task
from django_taskq.brokers import get_broker
from django_taskq.control.remote import Control
from django_taskq.management.taskq.queues import counts
from django_taskq.registry import registry
from tests import services
from tests.conftest import require_alias, require_service

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")

QUEUE, OTHER = "rc", "rc2"
#: Seconds a test waits for something that happens within a poll or two (generous for CI).
PATIENCE = 20.0


@task(name="tests.remote.gated")
def gated(gate: str, n: int = 0) -> int:
    """Wait until the file ``gate`` exists (works in threads and prefork children alike)."""
    deadline = time.monotonic() + 60
    while not Path(gate).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return n


@task(name="tests.remote.limits", bind=True)
def limits(self: Any) -> list[Any]:
    """The time limits the run was given."""
    return [self.request.time_limit, self.request.soft_time_limit]


@task(name="tests.remote.ticket")
def ticket(n: int) -> int:
    return n


@task(name="tests.remote.pid")
def pid() -> int:
    return os.getpid()


@task(name="tests.remote.sleepy")
def sleepy(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"


def eventually(check: Any, what: str, timeout: float = PATIENCE) -> Any:
    """``check()``'s first truthy value, polled until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def only(replies: list[dict[str, Any]], host: str) -> Any:
    """The one reply of ``host`` in a broadcast's ``[{host: reply}]``."""
    assert [list(r) for r in replies] == [[host]], replies
    return replies[0][host]


def configure(settings: Any, broker: str, results: str) -> None:
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": broker, "RESULT_BACKEND": results,
                      "POLL_INTERVAL": 0.01, "REVOKE_POLL_INTERVAL": 0.05,
                      "EVENTS_HEARTBEAT": 0.2, "WORKER_PREFETCH_MULTIPLIER": 4}


@contextlib.contextmanager
def live_worker(hostname: str, **options: Any) -> Iterator[Any]:
    """A worker looping in a thread, answering remote control from the moment it is yielded."""
    from django_taskq.worker import Worker, WorkerOptions

    options.setdefault("queues", (QUEUE,))
    worker = Worker(WorkerOptions.from_settings(hostname=hostname, **options))

    def run() -> None:
        try:
            worker.run()
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, name=f"worker-{hostname}", daemon=True)
    thread.start()
    eventually(lambda: Control().inspect(destination=[hostname], timeout=0.2).ping(),
               "the worker's first answer")
    try:
        yield worker, thread
    finally:
        if thread.is_alive():
            worker.change(worker.request_stop)
            thread.join(PATIENCE)
        assert not thread.is_alive(), "the worker did not stop"


@pytest.fixture(autouse=True)
def quick_monitor(monkeypatch: pytest.MonkeyPatch) -> None:
    """The monitor wakes every FLUSH_EVERY (0.25 s) to poll: more often here, for speed."""
    from django_taskq.worker import monitor

    monkeypatch.setattr(monitor, "FLUSH_EVERY", 0.02)


@pytest.fixture
def reset_tasks() -> Iterator[None]:
    """Remote control changes the registered tasks' options in this process: undo it."""
    yield
    for name in ("tests.remote.limits", "tests.remote.ticket", "tests.remote.sleepy"):
        registry.get(name).forget_options()


# -- the whole tour, on each broker ----------------------------------------------------------

def tour(host: str, worker: Any, thread: threading.Thread, gate: Path) -> None:
    """Every command against one live threads-pool worker of concurrency 2."""
    control = Control()
    ask = control.inspect(destination=[host], timeout=PATIENCE)
    assert ask.ping() == {host: {"ok": "pong"}}
    assert control.ping(destination=[host], timeout=PATIENCE) == [{host: {"ok": "pong"}}]
    assert "tests.remote.gated" in ask.registered()[host]
    stats = ask.stats()[host]
    assert stats["pool"]["implementation"] == "threads"
    assert stats["pool"]["max-concurrency"] == 2 and stats["queues"] == [QUEUE]
    assert [q["name"] for q in ask.active_queues()[host]] == [QUEUE]

    # Three gated tasks on two slots: two active (with their ids), one reserved.
    sent = [gated.apply_async((str(gate), n), queue=QUEUE) for n in range(3)]
    ids = {r.id for r in sent}
    def split() -> Any:
        active, reserved = ask.active()[host], ask.reserved()[host]
        return len(active) == 2 and len(reserved) == 1 and (active, reserved)

    active, reserved = eventually(split, "two active tasks and one reserved")
    assert {a["id"] for a in active} | {r["id"] for r in reserved} == ids
    assert reserved[0]["time_start"] is None
    assert all(a["name"] == "tests.remote.gated" and a["time_start"] for a in active)
    assert ask.scheduled() == {host: []}
    assert set(ask.query_task(*ids)[host]) == ids

    # pool_grow: the reserved task starts; pool_shrink: running ones still finish.
    assert "ok" in only(control.pool_grow(1, destination=[host], reply=True,
                                          timeout=PATIENCE), host)
    eventually(lambda: len(ask.active()[host]) == 3, "the third task running after pool_grow")
    assert ask.stats()[host]["pool"]["max-concurrency"] == 3
    assert "ok" in only(control.pool_shrink(2, destination=[host], reply=True,
                                            timeout=PATIENCE), host)
    eventually(lambda: ask.stats()[host]["pool"]["max-concurrency"] == 1, "the pool at 1")
    gate.touch()
    assert [r.get(timeout=PATIENCE) for r in sent] == [0, 1, 2]  # none lost

    limits_and_rates(host, control)
    consumers(host, control, ask)
    bad_arguments(host, control)

    assert only(control.shutdown(destination=[host], reply=True, timeout=PATIENCE),
                host) == {"ok": "shutting down"}
    thread.join(PATIENCE)
    assert not thread.is_alive()
    assert control.inspect(timeout=0.3).ping() is None  # nobody left to answer
    assert control.ping(timeout=0.3) == []


def limits_and_rates(host: str, control: Control) -> None:
    # time_limit takes effect on the next task (its run is given the new limits).
    assert limits.apply_async(queue=QUEUE).get(timeout=PATIENCE) == [None, None]
    assert only(control.time_limit("tests.remote.limits", soft=5, hard=10, destination=[host],
                                   reply=True, timeout=PATIENCE), host) == {
        "ok": "time limits set successfully"}
    assert limits.apply_async(queue=QUEUE).get(timeout=PATIENCE) == [10, 5]

    # rate_limit "1/h": the first task runs, the next waits in the broker for its slot.
    assert "ok" in only(control.rate_limit("tests.remote.ticket", "1/h", destination=[host],
                                           reply=True, timeout=PATIENCE), host)
    first, second = (ticket.apply_async((n,), queue=QUEUE) for n in (1, 2))
    assert first.get(timeout=PATIENCE) == 1
    broker = get_broker()
    eventually(lambda: counts(broker, [QUEUE])[0].depth == 1, "the second task held back")
    assert second.state == states.PENDING
    scheduled = counts(broker, [QUEUE])[0].scheduled
    assert scheduled in (1, None)  # where the broker can count them
    assert only(control.rate_limit("tests.remote.ticket", 0, destination=[host], reply=True,
                                   timeout=PATIENCE), host) == {
        "ok": "rate limit disabled successfully"}
    assert ticket.apply_async((3,), queue=QUEUE).get(timeout=PATIENCE) == 3  # no wait now
    assert broker.purge(QUEUE) == 1  # the held-back one (its slot is an hour away)


def consumers(host: str, control: Control, ask: Any) -> None:
    assert only(control.add_consumer(OTHER, destination=[host], reply=True, timeout=PATIENCE),
                host) == {"ok": f"add consumer {OTHER}"}
    assert ticket.apply_async((4,), queue=OTHER).get(timeout=PATIENCE) == 4
    assert [q["name"] for q in ask.active_queues()[host]] == [QUEUE, OTHER]
    assert "ok" in only(control.cancel_consumer(QUEUE, destination=[host], reply=True,
                                                timeout=PATIENCE), host)
    eventually(lambda: [q["name"] for q in ask.active_queues()[host]] == [OTHER],
               "the queue left")
    left = ticket.apply_async((5,), queue=QUEUE)
    assert ticket.apply_async((6,), queue=OTHER).get(timeout=PATIENCE) == 6
    assert left.state == states.PENDING and get_broker().size(QUEUE) == 1
    assert "ok" in only(control.add_consumer(QUEUE, destination=[host], reply=True,
                                             timeout=PATIENCE), host)
    assert left.get(timeout=PATIENCE) == 5


def bad_arguments(host: str, control: Control) -> None:
    def reply(command: str, **arguments: Any) -> Any:
        return only(control.broadcast(command, arguments, destination=[host], reply=True,
                                      timeout=PATIENCE), host)

    assert "n must be a whole number" in reply("pool_shrink", n=0)["error"]
    assert "cannot shrink a pool of 1" in reply("pool_shrink", n=1)["error"]
    assert "unknown task 'no.such.task'" in reply("rate_limit", task_name="no.such.task",
                                                  rate_limit="1/s")["error"]
    assert "Bad rate limit" in reply("rate_limit", task_name="tests.remote.ticket",
                                     rate_limit="fast")["error"]
    assert "must be below the hard one" in reply("time_limit", task_name="tests.remote.limits",
                                                 soft=5, hard=1)["error"]
    assert "not consuming from 'nowhere'" in reply("cancel_consumer", queue="nowhere")["error"]
    assert "unknown command 'frobnicate'" in reply("frobnicate")["error"]


@pytest.mark.parametrize("kind", ["memory", "sqlite", "postgres", "mariadb",
                                  pytest.param("redis", marks=pytest.mark.network_broker)])
def test_remote_control_tour(kind, settings, request, tmp_path, reset_tasks):
    if kind == "memory":
        url = "memory://"
    elif kind == "redis":
        url = request.getfixturevalue("redis_url")
    else:
        url = f"db://{require_alias(kind)}"
    configure(settings, url, url)
    host = f"rc-{kind}@test"
    with live_worker(host, pool="threads", concurrency=2) as (worker, thread):
        tour(host, worker, thread, tmp_path / "gate")


def test_no_worker_means_none_or_empty_and_destinations_filter(settings, tmp_path):
    configure(settings, "memory://", "memory://")
    control = Control()
    assert control.inspect(timeout=0.1).active() is None
    assert control.broadcast("ping", reply=True, timeout=0.1) == []
    assert control.broadcast("ping") == []  # no reply asked: returns at once
    with pytest.raises(ValueError, match="timeout must be above zero"):
        control.ping(timeout=0)
    with live_worker("rc-one@test", pool="solo"):
        assert control.inspect(destination=["rc-other@test"], timeout=0.2).ping() is None
        # As Celery: a destination given as a string returns that worker's bare reply.
        assert control.inspect(destination="rc-one@test", timeout=PATIENCE).ping() == {
            "ok": "pong"}
        assert control.inspect(destination=["rc-one@test"], timeout=PATIENCE).ping() == {
            "rc-one@test": {"ok": "pong"}}
        assert control.inspect(limit=1, timeout=PATIENCE).ping() == {
            "rc-one@test": {"ok": "pong"}}
        assert "solo pool has one slot" in only(control.pool_grow(
            destination=["rc-one@test"], reply=True, timeout=PATIENCE), "rc-one@test")["error"]


def test_a_command_sent_as_soon_as_the_worker_started_is_answered(settings):
    from django_taskq.worker import Worker, WorkerOptions

    configure(settings, "memory://", "memory://")
    worker = Worker(WorkerOptions.from_settings(hostname="rc-new@test", pool="solo"))
    worker.start()  # no loop: the monitor thread answers read-only commands itself
    try:
        assert Control().ping(destination=["rc-new@test"], timeout=PATIENCE) == [
            {"rc-new@test": {"ok": "pong"}}]
    finally:
        worker.shutdown()


# -- prefork: children come and go, no task is lost, hard limits apply ---------------------------

def test_prefork_pool_grows_and_shrinks_without_losing_a_task(settings, tmp_path, reset_tasks):
    configure(settings, "memory://", "memory://")
    host, gate = "rc-prefork@test", tmp_path / "gate"
    control = Control()
    ask = control.inspect(destination=[host], timeout=PATIENCE)
    with live_worker(host, pool="prefork", concurrency=1) as (worker, _):
        [first] = ask.stats()[host]["pool"]["processes"]
        only(control.pool_grow(2, destination=[host], reply=True, timeout=PATIENCE), host)
        children = eventually(lambda: len(ask.stats()[host]["pool"]["processes"]) == 3
                              and ask.stats()[host]["pool"]["processes"], "three children")
        assert first in children
        sent = [gated.apply_async((str(gate), n), queue=QUEUE) for n in range(3)]
        eventually(lambda: len(ask.active()[host]) == 3, "three tasks at once")
        only(control.pool_shrink(2, destination=[host], reply=True, timeout=PATIENCE), host)
        eventually(lambda: ask.stats()[host]["pool"]["max-concurrency"] == 1, "the pool at 1")
        gate.touch()  # the retiring children finish their tasks first
        assert [r.get(timeout=PATIENCE) for r in sent] == [0, 1, 2]
        eventually(lambda: len(ask.stats()[host]["pool"]["processes"]) == 1, "one child left")
        assert pid.apply_async(queue=QUEUE).get(timeout=PATIENCE) in children

        only(control.time_limit("tests.remote.sleepy", hard=0.5, destination=[host],
                                reply=True, timeout=PATIENCE), host)
        killed = sleepy.apply_async((30,), queue=QUEUE)
        with pytest.raises(Exception, match="TimeLimitExceeded|time limit"):
            killed.get(timeout=PATIENCE)
        assert killed.state == states.FAILURE
        assert pid.apply_async(queue=QUEUE).get(timeout=PATIENCE)  # a fresh child serves


# -- the pools' resize, alone ---------------------------------------------------------------------

def gated_job(gate: Path, n: int) -> Any:
    from django_taskq.context import Request
    from django_taskq.worker.job import Job

    request = Request(id=f"job-{n}", task=gated.name, args=(str(gate), n), kwargs={},
                      hostname="pool@test")
    return Job(key=n, task_name=gated.name, request=request, ignore_result=False,
               result_serializer="json")


def finish_all(pool: Any, count: int) -> list[int]:
    done: list[int] = []
    deadline = time.monotonic() + PATIENCE
    while len(done) < count:
        assert time.monotonic() < deadline, f"only {done} finished"
        done += [key for key, outcome in pool.collect(0.1) if outcome.state == states.SUCCESS]
    return sorted(done)


def test_shrinking_busy_pools_takes_no_new_work_and_loses_none(tmp_path):
    from django_taskq.worker.pools import PreforkPool, ThreadPool

    gate = tmp_path / "gate"
    threads, prefork = ThreadPool(3), PreforkPool(3)
    for pool in (threads, prefork):
        pool.start()
    try:
        for pool in (threads, prefork):
            for n in range(3):
                pool.submit(gated_job(gate, n))
            pool.resize(2)
            pool.resize(1)  # again while the first retiring child is still busy
            assert pool.free_slots() == 0  # three still run on one slot: nothing more
        gate.touch()
        assert finish_all(threads, 3) == finish_all(prefork, 3) == [0, 1, 2]
        assert threads.free_slots() == 1
        assert len(prefork._children) == 1 and prefork.free_slots() == 1
    finally:
        gate.touch()  # never leave a gated task waiting, whatever failed
        threads.stop()
        prefork.stop()


# -- a real manage.py taskworker ---------------------------------------------------------------

@pytest.mark.subprocess
def test_taskworker_process_answers_and_stops_warm(settings):
    from tests.test_worker_process import WorkerProcess

    alias = require_alias("sqlite")
    configure(settings, f"db://{alias}", f"db://{alias}")
    host = "rc-process@test"
    control = Control()
    with WorkerProcess(alias, "--pool", "prefork", "--concurrency", "1", "--hostname", host,
                       "--queues", QUEUE) as process:
        eventually(lambda: control.inspect(destination=[host], timeout=0.3).ping(),
                   "the worker process's first answer", timeout=60)
        only(control.pool_grow(1, destination=[host], reply=True, timeout=PATIENCE), host)
        eventually(lambda: len(control.inspect(destination=[host], timeout=PATIENCE).stats()
                               [host]["pool"]["processes"]) == 2, "a second child")
        assert only(control.shutdown(destination=[host], reply=True, timeout=PATIENCE),
                    host) == {"ok": "shutting down"}
        code, output = process.wait()
    assert code == 0, output


# -- RabbitMQ: last, and alone (the control store follows RESULT_BACKEND) --------------------------

def _delete_amqp_queues(url: str) -> None:
    from django_taskq.brokers.amqp import from_url
    from django_taskq.service_url import parse

    broker = from_url(parse(url, setting="BROKER_URL"))
    try:
        for queue in (QUEUE, OTHER):
            broker.delete(queue)
    finally:
        broker.close()


@pytest.mark.network_broker
@pytest.mark.parametrize("store", ["database", "redis"])
def test_remote_control_tour_on_rabbitmq(store, settings, request, tmp_path, reset_tasks):
    # Not the amqp_url fixture: it empties queues other tests use; these are this file's own.
    url = require_service(services.AMQP_URL, "RabbitMQ")
    results = "db://default" if store == "database" else request.getfixturevalue("redis_url")
    _delete_amqp_queues(url)
    request.addfinalizer(lambda: _delete_amqp_queues(url))
    configure(settings, url, results)
    host = f"rc-amqp-{store}@test"
    with live_worker(host, pool="threads", concurrency=2) as (worker, thread):
        tour(host, worker, thread, tmp_path / "gate")


def test_a_command_long_expired_by_the_workers_clock_is_dropped_and_said(caplog):
    """Clocks out of step drop every command: the worker says so instead of keeping quiet."""
    import logging
    import time as clock

    from django_taskq.control.memory import MemoryControlStore

    store = MemoryControlStore()
    cursor, _ = store.read_commands(None)
    store.broadcast({"id": "old", "name": "ping", "arguments": {}, "destination": None,
                     "reply": True, "expires_at": clock.time() - 120})
    store.broadcast({"id": "new", "name": "ping", "arguments": {}, "destination": None,
                     "reply": True, "expires_at": clock.time() + 60})
    with caplog.at_level(logging.WARNING, "django_taskq.control.mailboxes"):
        _, commands = store.read_commands(cursor)
    assert [c["id"] for c in commands] == ["new"]
    assert "command old (ping) expired 120s ago by this clock" in caplog.text


def test_celery_calls_not_offered_say_what_to_do_instead():
    from django_taskq.app import Celery
    from django_taskq.control.memory import MemoryControlStore

    app, control = Celery("rc"), Control(MemoryControlStore())
    with pytest.raises(AttributeError, match=r"app\.control\.pool_restart .*restart the worker"):
        app.control.pool_restart()
    with pytest.raises(AttributeError, match=r"inspect\(\)\.clock .*stats"):
        control.inspect(timeout=0.1).clock()
    with pytest.raises(ValueError, match="destination="):
        control.broadcast("ping", reply=True, pattern="w*", matcher="glob")


def test_query_task_takes_one_id_as_a_string_and_a_timeout_must_be_seconds(settings):
    from django_taskq.worker import Worker, WorkerOptions
    from django_taskq.worker.remote import RemoteControl

    configure(settings, "memory://qt", "memory://qt")
    worker = Worker(WorkerOptions.from_settings(pool="solo", queues=(QUEUE,), hostname="qt@x"),
                    monitor=False)
    sent = ticket.apply_async((1,), queue=QUEUE)
    worker._fill()  # prefetched, not started
    remote = RemoteControl(worker)
    # Celery wraps a lone id; iterating the string would look up its characters.
    found = remote.run("query_task", {"ids": sent.id})
    assert list(found) == [sent.id] and found[sent.id][0] == "reserved"
    assert remote.run("query_task", {"ids": [sent.id]}) == found
    with pytest.raises(ValueError, match="timeout must be above zero seconds, a number, not '1'"):
        Control().ping(timeout="1")
    worker.shutdown()
