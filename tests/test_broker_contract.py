"""The broker contract: the same tests for every broker engine (memory, SQLite, PostgreSQL, MariaDB)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import transaction

from django_taskq.brokers.base import QueueCounts
from django_taskq.brokers.database import DatabaseBroker
from tests.helpers import dead_letters, envelope

LEASE = 30.0

#: RabbitMQ keeps time and leases itself (a delivery is held while its channel lives): tests that
#: move the fake clock to expire a lease or make an ETA due cannot apply to it, and are not
#: collected for it (tests/conftest.py). tests/test_amqp_broker.py has their real-time
#: counterparts.
needs_fake_clock = pytest.mark.needs_fake_clock


def reserve(broker, queues=("default",), n=10, worker="w1"):
    return broker.reserve(list(queues), max_messages=n, lease=LEASE, worker=worker)


def test_enqueued_message_is_delivered_intact(broker):
    sent = envelope(args=(2, 3), kwargs={"k": "v"})
    broker.enqueue(sent)
    [delivery] = reserve(broker)
    got = delivery.envelope
    assert got.body == sent.body
    assert got.headers["id"] == sent.message_id
    assert got.headers["task"] == "tests.testapp.tasks.add"
    assert (got.content_type, got.content_encoding) == ("application/json", "utf-8")
    assert got.queue == "default"
    assert delivery.attempts == 1


def test_oldest_first_within_a_priority(broker):
    sent = [envelope() for _ in range(5)]
    for e in sent:
        broker.enqueue(e)
    assert [d.message_id for d in reserve(broker)] == [e.message_id for e in sent]


def test_higher_priority_runs_first(broker):
    low, high, mid = envelope(priority=0), envelope(priority=9), envelope(priority=5)
    broker.enqueue_many([low, high, mid])
    assert [d.message_id for d in reserve(broker)] == [
        high.message_id, mid.message_id, low.message_id]


def test_batch_size_is_respected(broker):
    broker.enqueue_many([envelope() for _ in range(7)])
    assert len(reserve(broker, n=3)) == 3
    assert len(reserve(broker, n=10)) == 4
    assert reserve(broker) == []


def test_queues_are_separate(broker):
    a, b = envelope("a"), envelope("b")
    broker.enqueue_many([a, b])
    assert [d.message_id for d in reserve(broker, ["b"])] == [b.message_id]
    assert [d.message_id for d in reserve(broker, ["a", "b"])] == [a.message_id]


@needs_fake_clock
def test_eta_message_waits_until_due(broker, clock):
    later = envelope(eta=clock() + timedelta(seconds=60))
    broker.enqueue(later)
    assert reserve(broker) == []
    assert broker.size("default") == 1
    clock.advance(61)
    assert [d.message_id for d in reserve(broker)] == [later.message_id]


def test_reserved_message_is_invisible_to_others(broker):
    broker.enqueue(envelope())
    assert len(reserve(broker, worker="w1")) == 1
    assert reserve(broker, worker="w2") == []
    assert broker.size("default") == 0


def test_ack_deletes_for_good(broker, clock):
    broker.enqueue(envelope())
    [delivery] = reserve(broker)
    broker.ack(delivery)
    clock.advance(LEASE * 3)
    assert broker.recover() == []
    assert reserve(broker) == []


@needs_fake_clock
def test_expired_lease_is_delivered_again(broker, clock):
    sent = envelope()
    broker.enqueue(sent)
    reserve(broker, worker="dead-worker")
    clock.advance(LEASE + 1)
    assert broker.recover() == []
    [again] = reserve(broker, worker="w2")
    assert again.message_id == sent.message_id
    assert again.attempts == 2


@needs_fake_clock
def test_extended_lease_is_not_recovered(broker, clock):
    broker.enqueue(envelope())
    [delivery] = reserve(broker)
    clock.advance(LEASE - 1)
    broker.extend_leases([delivery], LEASE)
    clock.advance(LEASE - 1)
    broker.recover()
    assert reserve(broker, worker="w2") == []


@needs_fake_clock
def test_message_whose_worker_keeps_dying_is_dead_lettered(broker, clock):
    sent = envelope()
    broker.enqueue(sent)
    for _ in range(3):
        assert len(reserve(broker)) == 1
        clock.advance(LEASE + 1)
        dead = broker.recover()
    assert [d.envelope.message_id for d in dead] == [sent.message_id]
    assert reserve(broker) == []
    [(message_id, reason)] = dead_letters(broker)
    assert message_id == sent.message_id
    assert "worker lost" in reason and "3 times" in reason


def test_release_undoes_the_attempt(broker):
    broker.enqueue(envelope())
    [first] = reserve(broker)
    broker.release([first])
    [again] = reserve(broker)
    assert again.attempts == 1


@needs_fake_clock
def test_requeue_keeps_attempt_and_honours_eta(broker, clock):
    broker.enqueue(envelope())
    [first] = reserve(broker)
    broker.requeue(first, eta=clock() + timedelta(seconds=10))
    assert reserve(broker) == []
    clock.advance(11)
    [again] = reserve(broker)
    assert again.attempts == 2


@needs_fake_clock
def test_defer_undoes_the_attempt_and_waits_for_the_eta(broker, clock):
    broker.enqueue(envelope())
    [early] = reserve(broker)
    broker.defer(early, clock() + timedelta(seconds=30))
    assert reserve(broker) == []
    assert broker.size("default") == 1
    clock.advance(31)
    [due] = reserve(broker)
    assert due.attempts == 1


def test_dead_letter_records_reason_and_removes(broker):
    sent = envelope()
    broker.enqueue(sent)
    [delivery] = reserve(broker)
    broker.dead_letter(delivery, "unknown task: nope")
    assert dead_letters(broker) == [(sent.message_id, "unknown task: nope")]
    assert broker.size("default") == 0
    assert reserve(broker) == []


@needs_fake_clock
def test_stale_lease_holder_cannot_ack_the_new_holders_message(broker, clock):
    broker.enqueue(envelope())
    [stale] = reserve(broker, worker="slow")
    clock.advance(LEASE + 1)
    broker.recover()
    [current] = reserve(broker, worker="fast")
    broker.ack(stale)  # the slow worker finally finishes: must not delete fast's delivery
    broker.extend_leases([stale], LEASE)  # nor keep it alive
    clock.advance(LEASE + 1)
    broker.recover()
    assert [d.message_id for d in reserve(broker)] == [current.message_id]


def test_purge_and_size(broker):
    broker.enqueue_many([envelope() for _ in range(4)] + [envelope("other")])
    assert broker.size("default") == 4
    assert broker.purge("default") == 4
    assert broker.size("default") == 0
    assert broker.size("other") == 1


def test_queue_counts(broker, broker_kind, clock):
    broker.enqueue_many([envelope(), envelope(), envelope(eta=clock() + timedelta(hours=1)),
                         envelope("other")])
    [held] = reserve(broker, n=1)  # the ready "default" one is now in flight
    # RabbitMQ tells a client no queue's unacknowledged count: in flight is None there.
    in_flight = (lambda n: None) if broker_kind == "amqp" else (lambda n: n)
    assert broker.queue_counts(["default", "other", "noise"]) == {
        "default": QueueCounts(depth=2, scheduled=1, in_flight=in_flight(1)),
        "other": QueueCounts(depth=1, scheduled=0, in_flight=in_flight(0)),
        "noise": QueueCounts(depth=0, scheduled=0, in_flight=in_flight(0))}
    assert broker.queue_counts([]) == {}
    broker.ack(held)
    assert broker.queue_counts(["default"])["default"].in_flight == in_flight(0)
    if broker_kind != "amqp":  # in flight of a priority list: counted under its queue
        broker.enqueue(envelope("urgent", priority=9))
        reserve(broker, ("urgent",), n=1)
        assert broker.queue_counts(["urgent"])["urgent"] == QueueCounts(0, 0, 1)


def test_reserve_with_timeout_returns_empty_when_nothing_comes(broker):
    assert broker.reserve(["default"], max_messages=1, lease=LEASE, worker="w",
                          timeout=0.05) == []


def test_concurrent_reservers_never_share_a_message(broker):
    total = 60
    broker.enqueue_many([envelope() for _ in range(total)])
    seen: list[str] = []
    lock = threading.Lock()

    def consume(worker: str) -> None:
        while True:
            got = reserve(broker, n=4, worker=worker)
            if not got:
                return
            with lock:
                seen.extend(d.message_id for d in got)

    threads = [threading.Thread(target=consume, args=(f"w{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(seen) == total
    assert len(set(seen)) == total


@pytest.mark.parametrize("broker_kind", ["sqlite", "postgres", "mariadb"])
def test_enqueue_joins_the_callers_transaction(broker):
    assert isinstance(broker, DatabaseBroker)
    with pytest.raises(RuntimeError), transaction.atomic(using=broker.alias):
        broker.enqueue(envelope())
        raise RuntimeError("roll back")
    assert broker.size("default") == 0
    with transaction.atomic(using=broker.alias):
        broker.enqueue(envelope())
    assert broker.size("default") == 1


@pytest.mark.parametrize("broker_kind", ["sqlite", "postgres", "mariadb"])
def test_recover_and_dead_letter_work_while_another_connection_writes(broker, clock):
    """SQLite refuses a read-then-write transaction while another writer is busy: the broker's
    maintenance transactions must write first, so they wait instead of failing."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def keep_writing() -> None:
        try:
            while not stop.is_set():
                broker.enqueue_many([envelope("noise") for _ in range(20)])
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            from django.db import connections

            connections.close_all()

    broker.enqueue_many([envelope() for _ in range(30)])
    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        for _ in range(15):
            got = reserve(broker, n=2)
            broker.dead_letter(got[0], "bad")
            clock.advance(LEASE + 1)
            broker.recover()
    finally:
        stop.set()
        writer.join(timeout=30)
    assert errors == []
    assert len(dead_letters(broker)) == 15
