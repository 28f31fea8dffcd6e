"""Issue 13, the review's additions: gaps in the issue's tests filled where they were small."""

from __future__ import annotations

import json
import uuid

import pytest

from django_taskq import serializers, states
from django_taskq.outcome import Outcome
from django_taskq.results import backend_from_url
from django_taskq.results.base import COMPRESSED_MAGIC


def _outcome(value, task_id=None):
    payload, content_type, encoding = serializers.dumps(value)
    return Outcome(task_id=task_id or str(uuid.uuid4()), task_name="t", state=states.SUCCESS,
                   payload=payload, content_type=content_type, content_encoding=encoding)


def test_chord_parts_are_compressed_and_a_celery_workers_compressed_part_is_read(
        redis_url, settings):
    """Celery's Redis backend compresses the ``[1, id, state, result]`` chord entries with
    result_compression too: a chord shared with a Celery worker must read its parts."""
    import redis
    from celery.backends.base import compress_payload

    settings.TASKQ = {**settings.TASKQ, "RESULT_COMPRESSION": "zlib"}
    backend = backend_from_url(redis_url)
    client = redis.Redis.from_url(redis_url)
    group_id = str(uuid.uuid4())
    backend.set_chord_size(group_id, 2)
    assert backend.add_chord_part(group_id, 0, _outcome("ours", "p0")) is None
    [ours] = client.zrange(f"celery-taskset-meta-{group_id}.j", 0, -1)
    assert ours.startswith(COMPRESSED_MAGIC + b"application/x-gzip\x00")
    celerys = compress_payload(json.dumps([1, "p1", "SUCCESS", "celery's"]).encode(), "bzip2")
    client.zadd(f"celery-taskset-meta-{group_id}.j", {celerys: 1})
    client.sadd(f"celery-taskset-meta-{group_id}.d", "p1:1")
    parts = backend.add_chord_part(group_id, 0, _outcome("ours", "p0"))  # a redelivery
    assert [(p.task_id, p.value) for p in parts] == [("p0", "ours"), ("p1", "celery's")]
    client.close()
    backend.close()
