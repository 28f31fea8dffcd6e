"""``manage.py taskq status|inspect|control|purge|events``, as text and as ``--json``."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from django_taskq.brokers import get_broker
from django_taskq.events.dispatcher import EventDispatcher
from django_taskq.events.models import WorkerState
from django_taskq.events.store import DatabaseEventSink
from tests.conftest import require_alias
from tests.helpers import envelope
from tests.test_remote_control import (  # quick_monitor: autouse, here too
    PATIENCE,
    QUEUE,
    configure,
    eventually,
    gated,
    live_worker,
    quick_monitor,  # noqa: F401
)

pytestmark = pytest.mark.django_db(transaction=True, databases="__all__")


def taskq(*args: str) -> str:
    out = io.StringIO()
    call_command("taskq", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def taskq_json(*args: str) -> Any:
    return json.loads(taskq(*args, "--json"))


def worker_events(hostname: str, *kinds: str, **fields: Any) -> None:
    """Store ``kinds`` events of ``hostname`` as its monitor would."""
    events = EventDispatcher(hostname, [DatabaseEventSink("default")])
    for kind in kinds:
        events.send(kind, **{"freq": 2.0, "active": 1, "processed": 7, "pool": "prefork",
                             "concurrency": 4, "queues": ["default", "mail"], **fields})
    events.flush()


# -- status ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["memory", "sqlite", "postgres",
                                  pytest.param("redis", marks=pytest.mark.network_broker)])
def test_status_counts_depth_scheduled_in_flight_and_dead_letters(kind, settings, request):
    if kind == "memory":
        url = "memory://"
    elif kind == "redis":
        url = request.getfixturevalue("redis_url")
    else:
        url = f"db://{require_alias(kind)}"
    configure(settings, url, "memory://")
    broker = get_broker()
    later = timezone.now() + timedelta(hours=1)
    broker.enqueue_many([envelope("default"), envelope("default"), envelope("default", eta=later),
                         envelope("mail"), envelope("mail")])
    held = broker.reserve(["mail"], max_messages=1, lease=60, worker="w")
    dead = broker.reserve(["mail"], max_messages=1, lease=60, worker="w")
    broker.dead_letter(dead[0], "bad")
    worker_events("w1@test", "worker-online")
    worker_events("w0@test", "worker-online", "worker-offline")

    found = taskq_json("status")
    assert [(w["hostname"], w["online"], w["active"], w["processed"]) for w in
            found["workers"]] == [("w0@test", False, 0, 7), ("w1@test", True, 1, 7)]
    assert found["queues"] == [
        {"name": "default", "depth": 3, "scheduled": 1, "in_flight": 0},
        {"name": "mail", "depth": 0, "scheduled": 0, "in_flight": 1}]
    assert found["dead_letters"] == 1

    text = taskq("status", "-Q", "extra")
    assert "Workers (1 online, 1 offline)" in text
    assert any(line.split()[:5] == ["w1@test", "online", "1", "7", "prefork"]
               for line in text.splitlines())
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines()
            if line.split() and line.split()[0] in ("default", "mail", "extra")}
    assert rows == {"default": ["3", "1", "0"], "mail": ["0", "0", "1"],
                    "extra": ["0", "0", "0"]}
    assert "Dead letters: 1 (see `manage.py taskq dead list`)" in text
    broker.ack(held[0])


def test_status_says_what_it_cannot_know(settings):
    configure(settings, "memory://", "memory://")
    settings.TASKQ = {**settings.TASKQ, "EVENTS_DATABASE": None}
    text = taskq("status")
    assert "workers are not recorded: EVENTS_DATABASE is None" in text
    assert taskq_json("status")["workers"] is None
    settings.TASKQ = {**settings.TASKQ, "EVENTS_DATABASE": "default"}
    assert "none seen in the last hour" in taskq("status")
    old = timezone.now() - timedelta(hours=3)
    WorkerState.objects.create(hostname="gone@test", last_heartbeat=old, started_at=old)
    assert taskq_json("status")["workers"] == []
    assert [w["hostname"] for w in taskq_json("status", "--all-workers")["workers"]] == [
        "gone@test"]


def test_status_shows_n_a_where_the_broker_cannot_count(settings, monkeypatch):
    from django_taskq.brokers.base import Broker
    from django_taskq.brokers.memory import MemoryBroker

    configure(settings, "memory://", "memory://")
    # The base answer: size only, as a broker that cannot tell the rest gives.
    monkeypatch.setattr(MemoryBroker, "queue_counts", Broker.queue_counts)
    get_broker().enqueue(envelope("default"))
    assert taskq_json("status")["queues"] == [
        {"name": "default", "depth": 1, "scheduled": None, "in_flight": None}]
    assert any(line.split() == ["default", "1", "n/a", "n/a"]
               for line in taskq("status").splitlines())


# -- inspect and control ---------------------------------------------------------------------

def test_inspect_and_control_against_a_live_worker(settings, tmp_path):
    configure(settings, "memory://", "memory://")
    host, gate = "cmd@test", tmp_path / "gate"
    remote = ("-d", host, "--timeout", str(PATIENCE))
    with live_worker(host, pool="threads", concurrency=1):
        assert taskq("inspect", "ping", *remote).splitlines() == [
            f"-> {host}: OK", "    pong", "", "1 node online."]
        assert taskq_json("inspect", "ping", *remote) == {host: {"ok": "pong"}}
        running = gated.apply_async((str(gate),), queue=QUEUE)
        eventually(lambda: taskq_json("inspect", "active", *remote)[host], "an active task")
        assert f"* {running.id} tests.remote.gated" in taskq("inspect", "active", *remote)
        assert "- empty -" in taskq("inspect", "reserved", *remote)
        assert f"{running.id}: active" in taskq("inspect", "query_task", running.id, *remote)
        gate.touch()
        assert running.get(timeout=PATIENCE) == 0
        assert "* tests.remote.gated" in taskq("inspect", "registered", *remote)
        assert f"* {QUEUE}" in taskq("inspect", "active_queues", *remote)
        stats = taskq_json("inspect", "stats", *remote)[host]
        assert stats["pool"]["max-concurrency"] == 1 and stats["total"] == {
            "tests.remote.gated": 1}

        assert f"-> {host}: OK\n    pool will grow" in taskq("control", "pool_grow", "2",
                                                             *remote)
        eventually(lambda: taskq_json("inspect", "stats", *remote)[host]["pool"][
            "max-concurrency"] == 3, "the pool grown")
        assert taskq_json("control", "add_consumer", "more", *remote) == {
            host: {"ok": "add consumer more"}}
        eventually(lambda: "* more" in taskq("inspect", "active_queues", *remote), "more")
        assert "no longer consuming from 'more'" in taskq("control", "cancel_consumer", "more",
                                                          *remote)
        assert "new rate limit set" in taskq("control", "rate_limit", "tests.remote.ticket",
                                             "10/m", *remote)
        assert "time limits set" in taskq("control", "time_limit", "tests.remote.ticket",
                                          "--soft", "1", "--hard", "2", *remote)
        control_errors(host, remote)
        assert taskq_json("control", "shutdown", *remote) == {host: {"ok": "shutting down"}}


def control_errors(host: str, remote: tuple[str, ...]) -> None:
    out = io.StringIO()
    with pytest.raises(CommandError, match=f"The command failed on: {host}"):
        call_command("taskq", "control", "rate_limit", "no.such.task", "1/s", *remote,
                     stdout=out)
    assert f"-> {host}: ERROR\n    unknown task 'no.such.task'" in out.getvalue()
    with pytest.raises(CommandError, match="No reply within .* from: ghost@test"):
        taskq("inspect", "ping", "-d", f"{host},ghost@test", "--timeout", "0.5")
    with pytest.raises(CommandError, match="Bad rate limit 'fast'"):
        taskq("control", "rate_limit", "tests.remote.ticket", "fast", *remote)
    with pytest.raises(CommandError, match="--soft \\(3\\) must be below --hard \\(2\\)"):
        taskq("control", "time_limit", "tests.remote.ticket", "--soft", "3", "--hard", "2",
              *remote)
    with pytest.raises(CommandError, match="positive whole number"):
        taskq("control", "pool_shrink", "0", *remote)
    with pytest.raises(CommandError, match="seconds above zero"):
        taskq("inspect", "ping", "--timeout", "0")


def test_inspect_without_workers_fails_with_the_fix(settings):
    configure(settings, "memory://", "memory://")
    for args in (("inspect", "ping"), ("inspect", "active", "--json"), ("control", "ping")):
        with pytest.raises(CommandError, match="No worker replied within 0.1s. Is a worker "
                                               "running \\(manage.py taskworker\\)"):
            taskq(*args, "--timeout", "0.1")
    with pytest.raises(CommandError, match="No worker of w9@test replied"):
        taskq("inspect", "stats", "-d", "w9@test", "--timeout", "0.1")


# -- purge -----------------------------------------------------------------------------------

class Terminal(io.StringIO):
    """A stdin that says it is a terminal, with the user's answer in it."""

    def isatty(self) -> bool:
        return True


