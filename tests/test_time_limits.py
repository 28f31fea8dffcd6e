"""Soft and hard time limits in the solo and prefork pools, pool.kill, and the worker flags."""

from __future__ import annotations

import json
import logging
import signal
import time
import uuid
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from django_taskq import states
from django_taskq.brokers import get_broker
from django_taskq.context import Request
from django_taskq.exceptions import ConfigurationError, SoftTimeLimitExceeded, TimeLimitExceeded
from django_taskq.management.commands.taskworker import Command
from django_taskq.models import QueuedMessage
from django_taskq.worker import timelimits
from django_taskq.worker.job import Job
from django_taskq.worker.pools import TERMINATED, PreforkPool, SoloPool, make_pool
from django_taskq.worker.timelimits import Limits
from tests.test_worker_process import WorkerProcess, wait_for
from tests.testapp import limit_tasks, tasks

_keys = iter(range(1, 1_000_000))


def make_job(task, *args, time_limit=None, soft_time_limit=None, **kwargs) -> Job:
    request = Request(id=str(uuid.uuid4()), task=task.name, args=args, kwargs=kwargs,
                      hostname="tester@host")
    return Job(key=next(_keys), task_name=task.name, request=request, ignore_result=False,
               result_serializer="json", time_limit=time_limit, soft_time_limit=soft_time_limit)


def run_jobs(pool, *jobs: Job, timeout: float = 30.0) -> dict:
    """Submit ``jobs`` as slots free up; every key's outcome, checking each comes exactly once."""
    pending, results = list(jobs), {}
    deadline = time.monotonic() + timeout
    while len(results) < len(jobs):
        assert time.monotonic() < deadline, f"timed out; got {results}"
        while pending and pool.free_slots():
            pool.submit(pending.pop(0))
        for key, outcome in pool.collect(0.1):
            assert key not in results, f"job {key} reported twice"
            results[key] = outcome
    return results


def run_one(pool, job: Job):
    return run_jobs(pool, job)[job.key]


def value(outcome):
    assert outcome.state == states.SUCCESS, outcome.error
    return json.loads(outcome.payload)


def lines(path: Path) -> list[str]:
    return path.read_text().split("\n")[:-1] if path.exists() else []


@pytest.fixture
def make():
    """Build started solo or prefork pools with the given limits; stopped afterwards."""
    made = []

    def build(kind, **limits):
        pool = SoloPool(Limits(**limits)) if kind == "solo" else PreforkPool(1, Limits(**limits))
        pool.start()
        made.append(pool)
        return pool

    yield build
    for pool in made:
        pool.terminate()


@pytest.fixture
def fresh_warnings(monkeypatch):
    monkeypatch.setattr(timelimits, "_warned", set())


KINDS = ["solo", "prefork"]

# -- soft limit -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_soft_limit_can_be_caught_to_clean_up(make, kind):
    pool = make(kind)
    outcome = run_one(pool, make_job(limit_tasks.clean_up_on_soft_limit, 30, soft_time_limit=0.3))
    assert value(outcome) == "cleaned up"


@pytest.mark.parametrize("kind", KINDS)
def test_uncaught_soft_limit_is_a_failure(make, kind):
    pool = make(kind)
    outcome = run_one(pool, make_job(limit_tasks.nap, 30, soft_time_limit=0.3))
    assert outcome.state == states.FAILURE
    assert outcome.error == "SoftTimeLimitExceeded: soft time limit (0.3s) exceeded"
    assert "time.sleep(seconds)" in outcome.traceback


def test_timer_is_cancelled_and_handler_restored_after_the_task(make):
    pool = make("solo")
    before = signal.getsignal(signal.SIGALRM)
    assert value(run_one(pool, make_job(limit_tasks.pid, soft_time_limit=0.2,
                                        time_limit=0.4))) > 0
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert signal.getsignal(signal.SIGALRM) is before
    time.sleep(0.5)  # nothing left to fire: this test would end in an exception


# -- hard limit -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_hard_limit_stops_a_task_that_swallows_exceptions(make, kind, tmp_path):
    marker = tmp_path / "notes"
    pool = make(kind)
    stuck = make_job(limit_tasks.swallow_exceptions, str(marker), 30, time_limit=0.5)
    outcome = run_one(pool, stuck)
    assert outcome.state == states.FAILURE
    assert outcome.error.startswith("TimeLimitExceeded: hard time limit (0.5s) exceeded")
    assert (outcome.task_id, outcome.worker) == (stuck.request.id, "tester@host")
    assert "finished" not in lines(marker)
    assert value(run_one(pool, make_job(tasks.add, 2, 3))) == 5  # the pool goes on


