"""Review of ``--autoscale`` (issue 14): the cases a Celery user hits beyond a plain burst.

In-process workers driven by ``step()`` on a fake monotonic clock (no keep-alive sleeps).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from django_taskq import task
from django_taskq.brokers.memory import MemoryBroker
from django_taskq.clock import Clock
from django_taskq.worker import Worker, WorkerOptions

QUEUE = "review14-autoscale"
STARTED: set[int] = set()
GATE = threading.Event()
_LOCK = threading.Lock()


@task(name="tests.review14_autoscale.blocking")
def blocking(n: int) -> int:
    with _LOCK:
        STARTED.add(n)
    GATE.wait(20)
    return n


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def scaled(settings, monkeypatch) -> Iterator[Any]:
    """``make(pool, max, min, **options)``: an autoscaled worker on a memory broker."""
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": "memory://review14a",
                      "RESULT_BACKEND": "memory://review14a"}
    broker, made = MemoryBroker(), []
    monkeypatch.setattr("django_taskq.brokers.get_broker", lambda: broker)
    STARTED.clear()
    GATE.clear()

    def make(pool: str, high: int, low: int, **options: Any) -> tuple[Worker, FakeMonotonic]:
        fake = FakeMonotonic()
        worker = Worker(WorkerOptions.from_settings(
            pool=pool, autoscale=(high, low), queues=(QUEUE,), poll_interval=0.01,
            **options), broker=broker, clock=Clock(monotonic=fake), monitor=False)
        worker.pool.start()
        made.append(worker)
        return worker, fake

    yield make
    GATE.set()
    for worker in made:
        worker.pool.stop()
        worker.heartbeat.stop()


def step_until(worker: Worker, check: Any, what: str, timeout: float = 5.0) -> None:
    """Step until ``check()``; the fake clock moves a poll interval per step (not more)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        worker.clock.monotonic.now += 0.01  # type: ignore[attr-defined]
        worker.step()
        time.sleep(0.002)


def test_asyncio_pool_runs_sync_tasks_side_by_side_once_grown(scaled):
    worker, _ = scaled("asyncio", 4, 1)
    sent = [blocking.apply_async((n,), queue=QUEUE) for n in range(4)]
    step_until(worker, lambda: worker.pool_size() == 4 and len(worker.running) == 4,
               "four slots, four running")
    step_until(worker, lambda: len(STARTED) == 4, "the four sync tasks started side by side")
    GATE.set()
    step_until(worker, lambda: all(r.ready() for r in sent), "every task")


@task(name="tests.review14_autoscale.nap")
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def children(worker: Worker) -> tuple[int, int]:
    """(children alive in the pool's list, of which not retiring)."""
    kids = worker.pool._children  # type: ignore[union-attr]
    return len(kids), sum(1 for c in kids if not c.retiring)


@pytest.mark.own_server
@pytest.mark.subprocess
def test_prefork_shrink_with_recycling_and_hard_limits_keeps_the_count(scaled):
    """Children recycled after each task, then a lower max while three run and the hard limit
    kills them, then a lower max while one is terminated (revoke): the retiring ones are not
    replaced, so the pool does not drift."""
    worker, fake = scaled("prefork", 3, 1, max_tasks_per_child=1, time_limit=1.5)
    sent = [nap.apply_async((0.3,), queue=QUEUE) for _ in range(6)]
    step_until(worker, lambda: all(r.ready() for r in sent), "every task")
    assert children(worker) == (3, 3)
    slow = [nap.apply_async((6,), queue=QUEUE) for _ in range(3)]
    step_until(worker, lambda: len(worker.running) == 3, "three running")
    worker.autoscaler.update(1, 1)
    worker.step()
    assert (worker.pool_size(), children(worker)) == (1, (3, 1))  # busy ones retire after
    step_until(worker, lambda: all(r.ready() for r in slow), "killed by the hard limit")
    assert [r.state for r in slow] == ["FAILURE"] * 3  # TimeLimitExceeded
    assert (worker.pool_size(), children(worker)) == (1, (1, 1))  # none replaced
    fake.now += 31
    worker.step()
    assert (worker.pool_size(), children(worker)) == (1, (1, 1))

    # revoke(terminate=True) of one of three, and a lower max, in the same turn
    worker.autoscaler.update(3, 1)
    last = [nap.apply_async((1.0,), queue=QUEUE) for _ in range(3)]
    step_until(worker, lambda: len(worker.running) == 3, "three running again")
    assert worker.pool.kill(next(iter(worker.running)))
    worker.autoscaler.update(1, 1)
    step_until(worker, lambda: all(r.ready() for r in last), "the last three")
    assert sorted(r.state for r in last) == ["REVOKED", "SUCCESS", "SUCCESS"]
    assert (worker.pool_size(), children(worker)) == (1, (1, 1))


