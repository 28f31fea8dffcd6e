#!/usr/bin/env python
"""I/O-bound tasks on one worker process: gevent and eventlet against threads and prefork.

    .venv/bin/python bench/green_pools.py                        # 1,000 tasks of 1 s each
    .venv/bin/python bench/green_pools.py --tasks 2000 --pools gevent --concurrency 2000
    .venv/bin/python bench/green_pools.py --json

Each task is ``tests.testapp.limit_tasks.nap(1)``: ``time.sleep(1)``, which the green pools'
patch turns into a wait that lets the other tasks run (as a socket read or an HTTP call would).
For each pool it starts one ``manage.py taskworker`` process (the tests' settings, Redis on
127.0.0.1 as broker and result backend, events off), waits until it has run a first task, then
sends all the tasks with ``delay_many`` and times until every result is in. The green pools run
with ``--concurrency`` equal to the number of tasks (or ``--concurrency``); threads and prefork
run at their default concurrency (the CPU count), on ``--contrast-tasks`` tasks only (their time
for the full count is that, scaled); ``--pools threads:256`` runs a pool at a given concurrency
on all the tasks.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def overrides(redis_url: str) -> dict[str, Any]:
    return {"BROKER_URL": redis_url, "RESULT_BACKEND": redis_url, "EVENTS": False,
            "EVENTS_DATABASE": None, "POLL_INTERVAL": 0.1}


def setup(redis_url: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    os.environ["TASKQ_TEST_OVERRIDES"] = json.dumps(overrides(redis_url))
    import django

    django.setup()


def start_worker(pool: str, concurrency: int | None, redis_url: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), DJANGO_SETTINGS_MODULE="tests.settings",
               TASKQ_TEST_OVERRIDES=json.dumps(overrides(redis_url)))
    args = ["--pool", pool, "--loglevel", "WARNING"]
    if concurrency is not None:
        args += ["--concurrency", str(concurrency)]
    log = tempfile.TemporaryFile(mode="w+")
    return subprocess.Popen([sys.executable, "-m", "django", "taskworker", *args], cwd=ROOT,
                            env=env, stdout=log, stderr=subprocess.STDOUT, text=True)


def measure(pool: str, tasks: int, concurrency: int | None, seconds: float,
            redis_url: str) -> dict[str, Any]:
    import redis

    from tests.testapp import limit_tasks
    from tests.testapp.tasks import add

    redis.Redis.from_url(redis_url).flushdb()
    worker = start_worker(pool, concurrency, redis_url)
    try:
        add.delay(1, 1).get(timeout=60)  # the worker is up and has run a task
        started = time.perf_counter()
        results = limit_tasks.nap.delay_many([(seconds,)] * tasks)
        for result in results:
            result.get(timeout=3600)
        elapsed = time.perf_counter() - started
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    return {"pool": pool, "concurrency": concurrency or os.cpu_count(), "tasks": tasks,
            "task_seconds": seconds, "elapsed": round(elapsed, 2),
            "tasks_per_second": round(tasks / elapsed, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=1.0, help="each task's wait")
    parser.add_argument("--concurrency", type=int, help="green pools (default: --tasks)")
    parser.add_argument("--contrast-tasks", type=int, default=20,
                        help="tasks sent to the threads and prefork pools")
    parser.add_argument("--pools", default="gevent,eventlet,threads,prefork",
                        help="comma-separated; pool:N runs that pool at concurrency N on --tasks")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/11",
                        help="a loopback Redis database (emptied)")
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args()
    setup(options.redis)
    rows = []
    for entry in options.pools.split(","):
        pool, _, given = entry.partition(":")  # "threads:256": that pool at that concurrency
        green = pool in ("gevent", "eventlet")
        tasks = options.tasks if green or given else options.contrast_tasks
        concurrency = int(given) if given else (options.concurrency or options.tasks) if green \
            else None
        row = measure(pool, tasks, concurrency, options.seconds, options.redis)
        row["for_all_tasks"] = round(row["elapsed"] * options.tasks / tasks, 1)
        rows.append(row)
        if not options.json:
            print(f"{pool:>9} x {row['concurrency']:<5} {tasks:>5} tasks of {options.seconds:g}s: "
                  f"{row['elapsed']:8.2f}s ({row['tasks_per_second']:.1f} tasks/s; "
                  f"{options.tasks} tasks: {row['for_all_tasks']:g}s)", flush=True)
    if options.json:
        print(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
