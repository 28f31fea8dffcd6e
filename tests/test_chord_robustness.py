"""What settling workflows survives: a chord that cannot be marked sent after the settle commits
(nothing is sent twice, the worker goes on), a malformed chain in a failed message (logged, the
worker goes on), dead letters recorded one by one when recording them together fails, and the
errbacks of a run given up after being put back on every delivery."""

from __future__ import annotations

import pytest

from django_taskq import AsyncResult, chord, states
from django_taskq.brokers import get_broker
from django_taskq.brokers.base import DeadLetter
from django_taskq.exceptions import BrokerConnectionError
from django_taskq.message import SendOptions, build_envelope
from django_taskq.results import get_backend
from django_taskq.worker.heartbeat import Heartbeat
from tests.helpers import drain, envelope
from tests.testapp import canvas_tasks as ct
from tests.testapp import surface_tasks as st

some_brokers = pytest.mark.parametrize("broker_kind", ["memory", "sqlite", "redis"])


@some_brokers
def test_a_chord_not_marked_sent_after_the_commit_sends_nothing_twice(make_worker, monkeypatch,
                                                                      sends):
    backend = get_backend()

    def unreachable(group_id):
        raise BrokerConnectionError("the result store went away")

    monkeypatch.setattr(type(backend), "chord_sent", lambda self, group_id: unreachable(group_id))
    result = chord([ct.add.s(1, 1), ct.add.s(2, 2)], ct.tsum.s()).delay()
    worker = make_worker()
    drain(worker, result)
    for _ in range(5):
        worker.step()
    assert result.get(timeout=5) == 6
    assert get_broker().size("default") == 0  # the body was sent once, and ran


@some_brokers
def test_a_malformed_chain_in_a_failed_message_is_skipped(make_worker):
    bad = build_envelope("canvas.boom", (1,), {}, "malformed-chain",
                         SendOptions(queue="default", chain=[None, "x", 3]))  # type: ignore[list-item]
    get_broker().enqueue_many([bad])
    worker = make_worker()
    drain(worker, AsyncResult("malformed-chain"))
    assert AsyncResult("malformed-chain").state == states.FAILURE
    ok = ct.add.delay(2, 2)
    drain(worker, ok)  # the worker goes on
    assert ok.get(timeout=5) == 4


def test_dead_letters_are_recorded_one_by_one_when_together_they_fail():
    recorded, attempts = [], []
    letters = [DeadLetter(envelope(), "lost", 3) for _ in range(3)]
    bad, offline = letters[0].envelope.message_id, letters[1].envelope.message_id

    def on_dead(dead):
        attempts.append(len(dead))
        ids = {letter.envelope.message_id for letter in dead}
        if bad in ids:
            raise ValueError("cannot be recorded, ever")
        if offline in ids:
            raise BrokerConnectionError("store down")
        recorded.extend(ids)

    beat = Heartbeat(broker=None, held=list, lease=1.0, interval=1.0, on_dead=on_dead)
    beat.record(letters)
    assert recorded == [letters[2].envelope.message_id]  # the good one went through
    assert [letter.envelope.message_id for letter in beat._unrecorded] == [offline]  # retried


@pytest.mark.parametrize("broker_kind", ["memory", "sqlite"])
def test_a_run_given_up_after_being_put_back_sends_its_errbacks(make_worker, tmp_path):
    result = st.reject.apply_async((str(tmp_path / "runs"),), {"requeue": True},
                                   link_error=ct.failed_id.s().set(task_id="given-up-errback"))
    worker = make_worker()
    errback = AsyncResult("given-up-errback")
    drain(worker, errback)
    assert result.state == states.FAILURE
    assert errback.get(timeout=5) == f"failed: {result.id}"


@pytest.mark.parametrize("broker_kind", ["redis"])
def test_chord_keys_holding_other_data_are_logged_and_the_worker_goes_on(make_worker,
                                                                         configured, caplog):
    import redis

    sig = chord([ct.add.s(1, 1)], ct.tsum.s())
    sig.freeze()
    group_id = sig.header.options["task_id"]
    redis.Redis.from_url(configured).set(f"celery-taskset-meta-{group_id}.j", "not a zset")
    result = sig.delay()
    worker = make_worker()
    drain(worker, result.parent)
    ok = ct.add.delay(2, 2)
    drain(worker, ok)  # the worker goes on
    assert ok.get(timeout=5) == 4
    assert "cannot be counted" in caplog.text and "WRONGTYPE" in caplog.text
