"""Compression against the real ``celery`` package on Redis (issue 13): Celery's ``compression``
header both ways, and ``result_compression`` (RESULT_COMPRESSION) results both ways.

A Celery producer compressing with zlib and bzip2 → our worker runs the tasks, and Celery reads
our compressed results. Our producer compressing → a real ``celery worker`` runs the tasks and
stores compressed results, which we read.
"""

from __future__ import annotations

import time

import pytest

from django_taskq import AsyncResult, states
from django_taskq.results.base import COMPRESSED_MAGIC
from tests.celery_peer import make_app, worker_process
from tests.testapp import tasks

pytestmark = pytest.mark.parametrize("broker_kind", ["redis"])


@pytest.fixture
def redis_urls(configured, settings):
    """Messages and results in the test Redis, our results compressed."""
    settings.TASKQ = {**settings.TASKQ, "RESULT_COMPRESSION": "zlib"}
    return configured, configured


def stored(url: str, task_id: str) -> bytes:
    import redis

    client = redis.Redis.from_url(url)
    try:
        return client.get(f"celery-task-meta-{task_id}")
    finally:
        client.close()


def test_celery_compressed_messages_run_here_and_celery_reads_our_compressed_results(
        make_worker, redis_urls):
    app = make_app(*redis_urls)
    try:
        zipped = app.send_task("tests.testapp.tasks.add", args=(2, 3), compression="zlib")
        bzipped = app.send_task("tests.testapp.tasks.add", args=(4, 5), compression="bzip2")
        worker = make_worker()
        deadline = time.monotonic() + 15
        while not (AsyncResult(zipped.id).ready() and AsyncResult(bzipped.id).ready()):
            assert time.monotonic() < deadline, "timed out"
            worker.step()
        assert stored(redis_urls[1], zipped.id).startswith(COMPRESSED_MAGIC + b"application/x-gzip")
        assert zipped.get(timeout=10) == 5 and bzipped.get(timeout=10) == 9  # Celery reads ours
        assert AsyncResult(bzipped.id).state == states.SUCCESS
    finally:
        app.close()


@pytest.fixture
def celery_worker(redis_urls):
    with worker_process(redis_urls[0], redis_urls[1], CELERY_PEER_RESULT_COMPRESSION="bzip2") as proc:
        yield proc


def test_our_compressed_messages_run_on_celery_and_we_read_its_compressed_results(
        celery_worker, redis_urls, settings):
    zipped = tasks.add.apply_async((20, 22), compression="zlib")
    settings.TASKQ = {**settings.TASKQ, "TASK_COMPRESSION": "lzma"}
    xz = tasks.add.delay(1, 2)
    assert zipped.get(timeout=60) == 42 and xz.get(timeout=30) == 3
    assert stored(redis_urls[1], zipped.id).startswith(COMPRESSED_MAGIC + b"application/x-bz2")
    assert celery_worker.poll() is None  # the Celery worker did not choke on our messages
