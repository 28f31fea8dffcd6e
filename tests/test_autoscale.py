"""``taskworker --autoscale MAX,MIN``: the pool grows when tasks wait, shrinks back after the
keep-alive, never leaves its range, and no task is lost or run twice.

Three layers: the decision alone; an in-process worker (threads pool) driven by ``step()`` on a
fake monotonic clock (no sleeping for the keep-alive); a real ``manage.py taskworker`` (prefork)
under a burst, with remote control of its range.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connections

from django_taskq import states, task
from django_taskq.brokers.memory import MemoryBroker
from django_taskq.clock import Clock
from django_taskq.conf import build_settings
from django_taskq.control.remote import Control
from django_taskq.exceptions import ConfigurationError
from django_taskq.setting_values import autoscale
from django_taskq.worker import Worker, WorkerOptions
from django_taskq.worker.autoscale import Autoscaler, target
from django_taskq.worker.banner import banner
from django_taskq.worker.remote import RemoteControl
from tests.testapp import tasks

ROOT = Path(__file__).resolve().parent.parent
QUEUE = "autoscale"

# -- the decision ---------------------------------------------------------------------------------


def test_the_pool_grows_at_once_to_the_tasks_held_within_the_range():
    assert target(1, held=3, bounds=(10, 1), quiet_for=0, keepalive=30) == 3
    assert target(1, held=40, bounds=(10, 1), quiet_for=0, keepalive=30) == 10  # never above max
    assert target(0, held=1, bounds=(4, 0), quiet_for=99, keepalive=30) == 1  # from zero


def test_the_pool_shrinks_only_after_the_keepalive_and_never_below_min():
    assert target(10, held=0, bounds=(10, 3), quiet_for=29.9, keepalive=30) == 10
    assert target(10, held=0, bounds=(10, 3), quiet_for=30, keepalive=30) == 3
    assert target(10, held=5, bounds=(10, 3), quiet_for=31, keepalive=30) == 5  # busy stay


def test_a_moved_range_is_followed_at_once():
    assert target(10, held=10, bounds=(4, 1), quiet_for=0, keepalive=30) == 4
    assert target(1, held=0, bounds=(8, 6), quiet_for=0, keepalive=30) == 6


@pytest.mark.parametrize(("value", "expected"), [
    ("10,3", (10, 3)), ("3,10", (10, 3)),  # Celery's command line sorts the two
    ("10", (10, 0)), (" 4 , 2 ", (4, 2)), (6, (6, 0)), ((10, 3), (10, 3)), ([5, 5], (5, 5))])
def test_autoscale_values_take_celerys_forms(value, expected):
    assert autoscale(value) == expected


@pytest.mark.parametrize(("value", "says"), [
    ("0", "maximum of at least 1"), ("0,0", "maximum of at least 1"),
    ("4,-1", "minimum of at least 0"), ("ten,3", "one or two whole numbers"),
    ("1,2,3", "one or two whole numbers"), ("", "one or two whole numbers"),
    (True, "one or two whole numbers"), (2.5, "one or two whole numbers")])
def test_bad_autoscale_values_say_which_forms_work(value, says):
    with pytest.raises(TypeError, match=says) as caught:
        autoscale(value)
    assert "'10,3'" in str(caught.value)


def test_bad_settings_are_configuration_errors():
    with pytest.raises(ConfigurationError, match=r"WORKER_AUTOSCALE must be whole numbers with "
                                                 r"a maximum of at least 1"):
        build_settings({"WORKER_AUTOSCALE": (0, 0)})
    with pytest.raises(ConfigurationError, match="WORKER_AUTOSCALE_KEEPALIVE"):
        build_settings({"WORKER_AUTOSCALE_KEEPALIVE": 0})
    assert build_settings({"WORKER_AUTOSCALE": "10,3"}).WORKER_AUTOSCALE == (10, 3)


# -- the command line -----------------------------------------------------------------------------

@pytest.fixture
def memory_settings(settings):
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": "memory://autoscale",
                      "RESULT_BACKEND": "memory://autoscale"}
    return settings


@pytest.mark.parametrize(("args", "says"), [
    (["--autoscale", "0"], r"--autoscale '0' is not valid: it takes whole numbers with a maximum "
                           r"of at least 1"),
    (["--autoscale", "ten"], r"--autoscale 'ten' is not valid: it takes one or two whole numbers"),
    (["--autoscale", "4,1", "--pool", "solo"], r"--autoscale needs a pool that can grow and "
                                               r"shrink: the solo pool cannot .* --pool prefork "
                                               r"or --pool threads"),
    (["--autoscale", "300,1", "--pool", "threads"], r"the threads pool grows to 256 threads at "
                                                    r"most; lower the maximum"),
])
def test_the_worker_refuses_bad_autoscale_options(memory_settings, args, says):
    with pytest.raises(CommandError, match=says):
        call_command("taskworker", *args)


def test_autoscale_from_the_setting_and_dash_c_alone_overrides_it(memory_settings):
    memory_settings.TASKQ = {**memory_settings.TASKQ, "WORKER_AUTOSCALE": "6,2"}
    options = WorkerOptions.from_settings(pool="threads")
    assert (options.autoscale, options.concurrency) == ((6, 2), 2)  # the pool starts at min
    assert WorkerOptions.from_settings(pool="threads", concurrency=3).autoscale is None
    both = WorkerOptions.from_settings(pool="threads", concurrency=3, autoscale=(5, 1))
    assert (both.autoscale, both.concurrency) == ((5, 1), 1)  # as Celery: autoscale wins
    memory_settings.TASKQ = {**memory_settings.TASKQ, "WORKER_POOL": "solo"}
    with pytest.raises(ConfigurationError, match="the solo pool cannot"):
        Worker(WorkerOptions.from_settings(), monitor=False)


class StubPool:
    """A pool of another kind (gevent, asyncio): resizes, but never to 0 or above 5."""

    def __init__(self, slots: int) -> None:
        self.slots = slots

    def resize(self, slots: int) -> None:
        if not 0 < slots <= 5:
            raise ValueError(f"the stub pool has 1 to 5 slots, not {slots}")
        self.slots = slots


def stub_worker(pool: Any, bounds: tuple[int, int]) -> Any:
    from types import SimpleNamespace

    worker = SimpleNamespace(
        options=SimpleNamespace(autoscale=bounds, pool="stub", autoscale_keepalive=30.0,
                                prefetch_multiplier=4),
        pool=pool, clock=Clock(monotonic=FakeMonotonic()), stopping=False,
        _held_lock=threading.Lock(), running={}, prefetched=[],
        rate_gate=SimpleNamespace(waiting=lambda job: False),
        pool_size=lambda: pool.slots)
    worker.resize_pool = getattr(pool, "resize", None)
    return worker


def test_other_pools_autoscale_within_their_own_limits(caplog):
    with pytest.raises(ConfigurationError, match=r"grow and shrink: the stub pool cannot\. Run "
                                                 r"the worker with --pool prefork"):
        Autoscaler.for_worker(stub_worker(object(), (4, 1)))
    with pytest.raises(ConfigurationError, match=r"--autoscale 4,0: the stub pool keeps at least "
                                                 r"one slot; give a minimum of 1 "
                                                 r"\(--autoscale 4,1\)"):
        Autoscaler.for_worker(stub_worker(StubPool(0), (4, 0)))
    pool = StubPool(1)
    worker = stub_worker(pool, (9, 1))
    scaler = Autoscaler.for_worker(worker)
    assert "min must be a whole number of at least 1" in str(
        pytest.raises(ValueError, scaler.update, None, 0).value)
    worker.prefetched = [(None, type("J", (), {"key": n})) for n in range(1, 9)]
    with caplog.at_level("WARNING", "django_taskq.worker.autoscale"):
        scaler.step()
        scaler.step()  # refused once: not tried again each turn
    assert pool.slots == 1  # the pool's own limit holds; the worker goes on
    assert caplog.text.count("autoscale: cannot resize the stub pool to 8") == 1


# -- an in-process worker on a fake clock ---------------------------------------------------------

RUNS: Counter[int] = Counter()
GATE = threading.Event()


@task(name="tests.autoscale.gated")
def gated(n: int) -> int:
    GATE.wait(20)
    RUNS[n] += 1
    return n


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def scaled(memory_settings, monkeypatch) -> Iterator[Any]:
    """``make(max, min, prefetch)``: a threads worker with autoscale on a shared memory broker
    whose monotonic clock moves only when told (keep-alive 30 s, Celery's default)."""
    broker, made = MemoryBroker(), []
    monkeypatch.setattr("django_taskq.brokers.get_broker", lambda: broker)
    RUNS.clear()
    GATE.clear()

    def make(high: int, low: int, prefetch: int = 4) -> tuple[Worker, FakeMonotonic]:
        fake = FakeMonotonic()
        worker = Worker(WorkerOptions.from_settings(
            pool="threads", autoscale=(high, low), queues=(QUEUE,), prefetch_multiplier=prefetch,
            poll_interval=0.01), broker=broker, clock=Clock(monotonic=fake), monitor=False)
        worker.pool.start()
        made.append(worker)
        return worker, fake

    yield make
    GATE.set()
    for worker in made:
        worker.pool.stop()
        worker.heartbeat.stop()


def step_until(worker: Worker, check: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        worker.step()


def test_a_burst_grows_the_pool_to_max_and_quiet_shrinks_it_to_min(scaled):
    worker, fake = scaled(4, 1)
    assert worker.pool_size() == 1 and worker.capacity == 4
    sent = [gated.apply_async((n,), queue=QUEUE) for n in range(10)]
    worker.step()  # one claim of 4 (1 slot x 4): four held, so four slots
    assert worker.pool_size() == 4
    step_until(worker, lambda: len(worker.running) == 4 and len(worker.prefetched) == 6,
               "four tasks running at once, the rest held (16 may be)")
    assert worker.autoscaler.info() == {"max": 4, "min": 1, "current": 4, "qty": 10}
    GATE.set()
    step_until(worker, lambda: all(r.ready() for r in sent), "every task")
    assert [r.get(timeout=1) for r in sent] == list(range(10))
    assert RUNS == Counter(range(10))  # each exactly once

    fake.now += 29.0  # quiet, but not for the keep-alive yet
    worker.step()
    assert worker.pool_size() == 4
    late = gated.apply_async((10,), queue=QUEUE)  # a new task: the quiet starts again
    step_until(worker, late.ready, "the late task")
    fake.now += 29.0
    worker.step()
    assert worker.pool_size() == 4
    fake.now += 1.5
    worker.step()
    assert worker.pool_size() == 1 and worker.options.concurrency == 1
    assert worker.capacity == 4  # the prefetch follows the size
    assert RUNS == Counter(range(11))


def test_from_zero_slots_at_one_message_per_slot(scaled):
    worker, fake = scaled(3, 0, prefetch=1)
    assert worker.pool_size() == 0 and worker.capacity == 1  # one held, to see work waiting
    sent = [gated.apply_async((n,), queue=QUEUE) for n in range(6)]
    step_until(worker, lambda: worker.pool_size() == 3, "three slots")
    assert worker.capacity == 3  # at max: one message per slot, no more
    GATE.set()
    step_until(worker, lambda: all(r.ready() for r in sent), "every task")
    assert RUNS == Counter(range(6))
    fake.now += 31
    worker.step()
    assert worker.pool_size() == 0


def test_remote_autoscale_moves_the_range_and_pool_grow_widens_it(scaled):
    worker, fake = scaled(4, 1)
    remote = RemoteControl(worker)
    assert remote.run("autoscale", {"max": 6, "min": 3}) == {"ok": "autoscale now max=6 min=3"}
    worker.step()
    assert worker.pool_size() == 3  # up to the new min at once
    # max below min is refused; so are numbers that are not whole or out of range
    assert "max (2) must be at least min (3)" in remote.run("autoscale", {"max": 2})["error"]
    assert "max must be a whole number of at least 1" in remote.run(
        "autoscale", {"max": 0, "min": 0})["error"]
    assert "min must be a whole number of at least 0" in remote.run(
        "autoscale", {"min": "x"})["error"]
    assert "threads pool grows to 256" in remote.run("autoscale", {"max": 300})["error"]
    assert remote.run("autoscale", {"max": 2, "min": 1}) == {"ok": "autoscale now max=2 min=1"}
    worker.step()
    assert worker.pool_size() == 2  # down to the new max at once

    assert remote.run("pool_grow", {"n": 3}) == {"ok": "pool will grow"}
    worker.step()
    stats = remote.run("stats", {})
    assert stats["autoscaler"] == {"max": 5, "min": 1, "current": 5, "qty": 0}
    assert stats["pool"]["max-concurrency"] == 5
    fake.now += 31  # quiet: the autoscaler takes it back to min
    worker.step()
    assert worker.pool_size() == 1
    assert remote.run("pool_shrink", {"n": 1}) == {"error": "pool_shrink: cannot shrink a "
                                                             "pool of 1 by 1"}


def test_autoscale_without_autoscale_and_the_banner(scaled, memory_settings):
    plain = Worker(WorkerOptions.from_settings(pool="threads", concurrency=2, queues=(QUEUE,)),
                   monitor=False)
    reply = RemoteControl(plain).run("autoscale", {"max": 4, "min": 1})
    assert "autoscale is not enabled on this worker: start it with --autoscale MAX,MIN" in (
        reply["error"])
    assert "autoscaler" not in RemoteControl(plain).run("stats", {})
    assert "- pool:        threads x 2 (prefetch 8)" in banner(plain)
    worker, _ = scaled(10, 3)
    assert "- pool:        threads, concurrency: 3..10 (autoscale; prefetch 4 per slot)" in (
        banner(worker))


def test_the_control_api_has_celerys_autoscale(memory_settings):
    from django_taskq.control.memory import MemoryControlStore

    store = MemoryControlStore()
    cursor, _ = store.read_commands(None)
    assert Control(store).autoscale(10, 3) == []
    _, [sent] = store.read_commands(cursor)
    assert (sent["name"], sent["arguments"]) == ("autoscale", {"max": 10, "min": 3})


# -- a real worker process ------------------------------------------------------------------------

def taskworker(*args: str, overrides: dict[str, Any]) -> tuple[subprocess.Popen[str], Any]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), DJANGO_SETTINGS_MODULE="tests.settings",
               TASKQ_TEST_SQLITE=str(connections["default"].settings_dict["NAME"]),
               TASKQ_TEST_OVERRIDES=json.dumps(overrides))
    log = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen([sys.executable, "-m", "django", "taskworker", *args], cwd=ROOT,
                            env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
    return proc, log


def eventually(check: Any, what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.own_server
@pytest.mark.subprocess
@pytest.mark.django_db(transaction=True)
def test_a_prefork_worker_scales_with_a_burst_and_back(settings, tmp_path):
    url = "db://default"
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": url, "RESULT_BACKEND": url,
                      "REVOKE_POLL_INTERVAL": 0.1}
    host = "autoscale@test"
    proc, log = taskworker(
        "--autoscale", "4,1", "--pool", "prefork", "-Q", QUEUE, "-n", host,
        overrides={"BROKER_URL": url, "RESULT_BACKEND": url, "POLL_INTERVAL": 0.05,
                   "REVOKE_POLL_INTERVAL": 0.1, "WORKER_AUTOSCALE_KEEPALIVE": 1.5})
    ask = Control().inspect(destination=[host], timeout=2)

    def scaler() -> dict[str, Any] | None:
        replies = ask.stats()
        return replies[host]["autoscaler"] if replies else None

    try:
        assert eventually(scaler, "the worker's stats") == {
            "max": 4, "min": 1, "current": 1, "qty": 0}
        sent = [tasks.record_and_sleep.apply_async((str(tmp_path / f"run-{n}"), 0.4),
                                                   queue=QUEUE) for n in range(16)]
        eventually(lambda: (scaler() or {}).get("current") == 4, "the pool at 4")
        # A lower max mid-burst: two busy children retire after their task, none is killed.
        control = Control()
        assert control.autoscale(2, 1, destination=[host], reply=True, timeout=5) == [
            {host: {"ok": "autoscale now max=2 min=1"}}]
        eventually(lambda: (scaler() or {}).get("current") == 2, "the pool down to 2")
        assert [r.get(timeout=20) for r in sent] == ["slept"] * 16
        runs = [(tmp_path / f"run-{n}").read_text().split() for n in range(16)]
        assert all(len(pids) == 1 for pids in runs), runs  # each exactly once
        assert len({pid for pids in runs for pid in pids}) == 4  # on four children at once
        eventually(lambda: (scaler() or {}).get("current") == 1, "the pool back at 1")
        eventually(lambda: len(ask.stats()[host]["pool"]["processes"]) == 1, "one child left")

        assert control.autoscale(3, 2, destination=[host], reply=True, timeout=5) == [
            {host: {"ok": "autoscale now max=3 min=2"}}]
        eventually(lambda: (scaler() or {}).get("current") == 2, "the pool at the new min")
        assert control.autoscale(1, 2, destination=[host], reply=True, timeout=5) == [
            {host: {"error": "autoscale: max (1) must be at least min (2): autoscale(max, min) "
                             "takes the maximum first"}}]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        log.seek(0)
        output = log.read()
        assert "concurrency: 1..4 (autoscale" in output
        # The path depends on how the burst is claimed (1 → 4, or 1 → 2 → 4 ...).
        assert "autoscale: growing the pool from 1 to " in output, output
        assert "autoscale: shrinking the pool from 4 to " in output, output
        assert all(r.state == states.SUCCESS for r in sent)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def test_taskq_control_autoscale_sends_celerys_arguments(memory_settings, monkeypatch):
    sent: list[tuple[str, dict[str, Any]]] = []

    def broadcast(self: Any, command: str, arguments: Any = None, **options: Any) -> Any:
        sent.append((command, arguments))
        return [{"w@h": {"ok": "autoscale now max=10 min=3"}}]

    monkeypatch.setattr(Control, "broadcast", broadcast)
    call_command("taskq", "control", "autoscale", "10", "3", "-d", "w@h")
    call_command("taskq", "control", "autoscale", "8", "-d", "w@h")
    assert sent == [("autoscale", {"max": 10, "min": 3}), ("autoscale", {"max": 8, "min": None})]
    with pytest.raises(CommandError, match="expected a positive whole number, got '0'"):
        call_command("taskq", "control", "autoscale", "0")
