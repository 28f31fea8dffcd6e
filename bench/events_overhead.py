#!/usr/bin/env python
"""What events cost a worker: drain the same backlog with events off and with each sink on.

    .venv/bin/python bench/events_overhead.py [--tasks 20000] [--repeat 3] [--db sqlite|postgres]
                                              [--modes off,database,celery,both] [--json]

One in-process worker (solo pool, prefetch 4) on the Redis broker (127.0.0.1:6379/14, flushed
before each run) drains ``--tasks`` no-op tasks whose results are stored in Redis. Modes:

- ``off``: EVENTS_DATABASE None, EVENTS_CELERY False (no sink: ``send`` returns at once);
- ``database``: events, workers and counters stored in ``--db`` (migrated first);
- ``celery``: Celery's event messages on the Redis broker only;
- ``both``: the default settings on Redis (database and Celery's messages).

It reports tasks/s of the drain and the process CPU per task (the loop and the monitor thread,
which stores and publishes the events), the median over ``--repeat`` runs, and the cost of each
mode against ``off``. Results: bench/README.md, "Events".
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
for entry in (str(BENCH_DIR.parent), str(BENCH_DIR)):
    if entry not in sys.path:
        sys.path.insert(0, entry)

REDIS_URL = "redis://127.0.0.1:6379/14"
MODES = {"off": {"EVENTS_DATABASE": None, "EVENTS_CELERY": False},
         "database": {"EVENTS_DATABASE": "default", "EVENTS_CELERY": False},
         "celery": {"EVENTS_DATABASE": None, "EVENTS_CELERY": True},
         "both": {"EVENTS_DATABASE": "default", "EVENTS_CELERY": True}}


def configure(db: str, redis_url: str) -> None:
    import django
    from django.conf import settings

    for variable in ("TASKQ_BROKER_URL", "TASKQ_RESULT_BACKEND"):
        os.environ.pop(variable, None)
    if db == "postgres":
        database = {"ENGINE": "django.db.backends.postgresql", "NAME": "taskq_bench_events",
                    "HOST": "127.0.0.1", "USER": "postgres"}
    else:
        database = {"ENGINE": "django.db.backends.sqlite3",
                    "NAME": os.path.join(tempfile.mkdtemp(), "events.sqlite3")}
    settings.configure(
        DEBUG=False, SECRET_KEY="bench", USE_TZ=True, TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "django_taskq"],
        DATABASES={"default": database},
        TASKQ={"BROKER_URL": redis_url, "RESULT_BACKEND": redis_url, "WORKER_POOL": "solo"})
    django.setup()
    if db == "postgres":
        _create_postgres_database(database["NAME"])
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    import benchtasks  # noqa: F401 - registers bench.store


def _create_postgres_database(name: str) -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name}")
        c.execute(f"CREATE DATABASE {name}")


def run_once(mode: str, tasks: int) -> dict[str, float]:
    import redis
    from django.conf import settings
    from django.db import connections

    from django_taskq.conf import reset_settings
    from django_taskq.registry import registry
    from django_taskq.worker import Worker, WorkerOptions

    redis.Redis.from_url(settings.TASKQ["BROKER_URL"]).flushdb()
    settings.TASKQ = {**settings.TASKQ, **MODES[mode]}
    reset_settings()
    store = registry.get("bench.store")
    for start in range(0, tasks, 1000):
        store.delay_many([()] * min(1000, tasks - start))
    worker = Worker(WorkerOptions.from_settings(pool="solo", queues=("default",),
                                                prefetch_multiplier=4))
    cpu, wall = time.process_time(), time.perf_counter()
    worker.run(until_empty=True)  # shutdown flushes the last events before it returns
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    connections.close_all()
    return {"tasks_per_s": tasks / wall, "cpu_us_per_task": cpu / tasks * 1e6}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--modes", default="off,database,celery,both")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--redis", default=REDIS_URL, help="a Redis database to FLUSH and use")
    args = parser.parse_args(argv)
    configure(args.db, args.redis)
    modes = args.modes.split(",")
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in modes}
    for _ in range(args.repeat):  # interleaved, so a noisy moment hits every mode alike
        for mode in modes:
            runs[mode].append(run_once(mode, args.tasks))
    summary = {mode: {key: statistics.median(r[key] for r in found) for key in found[0]}
               for mode, found in runs.items()}
    if args.json:
        print(json.dumps({"tasks": args.tasks, "db": args.db, "median": summary, "runs": runs}))
        return 0
    base = summary.get("off")
    print(f"{args.tasks} tasks, Redis broker and results, events stored in {args.db}, "
          f"median of {args.repeat}")
    print(f"{'mode':10} {'tasks/s':>10} {'CPU us/task':>12} {'extra CPU us/task':>18}")
    for mode, values in summary.items():
        extra = values["cpu_us_per_task"] - base["cpu_us_per_task"] if base else float("nan")
        print(f"{mode:10} {values['tasks_per_s']:10,.0f} {values['cpu_us_per_task']:12.1f} "
              f"{extra:18.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
