"""``celery events --dump`` (Celery's own command line) prints our worker's events on Redis."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from django_taskq import AsyncResult, task
from django_taskq.brokers import get_broker
from django_taskq.events.dispatcher import EventDispatcher
from django_taskq.events.wire import celery_sink_for

pytestmark = [pytest.mark.network_broker, pytest.mark.subprocess]


@task(name="cli.mul")
def mul(x, y):
    return x * y


def _until(condition, what: str, timeout: float = 20.0, worker=None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        if worker is not None:
            worker.step()
        else:
            time.sleep(0.1)


@pytest.mark.parametrize("broker_kind", ["redis"])
def test_celery_events_dump_prints_our_workers_tasks(configured, make_worker, settings):
    settings.TASKQ = {**settings.TASKQ, "EVENTS_DATABASE": None}
    log = Path(tempfile.mkdtemp()) / "dump.txt"
    with log.open("w") as out:
        dump = subprocess.Popen([sys.executable, "-m", "celery", "-b", configured, "events",
                                 "--dump"], stdout=out, stderr=subprocess.STDOUT)
    try:
        sink = celery_sink_for(get_broker())
        probe = EventDispatcher("probe@cli", [sink])

        def subscribed() -> bool:  # what is published before it listens is not seen
            probe.send("worker-heartbeat", freq=2.0)
            probe.flush()
            return "probe@cli" in log.read_text()

        _until(subscribed, "celery events to subscribe")
        result = mul.delay(6, 7)
        worker = make_worker(hostname="dumped@cli")
        worker.start()
        try:
            _until(lambda: AsyncResult(result.id).ready(), "the task", worker=worker)
        finally:
            worker.shutdown()
        _until(lambda: "dumped@cli" in log.read_text() and "shutdown" in log.read_text(),
               "the worker's events in the dump")
    finally:
        dump.terminate()
        dump.wait(timeout=10)
    text = log.read_text()
    lines = [line for line in text.splitlines() if result.id in line]
    assert any("task received" in line and "cli.mul" in line and "(6, 7)" in line
               for line in lines), text
    assert any("task succeeded" in line and "result=42" in line for line in lines), text
    assert any(line.startswith("dumped@cli") and "started" in line
               for line in text.splitlines()), text