@task(name="tests.review14_autoscale.limited", rate_limit="1/m")
def limited(n: int) -> int:
    return n


def test_tasks_waiting_for_a_rate_limit_token_do_not_grow_the_pool(scaled):
    """As Celery (a task waiting for its bucket is not in ``reserved_requests``): a backlog of
    rate-limited tasks sent back for their tokens must not fork the pool up to max."""
    worker, _ = scaled("threads", 8, 1)
    sent = [limited.apply_async((n,), queue=QUEUE) for n in range(30)]
    for _ in range(30):
        worker.clock.monotonic.now += 0.01  # type: ignore[attr-defined]
        worker.step()
    assert [r.state for r in sent].count("SUCCESS") == 1  # the limit holds
    # The first claim (4) grows the pool before the bucket is known empty; no more after.
    assert worker.pool_size() == 4
    assert worker.autoscaler.info()["qty"] <= 1
    # The limit lifted at runtime (remote rate_limit): its tasks count again at once.
    from django_taskq.worker.remote import RemoteControl

    remote = RemoteControl(worker)
    assert "ok" in remote.run("rate_limit", {"task_name": limited.name, "rate_limit": None})
    try:
        more = [limited.apply_async((n,), queue=QUEUE) for n in range(30, 50)]
        step_until(worker, lambda: worker.pool_size() == 8, "the pool grown for them")
        step_until(worker, lambda: all(r.ready() for r in more), "every unlimited task")
    finally:
        remote.run("rate_limit", {"task_name": limited.name, "rate_limit": "1/m"})

@pytest.mark.own_server
def test_gevent_pool_grown_gets_threads_for_async_tasks(monkeypatch):
    """gevent runs async def tasks on its hub's threads, sized from the slots at start: a pool
    grown from 1 (``--autoscale 50,1``) must get more than the 10 threads it started with."""
    gevent = pytest.importorskip("gevent")
    from django_taskq.worker import green

    monkeypatch.setattr(green, "check_patched", lambda kind: None)
    result: dict[str, int] = {}

    def in_a_thread() -> None:  # its own hub: this test's thread keeps none
        pool = green.GreenPool("gevent", 1)
        pool.start()
        pool.resize(50)
        result["maxsize"] = gevent.get_hub().threadpool.maxsize
        gevent.get_hub().destroy(destroy_loop=True)

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join(10)
    assert result["maxsize"] >= 50


def test_pool_shrink_on_a_busy_autoscaled_worker_holds_for_the_keepalive(scaled):
    """docs/monitoring.md: after pool_grow/pool_shrink "the autoscaler then leaves the new size
    for at least the keep-alive". A shrink with more tasks held must not grow back at once."""
    from django_taskq.worker.remote import RemoteControl

    worker, fake = scaled("threads", 4, 1)
    sent = [blocking.apply_async((n,), queue=QUEUE) for n in range(6)]
    step_until(worker, lambda: len(worker.running) == 4 and len(worker.prefetched) == 2,
               "four running, two held")
    assert RemoteControl(worker).run("pool_shrink", {"n": 2}) == {"ok": "pool will shrink"}
    for _ in range(5):
        worker.step()
    assert worker.pool_size() == 2  # kept, though six tasks are held
    fake.now += 31
    worker.step()
    assert worker.pool_size() == 4  # the autoscaler takes over again within (4, 1)
    GATE.set()
    step_until(worker, lambda: all(r.ready() for r in sent), "every task")


