"""Chord counting in each result store: a header task counted once however often it is recorded,
the completion claimed by one task (and again only by that task, until the body is sent), two
header tasks finishing at the same moment in two threads complete the chord exactly once, and
on Redis Celery's own keys."""

from __future__ import annotations

import json
import threading

import pytest
from django.db import connections

from django_taskq import states
from django_taskq.outcome import Outcome, failure
from django_taskq.results import get_backend

every_store = pytest.mark.parametrize("broker_kind",
                                      ["memory", "sqlite", "postgres", "mariadb", "redis"])
shared_stores = pytest.mark.parametrize("broker_kind", ["sqlite", "postgres", "mariadb", "redis"])


def done(task_id, value):
    return Outcome(task_id, "canvas.add", states.SUCCESS, payload=json.dumps(value).encode())


@every_store
def test_a_header_task_recorded_twice_counts_once(configured):
    backend = get_backend()
    backend.set_chord_size("g1", 3)
    assert backend.add_chord_part("g1", 0, done("a", 1)) is None
    assert backend.add_chord_part("g1", 0, done("a", 1)) is None  # redelivered: not counted
    assert backend.add_chord_part("g1", 1, done("b", 2)) is None  # 2 of 3, not 3
    parts = backend.add_chord_part("g1", 2, done("c", 3))
    assert [(p.task_id, p.state, p.value) for p in parts] == [
        ("a", "SUCCESS", 1), ("b", "SUCCESS", 2), ("c", "SUCCESS", 3)]


@every_store
def test_only_the_completing_task_may_complete_again_until_the_body_is_sent(configured):
    backend = get_backend()
    backend.set_chord_size("g2", 2)
    backend.add_chord_part("g2", 1, done("b", 2))
    assert [p.value for p in backend.add_chord_part("g2", 0, done("a", 1))] == [1, 2]
    assert backend.add_chord_part("g2", 1, done("b", 2)) is None  # another task: no
    # The completing task redelivered (its worker died before sending the body): again.
    assert [p.value for p in backend.add_chord_part("g2", 0, done("a", 1))] == [1, 2]
    backend.chord_sent("g2")
    assert backend.add_chord_part("g2", 0, done("a", 1)) is None  # sent: never again


@every_store
def test_failures_are_kept_with_their_exception_and_unknown_chords_ignored(configured):
    backend = get_backend()
    assert backend.add_chord_part("never-sized", 0, done("x", 1)) is None
    backend.set_chord_size("g3", 2)
    backend.add_chord_part("g3", 0, failure("bad", "canvas.boom", ValueError("no")))
    parts = backend.add_chord_part("g3", 1, done("ok", 5))
    assert parts[0].failed() and parts[0].value["exc_type"] == "ValueError"
    assert not parts[1].failed() and parts[1].value == 5


@shared_stores
def test_two_header_tasks_finishing_at_once_complete_the_chord_once(configured):
    backend = get_backend()
    for round_ in range(15):
        group_id = f"race-{round_}"
        backend.set_chord_size(group_id, 2)
        barrier, completed = threading.Barrier(2), []

        def finish(index, group_id=group_id, barrier=barrier, completed=completed):
            barrier.wait()
            try:
                parts = backend.add_chord_part(group_id, index, done(f"{group_id}-{index}", index))
            finally:
                connections.close_all()
            if parts is not None:
                completed.append([part.value for part in parts])

        threads = [threading.Thread(target=finish, args=(index,)) for index in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert completed == [[0, 1]], f"round {round_}: {completed}"


@pytest.mark.parametrize("broker_kind", ["redis"])
def test_redis_keeps_celerys_chord_keys(configured):
    import redis

    backend = get_backend()
    backend.set_chord_size("gc", 2)
    backend.add_chord_part("gc", 1, done("second", [1, "x"]))
    client = redis.Redis.from_url(configured)
    assert client.get("celery-taskset-meta-gc.s") == b"2"
    [(member, score)] = client.zrange("celery-taskset-meta-gc.j", 0, -1, withscores=True)
    assert json.loads(member) == [1, "second", "SUCCESS", [1, "x"]] and score == 1
    assert client.smembers("celery-taskset-meta-gc.d") == {b"second:1"}
    backend.add_chord_part("gc", 0, done("first", 0))
    assert client.get("celery-taskset-meta-gc.c") == b"first"  # the claim: the completing task
    backend.chord_sent("gc")
    assert not client.exists(*(f"celery-taskset-meta-gc{s}" for s in (".j", ".t", ".s", ".d")))
    assert client.get("celery-taskset-meta-gc.c") == b"done"  # Celery 5.7's end marker


@every_store
def test_a_chord_sent_again_after_it_completed_runs_again(configured):
    backend = get_backend()
    backend.set_chord_size("g4", 1)
    assert [p.value for p in backend.add_chord_part("g4", 0, done("first", 1))] == [1]
    backend.chord_sent("g4")
    backend.set_chord_size("g4", 1)  # the same frozen chord sent again
    assert [p.value for p in backend.add_chord_part("g4", 0, done("again", 7))] == [7]


@pytest.mark.parametrize("broker_kind", ["memory", "sqlite", "postgres", "mariadb"])
def test_one_task_twice_in_a_header_counts_twice(configured):
    """(On Redis, Celery's sorted set keeps one copy of two equal results of one task id:
    such a chord completes on neither Celery's workers nor ours there.)"""
    backend = get_backend()
    backend.set_chord_size("g5", 2)
    assert backend.add_chord_part("g5", 0, done("same", 1)) is None
    assert [p.value for p in backend.add_chord_part("g5", 1, done("same", 1))] == [1, 1]