def test_solo_hard_limit_fires_again_when_swallowed(make, tmp_path):
    marker = tmp_path / "notes"
    pool = make("solo")
    outcome = run_one(pool, make_job(limit_tasks.swallow_once, str(marker), 30, time_limit=0.3))
    assert outcome.error.startswith("TimeLimitExceeded")
    assert lines(marker) == ["swallowed"]


def test_prefork_hard_limit_replaces_the_child(make, tmp_path):
    marker = tmp_path / "notes"
    pool = make("prefork")
    first = value(run_one(pool, make_job(limit_tasks.pid)))
    outcome = run_one(pool, make_job(limit_tasks.nap, 30, str(marker), time_limit=0.5))
    assert "the process was killed" in outcome.error
    assert lines(marker) == [f"start {first}"]
    assert value(run_one(pool, make_job(limit_tasks.pid))) != first


@pytest.mark.parametrize("kind", KINDS)
def test_soft_limit_fires_before_the_hard_one(make, kind, tmp_path):
    marker = tmp_path / "notes"
    pool = make(kind)
    outcome = run_one(pool, make_job(limit_tasks.ignore_soft_limit, str(marker), 30,
                                     soft_time_limit=0.3, time_limit=0.8))
    assert outcome.error.startswith("TimeLimitExceeded")
    assert lines(marker) == ["soft"]


@pytest.mark.parametrize("kind", KINDS)
def test_pool_limits_are_defaults_that_a_job_overrides(make, kind, tmp_path):
    pool = make(kind, time_limit=0.6, soft_time_limit=0.2)
    defaulted = run_one(pool, make_job(limit_tasks.clean_up_on_soft_limit, 30))
    assert value(defaulted) == "cleaned up"
    hard = run_one(pool, make_job(limit_tasks.ignore_soft_limit, str(tmp_path / "n"), 30))
    assert hard.error.startswith("TimeLimitExceeded: hard time limit (0.6s)")
    own = run_one(pool, make_job(limit_tasks.nap, 0.8, time_limit=10, soft_time_limit=5))
    assert value(own) == "slept"


def test_prefork_children_share_the_wait_for_the_nearest_deadline(tmp_path):
    """Two children, one over its limit: the limit is enforced while the other keeps running."""
    pool = PreforkPool(2)
    pool.start()
    try:
        slow = make_job(limit_tasks.nap, 1.5)
        stuck = make_job(limit_tasks.nap, 30, time_limit=0.3)
        results = run_jobs(pool, slow, stuck)
    finally:
        pool.stop()
    assert value(results[slow.key]) == "slept"
    assert results[stuck.key].error.startswith("TimeLimitExceeded")


# -- configuration ----------------------------------------------------------------------------


@pytest.mark.parametrize("limits, message", [
    ({"time_limit": 2, "soft_time_limit": 2}, "must be below the hard time limit"),
    ({"time_limit": 1, "soft_time_limit": 5}, "must be below the hard time limit"),
    ({"time_limit": 0}, "positive number of seconds"),
    ({"soft_time_limit": -1}, "positive number of seconds"),
    ({"max_tasks_per_child": 0}, "at least 1"),
    ({"max_memory_per_child": 0}, "at least 1"),
])
def test_bad_worker_limits_are_configuration_errors(limits, message):
    with pytest.raises(ConfigurationError, match=message):
        make_pool("prefork", 1, **limits)


def test_threads_pool_warns_that_it_cannot_enforce_time_limits(caplog, fresh_warnings):
    with caplog.at_level(logging.WARNING, logger="django_taskq"):
        make_pool("threads", 2, time_limit=5)
        make_pool("threads", 2, time_limit=5)
    warnings = [r.getMessage() for r in caplog.records if "threads pool" in r.getMessage()]
    assert len(warnings) == 1 and "not enforced" in warnings[0]


@pytest.mark.parametrize("kind", ["solo", "threads"])
def test_recycling_is_ignored_with_a_warning_outside_prefork(caplog, fresh_warnings, kind):
    with caplog.at_level(logging.WARNING, logger="django_taskq"):
        make_pool(kind, 1, max_tasks_per_child=2, max_memory_per_child=1000)
    assert f"ignored by the {kind} pool" in caplog.text