@pytest.mark.own_server
@pytest.mark.subprocess
@pytest.mark.django_db(transaction=True)
def test_prefork_autoscale_on_redis_short_leases_and_sigterm_mid_burst(settings, redis_url,
                                                                       tmp_path):
    """Prefetched messages wait longer than their lease (1.5 s) while the pool is small (the
    heartbeat keeps them), a SIGTERM mid-burst releases them, and a second worker finishes the rest:
    every task runs exactly once."""
    import signal

    from django_taskq import states
    from tests.test_autoscale import eventually, taskworker
    from tests.testapp import tasks

    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": redis_url, "RESULT_BACKEND": redis_url}
    overrides = {"BROKER_URL": redis_url, "RESULT_BACKEND": redis_url, "POLL_INTERVAL": 0.05,
                 "LEASE_TIMEOUT": 1.5, "HEARTBEAT_INTERVAL": 0.2,
                 "WORKER_AUTOSCALE_KEEPALIVE": 5.0}
    marks = [tmp_path / f"run-{n}" for n in range(10)]
    sent = [tasks.record_and_sleep.apply_async((str(mark), 0.6), queue=QUEUE) for mark in marks]
    first, log = taskworker("--autoscale", "2,1", "--pool", "prefork", "-Q", QUEUE,
                            overrides=overrides)
    second = None
    try:
        eventually(lambda: sum(r.ready() for r in sent) >= 6, "six done", timeout=20)
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=20) == 0
        second, _ = taskworker("-c", "2", "--pool", "prefork", "-Q", QUEUE, overrides=overrides)
        eventually(lambda: all(r.ready() for r in sent), "every task", timeout=20)
        assert all(r.state == states.SUCCESS for r in sent)
        runs = [len(mark.read_text().split()) for mark in marks]
        log.seek(0)
        assert runs == [1] * 10, log.read()
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        log.close()


def test_tasks_waiting_for_a_token_behind_a_busy_pool_do_not_block_other_work(scaled):
    """Tasks waiting for a token go back to their queue only when a slot takes them up: with
    every slot busy the pool must still grow by one for them, or nothing else is claimed."""
    worker, fake = scaled("threads", 4, 1)
    first = [limited.apply_async((n,), queue=QUEUE) for n in range(2)]
    step_until(worker, lambda: first[0].ready() and not worker.prefetched, "the bucket known empty")
    fake.now += 31
    step_until(worker, lambda: worker.pool_size() == 1, "back to one slot")
    busy = blocking.apply_async((0,), queue=QUEUE)
    step_until(worker, lambda: len(worker.running) == 1, "the one slot busy")
    [limited.apply_async((n,), queue=QUEUE) for n in range(3)]
    naps = [nap.apply_async((0,), queue=QUEUE) for _ in range(2)]
    step_until(worker, lambda: all(r.ready() for r in naps), "other tasks run meanwhile")
    assert not busy.ready()
    GATE.set()


def test_worker_autoscale_in_settings_leaves_solo_workers_alone(settings):
    """TASKQ['WORKER_AUTOSCALE'] in the project's settings (the documented way) must not break
    ``drain()``/``WorkerThread`` (solo workers of the test helpers), nor ``taskworker --pool
    solo``: a solo pool asked for explicitly runs one slot, as ``-c`` alone does."""
    from django_taskq.testing import WorkerThread, drain

    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": "memory://review14b",
                      "RESULT_BACKEND": "memory://review14b", "WORKER_AUTOSCALE": "4,1"}
    assert WorkerOptions.from_settings(pool="solo").autoscale is None
    sent = nap.apply_async((0,))
    assert [run.id for run in drain()] == [sent.id]
    with WorkerThread():
        assert nap.delay(0).get(timeout=5) == 0
