"""Prefork children replaced after N tasks or above a memory size: nothing lost, nothing twice."""

from __future__ import annotations

import signal
from collections import Counter

import pytest

from django_taskq import states
from django_taskq.worker.pools import PreforkPool
from django_taskq.worker.timelimits import Limits, resident_memory_kib
from tests.test_time_limits import lines, make_job, nothing_left, real_worker, run_jobs, run_one, value
from tests.testapp import limit_tasks


@pytest.fixture
def prefork():
    made = []

    def build(slots=1, **limits):
        pool = PreforkPool(slots, Limits(**limits))
        pool.start()
        made.append(pool)
        return pool

    yield build
    for pool in made:
        pool.terminate()


def test_max_tasks_per_child_replaces_each_child_after_n_tasks(prefork, tmp_path):
    marker = tmp_path / "runs"
    pool = prefork(max_tasks_per_child=2)
    jobs = [make_job(limit_tasks.pid_and_mark, str(marker), n) for n in range(10)]
    results = run_jobs(pool, *jobs)
    assert sorted(results) == sorted(job.key for job in jobs)  # each outcome exactly once
    pids = Counter(value(results[job.key]) for job in jobs)
    assert len(pids) == 5 and set(pids.values()) == {2}
    assert sorted(int(n) for n in lines(marker)) == list(range(10))  # each ran exactly once


def test_children_are_replaced_under_concurrency(prefork):
    pool = prefork(slots=3, max_tasks_per_child=1)
    jobs = [make_job(limit_tasks.pid) for _ in range(9)]
    results = run_jobs(pool, *jobs)
    assert len({value(results[job.key]) for job in jobs}) == 9
    assert pool.free_slots() == 3


def test_max_memory_per_child_replaces_a_child_that_grew(prefork):
    # A child starts with what it inherits from this process; allow that plus some room.
    pool = prefork(max_memory_per_child=resident_memory_kib() + 30_000)
    before = value(run_one(pool, make_job(limit_tasks.pid)))
    assert value(run_one(pool, make_job(limit_tasks.pid))) == before  # small tasks: kept
    hog = make_job(limit_tasks.hog_memory, 80)
    assert value(run_one(pool, hog)) == before  # the hog's outcome arrives, then it retires
    after = [value(run_one(pool, make_job(limit_tasks.pid))) for _ in range(2)]
    assert after[0] != before and after[0] == after[1]


def test_resident_memory_grows_with_what_a_process_keeps():
    start = resident_memory_kib()
    kept = b"\x01" * (40 * 1024 * 1024)
    assert resident_memory_kib() - start >= 30_000
    del kept


def test_limits_say_when_a_child_retires():
    assert Limits().retire_reason(1000) is None
    counted = Limits(max_tasks_per_child=3)
    assert [counted.retire_reason(n) is not None for n in (1, 2, 3)] == [False, False, True]
    assert "max_memory_per_child=1" in Limits(max_memory_per_child=1).retire_reason(1)
    assert Limits(max_memory_per_child=10**9).retire_reason(1) is None


# -- a real worker process --------------------------------------------------------------------


@pytest.mark.subprocess
@pytest.mark.django_db(transaction=True, databases="__all__")
def test_worker_max_tasks_per_child_runs_every_task_once(service, tmp_path):
    marker = tmp_path / "runs"
    results = limit_tasks.pid_and_mark.delay_many([(str(marker), n) for n in range(10)])
    with real_worker(service, "--max-tasks-per-child", "2") as worker:
        pids = [r.get(timeout=30) for r in results]
        worker.signal(signal.SIGTERM)
        code, output = worker.wait()
    assert code == 0, output
    assert all(r.state == states.SUCCESS for r in results)
    assert sorted(int(n) for n in lines(marker)) == list(range(10))  # exactly once each
    assert len(set(pids)) >= 4
    assert "worker process lost" not in output
    assert nothing_left(service)


@pytest.mark.subprocess
@pytest.mark.django_db(transaction=True, databases="__all__")
def test_worker_max_memory_per_child_replaces_the_child_after_the_big_task(service, tmp_path):
    # A worker child holds well under 120 MB of its own; the hog pushes it far above.
    with real_worker(service, "--max-memory-per-child", "120000") as worker:
        first = limit_tasks.pid.delay().get(timeout=30)
        assert limit_tasks.pid.delay().get(timeout=30) == first
        hog = limit_tasks.hog_memory.delay(150)
        assert hog.get(timeout=30) == first
        after = limit_tasks.pid.delay().get(timeout=30)
        worker.signal(signal.SIGTERM)
        code, output = worker.wait()
    assert code == 0, output
    assert after != first
    assert "resident memory" in output and "retiring" in output
    assert "worker process lost" not in output
    assert nothing_left(service)
