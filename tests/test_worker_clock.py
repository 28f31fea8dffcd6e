"""A worker on a fake clock: retries and ETAs wait for the clock, not for the wall, and the times
stamped on results come from it. No test here sleeps."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from django_taskq import states
from django_taskq.brokers.memory import MemoryBroker
from django_taskq.clock import Clock
from django_taskq.worker import Worker, WorkerOptions
from tests.testapp import feature_tasks as ft
from tests.testapp import tasks

pytestmark = pytest.mark.parametrize("broker_kind", ["memory"])

#: Far from the real time: a time taken from the wall clock instead of the fake one shows.
FAR = datetime(2031, 1, 1, tzinfo=timezone.utc)


class FakeTime:
    """Wall and monotonic time that move only when told to."""

    def __init__(self, start: datetime) -> None:
        self.wall = start
        self.mono = 5000.0

    def now(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds


@pytest.fixture
def fake_worker(configured, monkeypatch):
    """(fake time, worker): the worker and the producer share a memory broker on the fake time."""
    made = []

    def make(start: datetime, pool: str = "solo"):
        fake = FakeTime(start)
        broker = MemoryBroker(now=fake.now)
        monkeypatch.setattr("django_taskq.brokers.get_broker", lambda: broker)
        worker = Worker(WorkerOptions.from_settings(pool=pool, concurrency=1, queues=("default",)),
                        broker=broker, clock=Clock(now=fake.now, monotonic=fake.monotonic))
        worker.pool.start()
        made.append(worker)
        return fake, worker

    yield make
    for worker in made:
        worker.pool.stop()
        worker.heartbeat.stop()


def steps(worker, n=5):
    for _ in range(n):
        worker.step()


def test_a_retry_countdown_waits_for_the_fake_clock(fake_worker):
    fake, worker = fake_worker(FAR)
    result = ft.retry_later.delay(60)
    steps(worker)
    assert result.state == states.RETRY
    [(_, due, _, envelope, _)] = worker.broker._queues["default"]
    assert envelope.eta == due == FAR + timedelta(seconds=60)  # stamped from the fake clock
    fake.advance(59)
    steps(worker)
    assert result.state == states.RETRY
    fake.advance(1)
    steps(worker)
    assert result.get(timeout=1) == "second run"
    assert result.date_done == FAR + timedelta(seconds=60)
    assert result.retries == 1


def test_an_eta_waits_for_the_fake_clock(fake_worker):
    fake, worker = fake_worker(datetime.now(timezone.utc))
    result = tasks.add.apply_async((1, 2), countdown=3600)
    steps(worker)
    assert result.state == states.PENDING
    fake.advance(3599)
    steps(worker)
    assert result.state == states.PENDING
    fake.advance(2)
    steps(worker)
    assert result.get(timeout=1) == 3


def test_a_celery_style_eta_message_delivered_early_is_deferred_until_due(fake_worker):
    fake, worker = fake_worker(FAR)
    result = tasks.add.apply_async((2, 2), eta=FAR + timedelta(minutes=10))
    envelope = worker.broker._queues["default"][0][3]
    worker.broker.purge("default")
    worker.broker.enqueue(envelope.replace(eta=None))  # in the queue now, eta only in headers
    steps(worker)
    assert result.state == states.PENDING and worker.broker.size("default") == 1
    fake.advance(600)
    steps(worker)
    assert result.get(timeout=1) == 4


def test_result_times_come_from_the_fake_clock(fake_worker):
    fake, worker = fake_worker(FAR)
    result = tasks.add.delay(1, 2)
    steps(worker, 3)
    assert result.get(timeout=1) == 3
    assert result.date_started == FAR and result.date_done == FAR


def test_expiry_is_judged_by_the_fake_clock(fake_worker):
    fake, worker = fake_worker(datetime.now(timezone.utc))
    result = tasks.add.apply_async((1, 2), expires=600, countdown=300)
    fake.advance(700)  # due, but expired by then
    steps(worker)
    assert result.state == states.REVOKED
    assert result.date_done == fake.wall


def test_a_threads_pool_task_stamps_the_fake_clock(fake_worker):
    fake, worker = fake_worker(FAR, pool="threads")
    result = tasks.add.delay(1, 2)
    for _ in range(50):
        worker.step()
        if result.ready():
            break
    assert result.get(timeout=1) == 3
    assert result.date_done == FAR
