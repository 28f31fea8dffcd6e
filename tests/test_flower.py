"""A real Flower 2.x (``celery flower``) pointed at our broker lists our worker and our tasks.

Flower runs as a subprocess with only ``--broker`` (no Celery app of ours): what it shows comes
from the Celery-format events our real ``taskworker`` publishes (events/wire.py) and from its
inspect/control broadcasts, which the worker answers (worker/pidbox.py). Its HTTP API is read
as a user's script would.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import worker_urls
from tests.test_worker_process import WorkerProcess
from tests.testapp import tasks

ROOT = Path(__file__).resolve().parent.parent
HOSTNAME = "flowertest@wire"
pytestmark = [pytest.mark.subprocess, pytest.mark.network_broker,
              pytest.mark.django_db(transaction=True)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Flower:
    """``celery --broker=URL flower`` on a free loopback port, its API open without login."""

    def __init__(self, broker_url: str) -> None:
        self.base = f"http://127.0.0.1:{free_port()}"
        env = dict(os.environ, FLOWER_UNAUTHENTICATED_API="true")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", f"--broker={broker_url}", "flower",
             f"--port={self.base.rsplit(':', 1)[1]}", "--address=127.0.0.1"],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def get(self, path: str) -> Any:
        """The decoded JSON at ``path``; None while Flower is not answering yet."""
        assert self.proc.poll() is None, self.output()
        try:
            with urllib.request.urlopen(self.base + path, timeout=5) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, ConnectionError):
            return None

    def output(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.communicate(timeout=10)[0]

    def __enter__(self) -> Flower:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.communicate()


def poll(read, timeout: float = 20.0) -> Any:
    """What ``read()`` returns once it is truthy."""
    deadline = time.monotonic() + timeout
    while not (value := read()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)
    return value


def worker_row(flower: Flower) -> dict[str, Any] | None:
    """Our worker's row on Flower's workers page (its JSON form)."""
    page = flower.get("/workers?json=1") or {"data": []}
    return next((row for row in page["data"] if row.get("hostname") == HOSTNAME), None)


def finished_tasks(flower: Flower, *ids: str) -> dict[str, Any] | None:
    listed = flower.get(f"/api/tasks?workername={HOSTNAME}") or {}
    done = {i: listed[i] for i in ids if listed.get(i, {}).get("state") in ("SUCCESS", "FAILURE")}
    return done if len(done) == len(ids) else None


def inspected_by_flower(flower: Flower) -> None:
    """Flower's inspect calls (Celery's pidbox, worker/pidbox.py) reach our worker: the API
    without ``status`` and the worker's own page show its stats, queues and tasks."""
    workers = poll(lambda: flower.get("/api/workers?refresh=1"))
    ours = workers[HOSTNAME]
    assert ours["stats"]["pool"]["implementation"] == "solo"
    assert "tests.testapp.tasks.add" in ours["registered"]
    assert [queue["name"] for queue in ours["active_queues"]] == ["default"]
    with urllib.request.urlopen(f"{flower.base}/worker/{HOSTNAME}", timeout=10) as response:
        page = response.read().decode()
    assert "tests.testapp.tasks.add" in page and "Max concurrency" in page
    # A button: Flower's API broadcasts add_consumer and reads our reply.
    button = urllib.request.Request(
        f"{flower.base}/api/worker/queue/add-consumer/{HOSTNAME}?queue=extra", data=b"",
        method="POST")
    with urllib.request.urlopen(button, timeout=10) as response:
        assert json.loads(response.read()) == {"message": "add consumer extra"}


@pytest.mark.parametrize("kind", ["redis", "amqp"])
def test_flower_lists_our_worker_and_tasks(kind, request, settings):
    broker_url, results = worker_urls(request, settings, kind)
    with Flower(broker_url) as flower, \
            WorkerProcess("default", "--pool", "solo", "--hostname", HOSTNAME,
                          broker_url=broker_url, result_backend=results) as worker:
        row = poll(lambda: worker_row(flower))
        assert row["status"] is True and row["sw_ident"] == "django-taskq"
        ok, failed = tasks.add.delay(2, 3), tasks.fail.delay("bad input")

        seen = poll(lambda: finished_tasks(flower, ok.id, failed.id))
        assert seen[ok.id]["state"] == "SUCCESS" and seen[ok.id]["result"] == "5"
        assert seen[ok.id]["name"] == "tests.testapp.tasks.add"
        assert seen[ok.id]["worker"] == HOSTNAME and seen[ok.id]["runtime"] >= 0
        assert seen[failed.id]["state"] == "FAILURE"
        assert "bad input" in seen[failed.id]["exception"]
        info = flower.get(f"/api/task/info/{ok.id}")
        assert info["args"] == "(2, 3)" and info["received"] and info["started"]
        assert poll(lambda: (worker_row(flower) or {}).get("processed") == 2)
        inspected_by_flower(flower)

        worker.signal(signal.SIGTERM)
        code, output = worker.wait()
        assert code == 0, output
        assert poll(lambda: flower.get("/api/workers?status=1") == {HOSTNAME: False})