def test_purge_asks_and_refuses_without_a_terminal(settings, monkeypatch):
    configure(settings, "memory://", "memory://")
    broker = get_broker()
    broker.enqueue_many([envelope("default") for _ in range(3)])
    monkeypatch.setattr("sys.stdin", io.StringIO())
    with pytest.raises(CommandError, match="no terminal to confirm on; pass --yes"):
        taskq("purge", "default")
    monkeypatch.setattr("sys.stdin", Terminal("no\n"))
    with pytest.raises(CommandError, match="Not purged"):
        taskq("purge", "default")
    assert broker.size("default") == 3
    monkeypatch.setattr("sys.stdin", Terminal("yes\n"))
    asked = taskq("purge", "default")
    assert "Purge 3 message(s) from 'default' (3)? This cannot be undone." in asked
    assert "Purged 3 message(s) from queue 'default'." in asked
    assert broker.size("default") == 0


def test_purge_with_yes_json_and_unknown_queues(settings):
    configure(settings, "memory://", "memory://")
    broker = get_broker()
    broker.enqueue_many([envelope("default"), envelope("side"), envelope("side")])
    worker_events("w1@test", "worker-online")  # consumes default and mail
    assert taskq_json("purge", "side", "mail", "--yes") == {"purged": {"side": 2, "mail": 0}}
    with pytest.raises(CommandError, match="Unknown queue\\(s\\): 'nope': empty, not "
                                           "DEFAULT_QUEUE and consumed by no online worker. "
                                           "Known queues: default, mail"):
        taskq("purge", "nope", "--yes")
    assert taskq("purge", "default", "--yes").strip() == "Purged 1 message(s) from queue 'default'."


