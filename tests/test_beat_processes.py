"""Real ``taskbeat`` processes keep promise 4: one enqueue per schedule tick, whatever the number
of beats.

Three beats at once on each database (broker and beat tables on one alias: claim and message
commit together) and on Redis (claim, send, then ``sent_at``); a beat killed between its claim and
its send (the database broker is left with nothing, Redis with a claim that another beat sends
with the same task id); and the beat embedded in ``taskworker --beat``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings
from django.db import connections
from django.utils import timezone

from django_taskq import states
from django_taskq.beat.claims import PERIODIC_HEADER, tick_task_id
from django_taskq.beat.models import BeatInstance, IntervalSchedule, PeriodicTask, PeriodicTaskRun
from django_taskq.brokers import broker_from_url
from django_taskq.message import Envelope
from django_taskq.models import QueuedMessage, TaskResult
from tests import services
from tests.conftest import require_alias, require_service

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.subprocess,
              pytest.mark.django_db(transaction=True, databases="__all__")]

TASK = "tests.testapp.tasks.add"
#: A Redis database no other test uses (they use TASKQ_TEST_REDIS_URL's, 15 by default).
REDIS_DB = 13
#: How long the three beats run side by side.
RUN_SECONDS = 5.0

#: A beat that dies right after its claim: ``send_run`` ends the process as SIGKILL would (no
#: ``finally``, no rollback sent, no ``sent_at``), inside one ``Scheduler().tick()``.
CRASH_AFTER_CLAIM = """
import os
import django
django.setup()
from django_taskq.beat import claims
from django_taskq.beat.scheduler import Scheduler
def killed(*args, **kwargs):
    os._exit(9)
claims.send_run = killed
Scheduler().tick()
raise SystemExit("the tick was not due")
"""


def child_env(overrides: dict[str, Any]) -> dict[str, str]:
    """A child process's environment: tests.settings on this run's test databases, TASKQ
    overridden (beat steps every 0.2 s, no built-in cleanup entry to count)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), DJANGO_SETTINGS_MODULE="tests.settings")
    env["TASKQ_TEST_SQLITE"] = str(connections["default"].settings_dict["NAME"])
    for alias, variable in (("postgres", "TASKQ_TEST_PG_NAME"),
                            ("mariadb", "TASKQ_TEST_MYSQL_NAME")):
        if alias in settings.DATABASES:
            env[variable] = str(connections[alias].settings_dict["NAME"])
    env["TASKQ_TEST_OVERRIDES"] = json.dumps({
        "POLL_INTERVAL": 0.1, "BEAT_SYNC_INTERVAL": 0.2, "BEAT_BACKEND_CLEANUP": False,
        **overrides})
    return env


def on(alias: str, broker_url: str | None = None, **overrides: Any) -> dict[str, Any]:
    """TASKQ overrides: beat tables on ``alias``, the broker (default: the same database)."""
    url = broker_url or f"db://{alias}"
    return {"BROKER_URL": url, "RESULT_BACKEND": f"db://{alias}", "BEAT_DATABASE": alias,
            **overrides}


class Command:
    """``python -m django <args>`` with the test settings; its output goes to ``log``."""

    def __init__(self, log: Path, args: tuple[str, ...], overrides: dict[str, Any]) -> None:
        self.log = log
        with log.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "django", *args, "--loglevel", "INFO"], cwd=ROOT,
                env=child_env(overrides), stdout=out, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text()

    def ident(self) -> str:
        """The beat's ident from its banner (``taskbeat <ident>``)."""
        for line in self.output().splitlines():
            if line.startswith("taskbeat "):
                return line.split()[1]
        raise AssertionError(f"no banner yet:\n{self.output()}")

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 30) -> tuple[int, str]:
        return self.proc.wait(timeout), self.output()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Command]]:
    """Start management commands; any still running at the end are killed (before the
    databases are flushed)."""
    started: list[Command] = []

    def start(*args: str, overrides: dict[str, Any]) -> Command:
        command = Command(tmp_path / f"{args[0]}-{len(started)}.log", args, overrides)
        started.append(command)
        return command

    yield start
    for command in started:
        command.kill()


def stop_all(commands: list[Command]) -> list[str]:
    """SIGTERM all at once; each exits 0 having printed its banner. Returns their output."""
    for command in commands:
        command.terminate()
    outputs = []
    for command in commands:
        code, output = command.wait()
        assert code == 0, output
        assert "Traceback" not in output, output
        outputs.append(output)
    return outputs


