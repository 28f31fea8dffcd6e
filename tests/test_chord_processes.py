"""Chords with real ``taskworker`` processes: the body runs exactly once when a header task's
worker is SIGKILLed mid-task (the task is redelivered and run again), when header tasks finish
at the same moment on two workers, and a header task whose worker dies on every delivery fails
the chord (dead-lettered) instead of leaving it waiting for ever, and its errback is sent."""

from __future__ import annotations

import json
import time

import pytest

from django_taskq import AsyncResult, ChordError, chord
from tests.conftest import worker_urls
from tests.test_poison_and_revoke_process import worker
from tests.test_worker_process import runs, wait_for
from tests.testapp import canvas_tasks as ct
from tests.testapp import feature_tasks as ft
from tests.testapp import tasks

pytestmark = [pytest.mark.subprocess,
              pytest.mark.django_db(transaction=True, databases="__all__")]


@pytest.fixture(params=["sqlite", "postgres", "mariadb", "redis", "amqp"])
def urls(request, settings):
    """(broker URL, result backend URL) of each broker, configured here and for workers."""
    return worker_urls(request, settings, request.param)


def body_runs(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_sigkill_mid_chord_runs_the_body_once(urls, tmp_path):
    marker, body = tmp_path / "runs", tmp_path / "body"
    result = chord([tasks.record_and_sleep.s(str(marker), 1.5), ct.add.s(1, 1), ct.add.s(2, 2)],
                   ct.record_body.s(str(body))).delay()
    with worker(urls, "--pool", "solo") as first:
        wait_for(lambda: runs(marker) == 1)
        first.proc.kill()  # SIGKILL mid header task: it is redelivered after its lease
        first.wait()
    with worker(urls, "--pool", "solo") as second:
        assert result.get(timeout=60) == ["slept", 2, 4]
        time.sleep(0.5)  # a second body, if one were sent, would run now
        second.proc.kill()
        second.wait()
    assert runs(marker) == 2  # the header task ran again...
    assert body_runs(body) == [["slept", 2, 4]]  # ...and the body once


def test_header_tasks_finishing_together_on_two_workers_start_each_body_once(urls, tmp_path):
    body = tmp_path / "body"
    results = [chord([ct.slow_index.s(n * 2, 0.2), ct.slow_index.s(n * 2 + 1, 0.2)],
                     ct.record_body.s(str(body))).delay() for n in range(12)]
    with worker(urls, "--pool", "solo") as one, worker(urls, "--pool", "solo") as two:
        for result in results:
            assert len(result.get(timeout=90)) == 2
        time.sleep(0.5)
        for proc in (one, two):
            proc.proc.kill()
            proc.wait()
    assert sorted(body_runs(body)) == [[n * 2, n * 2 + 1] for n in range(12)]


def test_a_header_task_whose_worker_always_dies_fails_the_chord(urls, tmp_path):
    marker, body = tmp_path / "runs", tmp_path / "body"
    errback = ct.failed_id.s().set(task_id="errback-of-poisoned")
    result = chord([ct.add.s(1, 1), ft.kill_self.s(str(marker)).on_error(errback)],
                   ct.record_body.s(str(body))).delay()
    poisoned = result.parent.results[1].id
    with worker(urls, "--pool", "prefork", "-c", "1"):
        with pytest.raises(ChordError, match=f"Dependency {poisoned} raised WorkerLostError"):
            result.get(timeout=90, follow_parents=False)
        # The dead task's errback is sent too, as after any failure.
        assert AsyncResult("errback-of-poisoned").get(timeout=30) == f"failed: {poisoned}"
    assert runs(marker) == 3  # MAX_DELIVERIES, then dead-lettered: the chord did not wait
    assert not body.exists()
