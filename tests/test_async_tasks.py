"""``async def`` tasks: eager runs, the solo/threads/prefork pools, and the asyncio pool
(in-process; a real ``taskworker --pool asyncio`` is in test_async_pool_process.py)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from django_taskq import signals, states
from django_taskq.exceptions import TimeLimitExceeded
from django_taskq.worker import Worker, WorkerOptions
from django_taskq.worker.asyncio_pool import DEFAULT_CONCURRENCY, AsyncioPool
from django_taskq.worker.pools import TERMINATED, PreforkPool, make_pool
from tests.test_time_limits import make_job, run_jobs, run_one, value
from tests.testapp import async_tasks as at

SYNC_POOLS = ["solo", "threads", "prefork"]


@pytest.fixture
def eager(settings):
    settings.TASKQ = {**settings.TASKQ, "TASK_ALWAYS_EAGER": True}


@pytest.fixture(params=[*SYNC_POOLS, "asyncio"])
def pool(request):
    made = make_pool(request.param, 2)
    made.start()
    yield made
    made.stop()


@pytest.fixture
def aio():
    made = AsyncioPool(100)
    made.start()
    yield made
    made.stop()


def error(outcome) -> str:
    assert outcome.state == states.FAILURE, outcome
    return json.loads(outcome.payload)["exc_type"]


# -- eager ---------------------------------------------------------------------------------

def test_eager_runs_async_tasks_through_the_worker_steps(eager):
    assert at.add.delay(2, 3).get() == 5
    assert at.doubler.delay(21).get() == 42  # a Task subclass with async def run
    retried = at.retrying.delay(2).get()  # self.retry() inside the coroutine, twice
    assert retried["retries"] == 2
    assert at.flaky.apply().get() == "steady"  # autoretry_for sees what the await raised
    assert at.retry_later.apply().get() == 1  # retry(throw=False) made in the coroutine
    with pytest.raises(ValueError, match="nope"):
        at.fail.delay("nope").get()
    with pytest.raises(ValueError, match="thrown"):
        at.fail.apply(("thrown",), throw=True)
    assert at.ignored.apply().state == states.IGNORED


def test_calling_an_async_task_directly_gives_its_coroutine():
    assert asyncio.run(at.add(2, 3)) == 5


def test_eager_run_from_async_code_runs_beside_the_callers_loop():
    async def view():
        return at.add.apply((1, 2)).get(), at.where.apply().get()["thread"]

    total, thread = asyncio.run(view())
    assert total == 3 and thread == "taskq-coroutine"


# -- every pool ----------------------------------------------------------------------------

def test_outcomes_on_every_pool(pool):
    assert value(run_one(pool, make_job(at.add, 1, 2))) == 3
    assert value(run_one(pool, make_job(at.doubler, 4))) == 8
    assert error(run_one(pool, make_job(at.fail, "x"))) == "ValueError"
    retry = run_one(pool, make_job(at.retrying, 1))
    assert retry.state == states.RETRY and retry.retry is not None
    assert run_one(pool, make_job(at.retry_later)).state == states.RETRY
    assert run_one(pool, make_job(at.flaky)).state == states.RETRY
    assert run_one(pool, make_job(at.ignored)).state == states.IGNORED
    assert value(run_one(pool, make_job(at.nested_apply))) == 42  # not on the busy loop
    rejected = run_one(pool, make_job(at.rejected))
    assert rejected.disposition == "dead_letter" and "no thanks" in rejected.reason


def test_time_limits_by_cancellation_on_every_pool(pool):
    soft = run_one(pool, make_job(at.soft_limited, 10, soft_time_limit=0.2))
    assert value(soft) == "cleaned up"  # SoftTimeLimitExceeded raised at its await
    started = time.monotonic()
    hard = run_one(pool, make_job(at.sleeper, 10, time_limit=0.3))
    assert error(hard) == TimeLimitExceeded.__name__
    assert time.monotonic() - started < 5
    assert value(run_one(pool, make_job(at.add, 2, 2))) == 4  # the pool goes on


def test_a_cancelled_error_from_inside_fails_the_task_not_the_pool(pool):
    outcome = run_one(pool, make_job(at.awaits_a_cancelled_future))
    assert error(outcome) == "RuntimeError" and b"without being cancelled" in outcome.payload
    assert value(run_one(pool, make_job(at.add, 1, 1))) == 2


def test_signals_and_handlers_see_the_awaited_result(pool):
    seen = []

    def on_success(sender, result, **kwargs):
        seen.append(("success", sender.name, result))

    def on_postrun(sender, retval, state, **kwargs):
        seen.append(("postrun", sender.name, retval, state))

    signals.task_success.connect(on_success, weak=False)
    signals.task_postrun.connect(on_postrun, weak=False)
    try:
        run_one(pool, make_job(at.add, 20, 22))
    finally:
        signals.task_success.disconnect(on_success)
        signals.task_postrun.disconnect(on_postrun)
    if isinstance(pool, PreforkPool):
        return  # the receivers ran in the child process
    assert seen == [("success", at.add.name, 42), ("postrun", at.add.name, 42, states.SUCCESS)]


@pytest.fixture
def tenant_middleware(settings):
    """Set before the pool starts (prefork children read the settings they were forked with)."""
    settings.TASKQ = {**settings.TASKQ, "MIDDLEWARE": ["tests.testapp.middleware.Tenant"]}


def test_middleware_wraps_the_awaited_run(tenant_middleware, pool):
    job = make_job(at.tenant)
    job.request.headers["tenant"] = "acme"
    assert value(run_one(pool, job)) == "acme"  # the coroutine runs inside execute()
    hard = run_one(pool, make_job(at.sleeper, 10, time_limit=0.3))
    assert error(hard) == TimeLimitExceeded.__name__


def test_a_coroutine_that_never_awaits_is_stopped_on_solo_by_the_alarm_backstop():
    solo = make_pool("solo", 1)
    started = time.monotonic()
    assert error(run_one(solo, make_job(at.spin, 30, time_limit=0.2))) == "TimeLimitExceeded"
    assert time.monotonic() - started < 10
    assert value(run_one(solo, make_job(at.add, 1, 1))) == 2  # a fresh loop for the next


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["solo", "asyncio"])
def test_async_orm_runs_and_its_connections_are_closed(kind, django_user_model):
    django_user_model.objects.create(username="a")
    pool = make_pool(kind, 2)
    pool.start()
    try:
        at.used_connections.clear()
        assert value(run_one(pool, make_job(at.users_count))) == 1
    finally:
        pool.stop()
    [wrapper] = at.used_connections
    assert wrapper.connection is None  # closed on its thread when the task ended


@pytest.mark.parametrize("kind", ["solo", "asyncio"])
def test_the_sync_orm_in_a_coroutine_fails_the_task_naming_the_cause(kind):
    pool = make_pool(kind, 2)
    pool.start()
    try:
        outcome = run_one(pool, make_job(at.sync_orm_in_coroutine))
    finally:
        pool.stop()
    assert error(outcome) == "SynchronousOnlyOperation"  # docs/pools.md: use aget/sync_to_async


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("kind", ["solo", "asyncio"])
def test_a_coroutine_sends_tasks_and_progress_through_sync_to_async_on_the_database(kind,
                                                                                   settings):
    from django_taskq import AsyncResult
    from django_taskq.brokers import get_broker

    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": "db://default",
                      "RESULT_BACKEND": "db://default"}
    pool = make_pool(kind, 2)
    pool.start()
    try:
        job = make_job(at.send_from_coroutine)
        sent = value(run_one(pool, job))
    finally:
        pool.stop()
    assert AsyncResult(job.request.id).state == "PROGRESS"  # stored by update_state
    assert get_broker().size("default") == 1 and AsyncResult(sent).state == states.PENDING


# -- the asyncio pool ------------------------------------------------------------------------

def test_asyncio_pool_runs_async_tasks_side_by_side(aio):
    at.overlap.update(now=0, most=0)
    started = time.monotonic()
    outcomes = run_jobs(aio, *[make_job(at.sleeper, 0.3, n) for n in range(200)])
    elapsed = time.monotonic() - started
    assert sorted(value(o) for o in outcomes.values()) == list(range(200))
    assert at.overlap["most"] == 100  # every slot awaited at once (one after another: 60 s)
    assert elapsed < 20


def test_asyncio_pool_runs_sync_tasks_on_threads_without_blocking_the_loop(aio):
    sync_jobs = [make_job(at.sync_sleeper, 1.0, n) for n in range(10)]
    async_jobs = [make_job(at.sleeper, 0.05, n) for n in range(50)]
    for job in sync_jobs + async_jobs:
        aio.submit(job)
    order = []
    deadline = time.monotonic() + 20
    while len(order) < 60:
        assert time.monotonic() < deadline
        order.extend(aio.collect(0.1))
    keys = [key for key, _ in order]
    sync_keys = {job.key for job in sync_jobs}
    assert not sync_keys & set(keys[:50])  # every coroutine ended while the threads slept
    threads = {value(o)[1].rsplit("_", 1)[0] for k, o in order if k in sync_keys}
    assert threads == {"taskq-worker"}


def test_asyncio_pool_kill_cancels_the_coroutine_and_not_a_thread(aio):
    long, blocking = make_job(at.sleeper, 30), make_job(at.sync_sleeper, 0.2)
    aio.submit(long)
    aio.submit(blocking)
    time.sleep(0.2)
    assert aio.kill(long.key)
    assert not aio.kill(blocking.key)  # a thread cannot be stopped
    assert not aio.kill(12345)
    got: dict = {}
    deadline = time.monotonic() + 10
    while len(got) < 2:
        assert time.monotonic() < deadline
        got.update(aio.collect(0.1))
    assert got[long.key] is TERMINATED
    assert got[blocking.key].state == states.SUCCESS


def test_asyncio_pool_hard_limit_repeats_the_cancel_for_a_coroutine_that_swallows_it(aio):
    outcome = run_one(aio, make_job(at.stubborn, 30, time_limit=0.2))
    assert error(outcome) == "TimeLimitExceeded"


def test_asyncio_pool_stop_waits_for_running_tasks():
    made = AsyncioPool(10)
    made.start()
    jobs = [make_job(at.sleeper, 0.3, n) for n in range(5)]
    for job in jobs:
        made.submit(job)
    made.stop()
    assert sorted(value(o) for _, o in made.collect(0)) == list(range(5))
    with pytest.raises(ValueError, match="1 to 10000 slots"):
        made.resize(0)


def test_asyncio_pool_terminate_cancels_running_coroutines_at_once():
    made = AsyncioPool(10)
    made.start()
    made.submit(make_job(at.sleeper, 30))
    time.sleep(0.1)
    started = time.monotonic()
    made.terminate()
    assert time.monotonic() - started < 3
    assert made._thread is None  # the loop's thread has ended


def test_worker_on_the_asyncio_pool(settings):
    settings.TASKQ = {**settings.TASKQ, "WORKER_POOL": "asyncio"}
    options = WorkerOptions.from_settings(queues=("default",))
    assert options.pool == "asyncio" and options.concurrency == DEFAULT_CONCURRENCY
    assert WorkerOptions.from_settings(concurrency=7).concurrency == 7
    worker = Worker(options)
    worker.pool.start()
    try:
        results = [at.sleeper.delay(0.2, n) for n in range(30)] + [at.add.delay(1, 2)] + \
            [at.sync_sleeper.delay(0.1, "sync")]
        deadline = time.monotonic() + 20
        while not all(r.ready() for r in results):
            assert time.monotonic() < deadline
            worker.step()
        assert [r.get(timeout=1) for r in results[:30]] == list(range(30))
        assert results[30].get(timeout=1) == 3
        assert results[31].get(timeout=1)[0] == "sync"
    finally:
        worker.pool.stop()
        worker.heartbeat.stop()


def test_asyncio_pool_warns_when_a_coroutine_blocks_its_loop(aio, caplog):
    with caplog.at_level("WARNING", logger="django_taskq.worker.asyncio_pool"):
        assert value(run_one(aio, make_job(at.spin, 1.5))) == "spun"
    [warning] = [r.getMessage() for r in caplog.records if "blocked" in r.getMessage()]
    assert "does not await" in warning and at.spin.name in warning
