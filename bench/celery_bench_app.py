"""The Celery 5 side of ``bench/versus_celery.py``: the same two no-op tasks as benchtasks.py.

The benchmark imports it in-process as the Celery *producer/client* and starts
``celery -A celery_bench_app worker --pool solo -c 1`` (cwd ``bench/``) as the Celery *worker*.
Broker and result backend come from ``BENCH_CELERY_BROKER`` / ``BENCH_CELERY_BACKEND``. Nothing
is tuned: Celery's defaults, except the queue name (``default``, as django_taskq's) and quiet
logging, so a default Celery setup is measured.
"""

from __future__ import annotations

import os

from celery import Celery

REDIS_URL = "redis://127.0.0.1:6379/13"


def make_app(broker: str | None = None, backend: str | None = None) -> Celery:
    app = Celery("celery_bench", set_as_current=False,
                 broker=broker or os.environ.get("BENCH_CELERY_BROKER", REDIS_URL),
                 backend=backend or os.environ.get("BENCH_CELERY_BACKEND", REDIS_URL))
    app.conf.update(
        task_default_queue="default",
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )

    @app.task(name="bench.noop", ignore_result=True, shared=False)
    def noop() -> None:
        """Results ignored (as benchtasks.noop)."""
        return None

    @app.task(name="bench.store", shared=False)
    def store() -> None:
        """Results stored (as benchtasks.store)."""
        return None

    return app


app = make_app()
noop = app.tasks["bench.noop"]
store = app.tasks["bench.store"]