def wait_for(condition: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def crash_after_claim(overrides: dict[str, Any]) -> None:
    """One beat step in a child that dies between the claim and the send."""
    done = subprocess.run([sys.executable, "-c", CRASH_AFTER_CLAIM], check=False, cwd=ROOT,
                          env=child_env(overrides), capture_output=True, text=True, timeout=60)
    assert done.returncode == 9, done.stdout + done.stderr


@pytest.fixture
def beat_redis_url() -> Iterator[str]:
    """Redis database REDIS_DB on the test server, emptied before and after."""
    import redis

    url = urlunsplit(urlsplit(services.REDIS_URL)._replace(path=f"/{REDIS_DB}"))
    require_service(url, "Redis")
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


def redis_messages(url: str) -> list[Envelope]:
    """Every message in the ``default`` queue on Redis (reserved, so read once)."""
    broker = broker_from_url(url)
    try:
        size = broker.size("default")
        found: list[Envelope] = []
        while batch := broker.reserve(["default"], max_messages=100, lease=60, worker="test"):
            found.extend(delivery.envelope for delivery in batch)
        assert len(found) == size
        return found
    finally:
        broker.close()


def every_second(alias: str) -> PeriodicTask:
    """``add(2, 3)`` every second; ``catch_up=all`` so that a beat held up for a moment (a
    locked SQLite file) still fires every tick, and any gap in the ticks is a lost tick."""
    interval, _ = IntervalSchedule.objects.using(alias).get_or_create(every=1, period="seconds")
    task = PeriodicTask(name="every second", task=TASK, interval=interval, args=[2, 3],
                        catch_up=PeriodicTask.ALL)
    task.save(using=alias)
    return task


def due_hourly(alias: str) -> tuple[PeriodicTask, datetime]:
    """``add(2, 3)`` hourly with a tick ten minutes ago, due now; the next one is 50 min away."""
    tick = (timezone.now() - timedelta(minutes=10)).replace(microsecond=0)
    interval, _ = IntervalSchedule.objects.using(alias).get_or_create(every=1, period="hours")
    task = PeriodicTask(name="hourly", task=TASK, interval=interval, args=[2, 3],
                        start_time=tick)
    task.save(using=alias)
    PeriodicTask.objects.using(alias).filter(pk=task.pk).update(next_run_at=tick)
    return task, tick


def runs_of(task: PeriodicTask, alias: str) -> list[PeriodicTaskRun]:
    return list(PeriodicTaskRun.objects.using(alias).filter(periodic_task=task).order_by("tick"))


def three_beats(spawn: Callable[..., Command], alias: str, task: PeriodicTask,
                overrides: dict[str, Any]) -> list[PeriodicTaskRun]:
    """Three taskbeats side by side for RUN_SECONDS, stopped; returns the task's claims."""
    beats = [spawn("taskbeat", overrides=overrides) for _ in range(3)]
    wait_for(lambda: BeatInstance.objects.using(alias).count() == 3, "three beats ticking")
    time.sleep(RUN_SECONDS)
    wait_for(lambda: len(runs_of(task, alias)) >= 4, "four ticks")
    for output in stop_all(beats):
        assert "taskbeat beat" in output, output
    assert BeatInstance.objects.using(alias).count() == 0  # each removed its liveness row
    runs = runs_of(task, alias)
    assert len(runs) >= 4
    assert all(run.sent_at is not None for run in runs)
    assert all(run.task_id == tick_task_id(task.name, run.tick) for run in runs)
    steps = {later.tick - earlier.tick for earlier, later in zip(runs, runs[1:], strict=False)}
    assert steps == {timedelta(seconds=1)}, [run.tick for run in runs]  # no tick lost
    task.refresh_from_db(using=alias)
    assert task.total_run_count == len(runs)
    return runs


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mariadb"])
def test_three_beats_send_each_tick_once_on_the_database_broker(kind, spawn):
    alias = require_alias(kind)
    task = every_second(alias)
    runs = three_beats(spawn, alias, task, on(alias))
    messages = list(QueuedMessage.objects.using(alias).filter(task_name=TASK))
    ids = [message.message_id for message in messages]
    assert len(ids) == len(set(ids)) == len(runs)
    assert set(ids) == {run.task_id for run in runs}
    assert all(message.headers[PERIODIC_HEADER] == task.name for message in messages)


@pytest.mark.network_broker
def test_three_beats_send_each_tick_once_on_redis(beat_redis_url, spawn):
    task = every_second("default")
    runs = three_beats(spawn, "default", task, on("default", beat_redis_url))
    messages = redis_messages(beat_redis_url)
    ids = [message.message_id for message in messages]
    assert len(ids) == len(set(ids)) == len(runs)
    assert set(ids) == {run.task_id for run in runs}
    assert all(message.headers[PERIODIC_HEADER] == task.name for message in messages)


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mariadb"])
def test_beat_killed_after_its_claim_leaves_nothing_on_the_database_broker(kind, spawn):
    alias = require_alias(kind)
    task, tick = due_hourly(alias)
    crash_after_claim(on(alias))
    # claim and message were one transaction: neither is left, and the tick is still due
    assert not PeriodicTaskRun.objects.using(alias).exists()
    assert not QueuedMessage.objects.using(alias).exists()
    task.refresh_from_db(using=alias)
    assert task.next_run_at == tick

    beat = spawn("taskbeat", overrides=on(alias))
    wait_for(lambda: PeriodicTask.objects.using(alias).get(pk=task.pk).next_run_at != tick,
             "the tick sent")
    stop_all([beat])
    [run] = runs_of(task, alias)
    assert (run.tick, run.task_id) == (tick, tick_task_id(task.name, tick))
    assert run.sent_at is not None
    [message] = QueuedMessage.objects.using(alias).all()
    assert message.message_id == run.task_id
    task.refresh_from_db(using=alias)
    assert (task.total_run_count, task.last_task_id) == (1, run.task_id)


def resent_after_a_crash(url: str, spawn: Callable[..., Command]
                         ) -> tuple[PeriodicTask, PeriodicTaskRun, Command, str]:
    """On Redis: a beat dies after claiming a due tick, another beat starts and takes it over.
    Returns the task, the dead beat's claim, the other beat (stopped) and its output."""
    alias = "default"
    overrides = on(alias, url, BEAT_CLAIM_TIMEOUT=1)
    task, tick = due_hourly(alias)
    crash_after_claim(overrides)
    [claim] = runs_of(task, alias)
    assert (claim.tick, claim.task_id) == (tick, tick_task_id(task.name, tick))
    assert claim.sent_at is None
    assert redis_messages(url) == []
    # the next beat looks for stale claims when it starts: let this one be stale by then
    time.sleep(max(0.0, (claim.claimed_at + timedelta(seconds=1.2) - timezone.now())
                   .total_seconds()))

    beat = spawn("taskbeat", overrides=overrides)
    wait_for(lambda: PeriodicTaskRun.objects.using(alias).filter(sent_at__isnull=False).exists(),
             "the claim sent again")
    wait_for(lambda: PeriodicTask.objects.using(alias).get(pk=task.pk).next_run_at != tick,
             "the next run moved on")
    [output] = stop_all([beat])
    task.refresh_from_db(using=alias)
    return task, claim, beat, output


@pytest.mark.network_broker
def test_beat_killed_after_its_claim_on_redis_is_sent_again_with_the_same_id(beat_redis_url,
                                                                             spawn):
    task, claim, beat, output = resent_after_a_crash(beat_redis_url, spawn)
    assert f"Sending {claim.task_id} for 'hourly' again" in output, output
    [run] = runs_of(task, "default")
    assert (run.task_id, run.claimed_by) == (claim.task_id, beat.ident())
    assert run.sent_at is not None
    [message] = redis_messages(beat_redis_url)  # once: the due tick was not claimed twice
    assert message.message_id == claim.task_id
    assert message.headers[PERIODIC_HEADER] == task.name


@pytest.mark.network_broker
def test_a_tick_sent_again_counts_as_the_tasks_run(beat_redis_url, spawn):
    """The beat that sends a dead beat's claim records the run as a first send does (run
    count, last task id, last run), so the admin shows that the tick ran and under which id."""
    task, claim, _, _ = resent_after_a_crash(beat_redis_url, spawn)
    assert (task.total_run_count, task.last_task_id) == (1, claim.task_id)
    assert task.last_run_at is not None


def test_taskworker_beat_runs_periodic_tasks_and_stops_with_the_worker(spawn):
    alias = "default"
    task = every_second(alias)
    worker = spawn("taskworker", "--beat", "--pool", "solo", overrides=on(alias))
    wait_for(lambda: BeatInstance.objects.using(alias).filter(embedded=True).exists(),
             "the embedded beat ticking")
    [beat] = BeatInstance.objects.using(alias).all()
    assert beat.ident.startswith("embedded-beat")

    def latest_succeeded() -> bool:
        last = PeriodicTask.objects.using(alias).get(pk=task.pk).last_task_id
        done = TaskResult.objects.using(alias).filter(state=states.SUCCESS)
        return done.count() >= 2 and done.filter(task_id=last).exists()

    wait_for(latest_succeeded, "two periodic runs done, the latest among them")
    [output] = stop_all([worker])
    assert f"beat {beat.ident} stopped" in output, output
    assert not BeatInstance.objects.using(alias).exists()
    sent = {run.task_id for run in runs_of(task, alias)}
    done = TaskResult.objects.using(alias).filter(state=states.SUCCESS)
    assert {row.task_id for row in done} <= sent
    assert all(json.loads(row.result) == 5 for row in done)
