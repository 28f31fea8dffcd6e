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
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        worker.step()
        time.sleep(0.005)


def test_asyncio_pool_runs_sync_tasks_side_by_side_once_grown(scaled):
    worker, _ = scaled("asyncio", 4, 1)
    sent = [blocking.apply_async((n,), queue=QUEUE) for n in range(4)]
    step_until(worker, lambda: worker.pool_size() == 4 and len(worker.running) == 4,
               "four slots, four running")
    step_until(worker, lambda: len(STARTED) == 4, "the four sync tasks started side by side")
    GATE.set()
    step_until(worker, lambda: all(r.ready() for r in sent), "every task")