def test_time_limits_warn_off_the_main_thread(caplog, fresh_warnings):
    import threading

    outcome = []
    pool = SoloPool()
    thread = threading.Thread(target=lambda: outcome.append(
        run_one(pool, make_job(limit_tasks.nap, 0.2, time_limit=0.1))))
    with caplog.at_level(logging.WARNING, logger="django_taskq"):
        thread.start()
        thread.join()
    assert value(outcome[0]) == "slept"
    assert "main thread" in caplog.text


# -- kill -------------------------------------------------------------------------------------


def test_prefork_kill_yields_terminated_and_the_pool_goes_on(make, tmp_path):
    marker = tmp_path / "notes"
    pool = make("prefork")
    job = make_job(limit_tasks.nap, 30, str(marker))
    pool.submit(job)
    wait_for(lambda: len(lines(marker)) == 1)
    assert pool.kill(job.key) is True
    assert pool.kill(job.key) is False  # already dying: one TERMINATED only
    assert pool.collect(0) == [(job.key, TERMINATED)]
    assert pool.collect(0) == []
    assert pool.free_slots() == 1
    killed_pid = int(lines(marker)[0].split()[1])
    assert value(run_one(pool, make_job(limit_tasks.pid))) != killed_pid
    assert pool.kill(job.key) is False  # not running any more


@pytest.mark.parametrize("kind", ["solo", "threads"])
def test_solo_and_threads_cannot_kill(kind):
    pool = make_pool(kind, 1)
    pool.start()
    try:
        assert pool.kill(1) is False
    finally:
        pool.stop()


# -- in-process worker (solo) -----------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite", "postgres", "redis"])
def broker_kind(request):
    """The brokers these tests run on (RabbitMQ comes later)."""
    return request.param


def test_solo_worker_fails_a_task_over_its_hard_limit_and_goes_on(make_worker, tmp_path):
    marker = tmp_path / "notes"
    stuck = limit_tasks.swallow_exceptions.delay(str(marker), 30)
    after = tasks.add.delay(1, 2)
    worker = make_worker(pool="solo", time_limit=0.5)
    for _ in range(20):
        worker.step()
        if after.ready():
            break
    assert stuck.state == states.FAILURE
    error = stuck.get(propagate=False)
    assert isinstance(error, TimeLimitExceeded) and "0.5s" in str(error)
    assert after.get(timeout=5) == 3
    assert "finished" not in lines(marker)
    assert get_broker().size("default") == 0


def test_solo_worker_soft_limit_from_the_task_call(make_worker):
    caught = limit_tasks.clean_up_on_soft_limit.apply_async((30,), soft_time_limit=0.3)
    uncaught = limit_tasks.nap.apply_async((30,), soft_time_limit=0.3)
    worker = make_worker(pool="solo")
    for _ in range(20):
        worker.step()
        if caught.ready() and uncaught.ready():
            break
    assert caught.get(timeout=5) == "cleaned up"
    assert isinstance(uncaught.get(timeout=5, propagate=False), SoftTimeLimitExceeded)


# -- a real worker process --------------------------------------------------------------------


def real_worker(service, *args: str) -> WorkerProcess:
    alias, url = service
    return WorkerProcess(alias, "--pool", "prefork", "--concurrency", "1", *args,
                         broker_url=url, result_backend=url)


def nothing_left(service) -> bool:
    alias, url = service
    if url.startswith("redis"):
        import redis

        client = redis.Redis.from_url(url)
        try:
            return get_broker().size("default") == 0 and client.hlen("taskq:inflight") == 0
        finally:
            client.close()
    return QueuedMessage.objects.using(alias).count() == 0


def check_killed_once_and_worker_goes_on(service, worker, result, marker):
    error = result.get(timeout=20, propagate=False)
    assert isinstance(error, TimeLimitExceeded), error
    assert "hard time limit (1s) exceeded; the process was killed" in str(error)
    killed_pid = int(lines(marker)[0].split()[1])
    assert limit_tasks.pid.delay().get(timeout=20) != killed_pid  # a fresh child
    worker.signal(signal.SIGTERM)
    code, output = worker.wait()
    assert code == 0, output
    assert len(lines(marker)) == 1  # ran once: the FAILURE was acked, not redelivered
    assert nothing_left(service)
    return output


