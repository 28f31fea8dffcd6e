"""A Celery 5 application for the interop tests: the same task names as tests/testapp/tasks.py.

The tests use it in-process as a Celery *client*, and start ``celery -A tests.celery_peer worker``
as a real Celery *worker*. Broker and backend URLs come from CELERY_PEER_BROKER/_BACKEND.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from celery import Celery


def make_app(broker: str, backend: str) -> Celery:
    """A Celery app whose defaults match what django_taskq declares and stores."""
    app = Celery("peer", broker=broker, backend=backend, set_as_current=False)
    app.conf.update(
        task_default_queue="default",
        task_queue_max_priority=10,  # django_taskq's RabbitMQ queues carry x-max-priority 10
        result_extended=True,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
    )

    @app.task(name="tests.testapp.tasks.add", shared=False)
    def add(x, y):
        return x + y

    @app.task(name="tests.testapp.tasks.fail", shared=False)
    def fail(message="boom"):
        raise ValueError(message)

    @app.task(name="tests.testapp.tasks.tsum", shared=False)
    def tsum(values):
        return sum(values)

    return app


app = make_app(os.environ.get("CELERY_PEER_BROKER", "memory://"),
               os.environ.get("CELERY_PEER_BACKEND", "cache+memory://"))
# RESULT_COMPRESSION interop (tests/test_compression_celery.py): a worker storing compressed results.
app.conf.result_compression = os.environ.get("CELERY_PEER_RESULT_COMPRESSION") or None


@contextlib.contextmanager
def worker_process(broker: str, backend: str, **env: str) -> Iterator[subprocess.Popen]:
    """A real ``celery -A tests.celery_peer worker`` (solo pool, queue ``default``) on ``broker``
    and ``backend`` (``env``: more CELERY_PEER_* variables), stopped on leaving."""
    root = Path(__file__).resolve().parent.parent
    environ = dict(os.environ, PYTHONPATH=str(root), CELERY_PEER_BROKER=broker,
                   CELERY_PEER_BACKEND=backend, **env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tests.celery_peer", "worker", "--pool", "solo",
         "--concurrency", "1", "-Q", "default", "--without-gossip", "--without-mingle",
         "--without-heartbeat", "--loglevel", "WARNING"],
        cwd=root, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        yield proc
    finally:
        proc.terminate()
        try:  # Celery's warm stop on RabbitMQ can take ~10 s closing its connection: not ours
            proc.communicate(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