# -- events ----------------------------------------------------------------------------------

def store_task_events() -> None:
    events = EventDispatcher("w1@test", [DatabaseEventSink("default")])
    events.send("worker-online", freq=2.0, active=0, processed=0, pool="solo", concurrency=1,
                queues=["default"])
    events.send("task-received", uuid="id-1", name="app.add", args="(1, 2)", kwargs="{}")
    events.send("task-succeeded", uuid="id-1", name="app.add", runtime=0.25, result="3")
    events.send("task-failed", uuid="id-2", name="app.boom", exception="ValueError('bad')")
    events.flush()


def test_events_once_shows_workers_totals_and_latest_events(settings):
    configure(settings, "memory://", "memory://")
    assert "No task events stored yet." in taskq("events", "--once")
    store_task_events()
    text = taskq("events", "--once")
    assert "Workers (1 online, 0 offline)" in text
    assert "Last 5 minutes: received 1  started 0  succeeded 1  failed 1" in text
    rows = [line.split(None, 5) for line in text.splitlines() if " task-" in line]
    assert [row[1:5] for row in rows] == [["task-failed", "app.boom", "id-2", "w1@test"],
                                          ["task-succeeded", "app.add", "id-1", "w1@test"],
                                          ["task-received", "app.add", "id-1", "w1@test"]]
    assert rows[0][5] == "ValueError('bad')" and rows[1][5] == "0.250s result=3"
    found = taskq_json("events", "--once", "--limit", "1")
    assert [e["type"] for e in found["events"]] == ["task-failed"]
    assert found["totals"]["succeeded"] == 1 and found["workers"][0]["hostname"] == "w1@test"


def test_events_refresh_until_ctrl_c(settings, monkeypatch):
    from django_taskq.management.taskq import events

    configure(settings, "memory://", "memory://")
    store_task_events()
    naps: list[float] = []

    def nap(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(events.time, "sleep", nap)
    text = taskq("events", "--interval", "0.5")
    assert naps == [0.5, 0.5] and text.count("(every 0.5s; Ctrl-C to quit)") == 2
    naps.clear()
    frames = [json.loads(line) for line in taskq("events", "--json").splitlines() if line]
    assert len(frames) == 2 and frames[0]["events"][0]["task_id"] == "id-2"


def test_events_need_the_events_database(settings):
    configure(settings, "memory://", "memory://")
    settings.TASKQ = {**settings.TASKQ, "EVENTS_DATABASE": None}
    with pytest.raises(CommandError, match="EVENTS_DATABASE is None: set"):
        taskq("events", "--once")


def test_dead_list_json(settings):
    configure(settings, "memory://", "memory://")
    broker = get_broker()
    sent = envelope("default")
    broker.enqueue(sent)
    [delivery] = broker.reserve(["default"], max_messages=1, lease=60, worker="w")
    broker.dead_letter(delivery, "poison")
    found = taskq_json("dead", "list")
    assert found["total"] == 1
    assert [(d["task_id"], d["queue"], d["reason"]) for d in found["dead_letters"]] == [
        (sent.message_id, "default", "poison")]