@pytest.mark.subprocess
@pytest.mark.django_db(transaction=True, databases="__all__")
def test_worker_time_limit_flag_kills_the_child_once(service, tmp_path):
    marker = tmp_path / "notes"
    result = limit_tasks.nap.delay(30, str(marker))
    with real_worker(service, "--time-limit", "1") as worker:
        output = check_killed_once_and_worker_goes_on(service, worker, result, marker)
    assert "task killed name=tests.testapp.limit_tasks.nap" in output


@pytest.mark.subprocess
@pytest.mark.django_db(transaction=True, databases="__all__")
def test_time_limit_sent_with_the_call_kills_the_child_once(service, tmp_path):
    marker = tmp_path / "notes"
    result = limit_tasks.nap.apply_async((30, str(marker)), time_limit=1)
    caught = limit_tasks.clean_up_on_soft_limit.apply_async((30,), soft_time_limit=0.5)
    with real_worker(service) as worker:
        assert caught.get(timeout=20) == "cleaned up"
        check_killed_once_and_worker_goes_on(service, worker, result, marker)


# -- taskworker flags -------------------------------------------------------------------------


def parsed_options(*argv: str):
    command = Command()
    options = vars(command.create_parser("manage.py", "taskworker").parse_args(list(argv)))
    return command._worker_options(options)


def test_limit_flags_reach_the_worker_options():
    options = parsed_options("--time-limit", "10", "--soft-time-limit", "7.5",
                             "--max-tasks-per-child", "100", "--max-memory-per-child", "200000")
    assert (options.time_limit, options.soft_time_limit) == (10.0, 7.5)
    assert (options.max_tasks_per_child, options.max_memory_per_child) == (100, 200000)


def test_limit_flags_default_to_the_settings(settings):
    settings.TASKQ = {**settings.TASKQ, "WORKER_TIME_LIMIT": 30, "WORKER_SOFT_TIME_LIMIT": 20,
                      "WORKER_MAX_TASKS_PER_CHILD": 5, "WORKER_MAX_MEMORY_PER_CHILD": 1000}
    options = parsed_options()
    assert (options.time_limit, options.soft_time_limit) == (30.0, 20.0)
    assert (options.max_tasks_per_child, options.max_memory_per_child) == (5, 1000)
    assert parsed_options("--time-limit", "60").time_limit == 60.0


@pytest.mark.parametrize("argv, message", [
    (["--time-limit", "0"], "--time-limit must be a positive number"),
    (["--time-limit", "-3"], "--time-limit must be a positive number"),
    (["--time-limit", "nan"], "--time-limit must be a positive number"),
    (["--soft-time-limit", "0"], "--soft-time-limit must be a positive number"),
    (["--time-limit", "abc"], "invalid float value"),
    (["--time-limit", "5", "--soft-time-limit", "5"], r"--soft-time-limit \(5s\) must be below"),
    (["--time-limit", "5", "--soft-time-limit", "9"], r"--soft-time-limit \(9s\) must be below"),
    (["--max-tasks-per-child", "0"], "--max-tasks-per-child must be at least 1"),
    (["--max-tasks-per-child", "1.5"], "invalid int value"),
    (["--max-memory-per-child", "-1"], "--max-memory-per-child must be at least 1"),
])
def test_bad_limit_flags_are_command_errors(argv, message):
    with pytest.raises(CommandError, match=message):
        call_command("taskworker", *argv)


def test_soft_limit_flag_above_the_hard_limit_setting_is_a_command_error(settings):
    settings.TASKQ = {**settings.TASKQ, "WORKER_TIME_LIMIT": 2}
    with pytest.raises(CommandError, match=r"soft time limit \(3s\) must be below the hard"):
        call_command("taskworker", "--soft-time-limit", "3", "--pool", "solo")


@pytest.mark.parametrize("kind", KINDS)
def test_a_task_stopped_at_its_hard_limit_sends_its_errbacks(make, kind, tmp_path):
    import dataclasses

    from tests.testapp import canvas_tasks as ct

    job = make_job(limit_tasks.nap, 30, str(tmp_path / "notes"), time_limit=0.4)
    job = dataclasses.replace(job, request=dataclasses.replace(
        job.request, embed={"errbacks": [dict(ct.failed_id.s())]}))
    outcome = run_one(make(kind), job)
    assert outcome.error.startswith("TimeLimitExceeded")
    [errback] = outcome.follow_ups  # sent when the run is settled, as after any failure
    assert errback.task_name == "canvas.failed_id"
    assert json.loads(errback.body)[0] == [job.request.id]
