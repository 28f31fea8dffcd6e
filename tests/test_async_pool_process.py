"""A real ``taskworker --pool asyncio``: 200 coroutines side by side, sync tasks beside them,
time limits by cancellation, revoke(terminate=True), the ORM, a graceful SIGTERM."""

from __future__ import annotations

import signal
import time

import pytest

from django_taskq import states
from django_taskq.exceptions import TaskRevokedError, TimeLimitExceeded
from tests.conftest import worker_urls
from tests.test_worker_process import WorkerProcess, runs, wait_for
from tests.testapp import async_tasks as at

pytestmark = [pytest.mark.own_server, pytest.mark.subprocess,
              pytest.mark.django_db(transaction=True, databases="__all__")]


@pytest.fixture
def urls(request, settings):
    return worker_urls(request, settings, "redis")


def worker(urls, *args):
    broker, results = urls
    return WorkerProcess("default", *args, broker_url=broker, result_backend=results)


def test_asyncio_pool_process(urls, tmp_path, django_user_model):
    django_user_model.objects.create(username="async")
    marker = tmp_path / "started"
    doomed = at.mark_and_sleep.delay(str(marker), 60)
    with worker(urls, "--pool", "asyncio") as proc:  # default concurrency: 100
        wait_for(lambda: runs(marker) == 1)
        doomed.revoke(terminate=True)
        started = time.monotonic()
        sleepers = at.sleeper.delay_many([(1, n) for n in range(200)])
        syncs = at.sync_sleeper.delay_many([(0.2, n) for n in range(10)])
        soft = at.soft_limited.apply_async((30,), soft_time_limit=0.5)
        hard = at.sleeper.apply_async((30,), time_limit=1)
        users = at.users_count.delay()
        assert [r.get(timeout=60) for r in sleepers] == list(range(200))
        elapsed = time.monotonic() - started
        print(f"200 x asyncio.sleep(1) on --pool asyncio: {elapsed:.2f} s")
        assert elapsed < 30, elapsed  # one after another: 200 s
        assert [r.get(timeout=10)[0] for r in syncs] == list(range(10))
        assert soft.get(timeout=10) == "cleaned up"
        with pytest.raises(TimeLimitExceeded):
            hard.get(timeout=10)
        assert users.get(timeout=10) == 1
        wait_for(doomed.ready, timeout=10)
        with pytest.raises(TaskRevokedError, match="terminated"):
            doomed.get(timeout=1)
        # A warm stop waits for the coroutines that are running.
        finishing = [at.mark_and_sleep.delay(str(marker), 1) for _ in range(3)]
        wait_for(lambda: runs(marker) == 4)
        proc.signal(signal.SIGTERM)
        code, output = proc.wait()
    assert code == 0, output
    assert [r.state for r in finishing] == [states.SUCCESS] * 3
    assert runs(marker) == 4  # the terminated task was not run again


@pytest.mark.parametrize("pool", ["gevent", "eventlet"])
def test_async_def_tasks_run_on_the_green_pools(pool, redis_url, settings):
    from tests.test_green_pools import GreenWorker

    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": redis_url, "RESULT_BACKEND": redis_url}
    with GreenWorker(redis_url, "--pool", pool, "-c", "20") as proc:
        total = at.add.delay(2, 3)
        naps = at.sleeper.delay_many([(0.5, n) for n in range(10)])
        soft = at.soft_limited.apply_async((30,), soft_time_limit=0.3)
        hard = at.sleeper.apply_async((30,), time_limit=0.5)
        retried = at.retrying.delay(1)
        assert total.get(timeout=20) == 5
        assert [r.get(timeout=20) for r in naps] == list(range(10))
        assert soft.get(timeout=20) == "cleaned up"
        with pytest.raises(TimeLimitExceeded):
            hard.get(timeout=20)
        assert retried.get(timeout=20)["retries"] == 1
        code, output = proc.stop()
    assert code == 0, output
    assert not any(t in output for t in ("Traceback", "MonkeyPatchWarning", "monkey_patch")), \
        output
