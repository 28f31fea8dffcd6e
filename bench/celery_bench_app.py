"""The Celery 5 side of ``bench/versus_celery.py``: the same tasks as benchtasks.py (the no-ops,
and ``bench.add``/``bench.tsum`` for the chord of ``bench/chord_versus_celery.py``).

The benchmark imports it in-process as the Celery *producer/client* and starts
``celery -A celery_bench_app worker --pool solo -c 1`` (cwd ``bench/``) as the Celery *worker*.
Broker and result backend come from ``BENCH_CELERY_BROKER`` / ``BENCH_CELERY_BACKEND``. Nothing
is tuned: Celery's defaults, except the queue name (``default``, as django_taskq's) and quiet
logging, so a default Celery setup is measured.
"""

from __future__ import annotations

import os
import time

from celery import Celery

REDIS_URL = "redis://127.0.0.1:6379/13"


def make_app(broker: str | None = None, backend: str | None = None) -> Celery:
    app = Celery("celery_bench", set_as_current=False,
                 broker=broker or os.environ.get("BENCH_CELERY_BROKER", REDIS_URL),
                 backend=backend or os.environ.get("BENCH_CELERY_BACKEND", REDIS_URL))
    app.conf.update(
        task_default_queue=os.environ.get("BENCH_CELERY_QUEUE", "default"),
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )
    if os.environ.get("BENCH_CELERY_MAX_PRIORITY"):  # RabbitMQ: declare queues as django_taskq
        app.conf.task_queue_max_priority = int(os.environ["BENCH_CELERY_MAX_PRIORITY"])
        # no pidbox queue: only the benchmark's queue is declared on the shared RabbitMQ
        app.conf.worker_enable_remote_control = False

    @app.task(name="bench.noop", ignore_result=True, shared=False)
    def noop() -> None:
        """Results ignored (as benchtasks.noop)."""
        return None

    @app.task(name="bench.store", shared=False)
    def store() -> None:
        """Results stored (as benchtasks.store)."""
        return None

    @app.task(name="bench.mark", ignore_result=True, shared=False)
    def mark() -> None:
        """As benchtasks.mark: the time it ran, appended to $BENCH_MARK_FILE."""
        benchtasks_mark()

    @app.task(name="bench.add", shared=False)
    def add(x: int, y: int) -> int:
        """As benchtasks.add: a chord's header task."""
        return x + y

    @app.task(name="bench.tsum", shared=False)
    def tsum(numbers: list[int]) -> int:
        """As benchtasks.tsum: a chord's body."""
        return sum(numbers)

    return app


def benchtasks_mark() -> None:
    """Append the system-wide monotonic clock to $BENCH_MARK_FILE (the same code as ours)."""
    now = time.monotonic()
    path = os.environ.get("BENCH_MARK_FILE")
    if path:
        with open(path, "a") as f:
            f.write(f"{now!r}\n")


app = make_app()
noop = app.tasks["bench.noop"]
store = app.tasks["bench.store"]
mark = app.tasks["bench.mark"]
add = app.tasks["bench.add"]
tsum = app.tasks["bench.tsum"]
