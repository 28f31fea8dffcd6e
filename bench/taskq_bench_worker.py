#!/usr/bin/env python
"""The django_taskq side of ``bench/versus_celery.py``: ``manage.py taskworker`` in its own process.

    .venv/bin/python bench/taskq_bench_worker.py --redis redis://127.0.0.1:6379/13 --prefetch 4

It configures Django with ``settings.configure()`` (the Redis broker and the Redis result backend
on the same URL, solo pool), imports ``benchtasks`` and runs the real management command,
``call_command("taskworker", pool="solo", concurrency=1, queues="default", ...)``: the same code
path as ``manage.py taskworker -P solo -c 1``, including its SIGTERM handling (warm stop).

``--profile FILE`` runs the command under cProfile and writes the stats to FILE when the worker
stops (SIGTERM); ``--profiler pyinstrument`` writes pyinstrument's text report instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
for entry in (str(ROOT), str(BENCH_DIR)):  # django_taskq (not installed) and benchtasks
    if entry not in sys.path:
        sys.path.insert(0, entry)
if os.environ.get("BENCH_TASKQ_SRC"):  # a django_taskq exported from a commit (versus_celery.py)
    sys.path.insert(0, os.environ["BENCH_TASKQ_SRC"])

REDIS_URL = "redis://127.0.0.1:6379/13"


def configure_django(redis_url: str, broker: str | None = None, **taskq: object) -> None:
    """settings.configure() with the Redis broker and result backend, then django.setup().
    ``broker`` (e.g. an ``amqp://`` URL) replaces the broker; results stay on Redis."""
    import django
    from django.conf import settings

    for variable in ("TASKQ_BROKER_URL", "TASKQ_RESULT_BACKEND"):  # they would override TASKQ
        os.environ.pop(variable, None)
    settings.configure(
        DEBUG=False,
        SECRET_KEY="taskq-bench",
        USE_TZ=True,
        TIME_ZONE="UTC",
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        INSTALLED_APPS=["django_taskq"],
        DATABASES={},  # nothing here touches a database
        # Events off, as Celery's worker has them by default: bench/events_overhead.py
        # measures what they cost.
        TASKQ={"BROKER_URL": broker or redis_url, "RESULT_BACKEND": redis_url, "WORKER_POOL": "solo",
               "EVENTS_DATABASE": None, "EVENTS_CELERY": False, **taskq},
    )
    django.setup()
    import benchtasks  # noqa: F401 - registers bench.noop and bench.store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis", default=REDIS_URL)
    parser.add_argument("--broker", default=None,
                        help="broker URL instead of --redis, e.g. amqp://guest:guest@127.0.0.1:5672//"
                             " (the result backend stays --redis)")
    parser.add_argument("--prefetch", type=int, default=None,
                        help="--prefetch-multiplier (default: the setting's default, 4)")
    parser.add_argument("--queue", default="default")
    parser.add_argument("--loglevel", default="WARNING")
    parser.add_argument("--profile", help="write a profile of the whole run to this file")
    parser.add_argument("--profiler", choices=("cprofile", "pyinstrument"), default="cprofile")
    args = parser.parse_args(argv)

    configure_django(args.redis, args.broker)
    import django_taskq

    source = os.environ.get("BENCH_TASKQ_SRC")
    if source and not django_taskq.__file__.startswith(source):
        raise SystemExit(f"imported {django_taskq.__file__}, not the export in {source}")
    from django.core.management import call_command

    def run() -> None:
        call_command("taskworker", pool="solo", concurrency=1, queues=args.queue,
                     prefetch_multiplier=args.prefetch, loglevel=args.loglevel)

    if not args.profile:
        run()
    elif args.profiler == "cprofile":
        import cProfile

        profiler = cProfile.Profile()
        try:
            profiler.runcall(run)
        finally:
            profiler.dump_stats(args.profile)
    else:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0002)
        profiler.start()
        try:
            run()
        finally:
            profiler.stop()
            Path(args.profile).write_text(profiler.output_text(unicode=True, show_all=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
