"""The SQS broker against a real SQS-compatible server (moto's server mode, started here):
leases by visibility timeout, delivery counting, dead letters, delays, FIFO, Celery's names and
wire format, bad configuration. tests/test_broker_contract.py runs on it too (conftest)."""

from __future__ import annotations

import sys
import time
from datetime import datetime, timedelta, timezone

import pytest

from django_taskq.brokers.amqp_delay import now_ms
from django_taskq.brokers.amqp_wire import copy_headers
from django_taskq.brokers.sqs import SqsBroker, from_url
from django_taskq.brokers.sqs_options import entity_name
from django_taskq.brokers.sqs_queues import Outgoing
from django_taskq.exceptions import BrokerConnectionError, ConfigurationError
from django_taskq.service_url import parse
from tests.helpers import envelope
from tests.redisserver import free_port
from tests.sqsserver import unique_prefix

pytestmark = [pytest.mark.own_server, pytest.mark.network_broker]


def make(url: str, **options) -> SqsBroker:
    return from_url(parse(url, setting="BROKER_URL"), poll_interval=0.05, **options)


@pytest.fixture
def url(sqs_server) -> str:
    """An sqs:// URL of the test server with queues of this test's own."""
    return sqs_server.url(queue_name_prefix=unique_prefix(), wait_time_seconds=0)


@pytest.fixture
def broker(url):
    made = make(url)
    yield made
    made.close()


def reserve(broker, queues=("default",), n=10, lease=30.0):
    return broker.reserve(list(queues), max_messages=n, lease=lease, worker="w")


def wait_for_delivery(broker, timeout=5.0, **kwargs):
    deadline = time.monotonic() + timeout
    while True:
        got = reserve(broker, **kwargs)
        if got or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def in_(seconds: float) -> datetime:
    return datetime.now(timezone.utc) + timedelta(seconds=seconds)


# -- configuration ------------------------------------------------------------------------------

def test_queue_names_follow_celerys_rules(url):
    assert entity_name("celery.high") == "celery-high"
    assert entity_name("jobs.v2.fifo") == "jobs-v2.fifo"
    assert entity_name("a:b/c") == "a_b_c"
    options = make("sqs://?queue_name_prefix=prod-").options
    assert options.queue_name("celery.high") == "prod-celery-high"
    assert options.dead_letter_name == "prod-taskq-dead"


def test_url_gives_credentials_and_endpoint_as_kombu_reads_them():
    options = make("sqs://AKIDEXAMPLE:se%2Fcr%2Bet@localhost:4566").options
    assert (options.access_key_id, options.secret_access_key) == ("AKIDEXAMPLE", "se/cr+et")
    assert options.endpoint_url == "http://localhost:4566"
    assert make("sqs://k:s@sqs.local?is_secure=true").options.endpoint_url == "https://sqs.local"
    bare = make("sqs://").options
    assert (bare.access_key_id, bare.endpoint_url) == (None, None)  # boto3's chain decides
    assert "se/cr" not in repr(options) and "cr%2B" not in options.masked


@pytest.mark.parametrize("query, named", [
    ("?visibility=10", r"unknown option\(s\) visibility"),
    ("?visibility_timeout=abc", "visibility_timeout must be a whole number"),
    ("?wait_time_seconds=30", "wait_time_seconds must be a whole number of seconds from 0 to 20"),
    ("?polling_interval=-1", "polling_interval must be a positive number"),
    ("?is_secure=maybe", "is_secure must be true or false"),
])
def test_bad_url_options_are_named(query, named):
    with pytest.raises(ConfigurationError, match=named) as caught:
        make(f"sqs://key:secret@127.0.0.1:1/{query}")
    assert "secret" not in str(caught.value) and "key:****@" in str(caught.value)


@pytest.mark.parametrize("transport, named", [
    ({"predefined_queues": {"default": {"no": "url"}}}, "must be a dict with the queue's 'url'"),
    ({"predefined_queues": {"a.fifo": {"url": "http://h/1/a"}}}, "both end with .fifo"),
    ({"sts_role_arn": "arn:aws:iam::1:role/x"}, "sts_role_arn' is not supported"),
    ({"sqs-creation-attributes": "x"}, "sqs-creation-attributes' must be a dict"),
])
def test_bad_transport_options_are_named(transport, named):
    with pytest.raises(ConfigurationError, match=named):
        make("sqs://", transport_options=transport)


def test_transport_options_come_from_the_setting(settings, sqs_server):
    from django_taskq.brokers import broker_from_url

    settings.TASKQ = {**settings.TASKQ, "BROKER_TRANSPORT_OPTIONS": {
        "region": "eu-west-1", "visibility_timeout": 120, "queue_name_prefix": "celery-",
        "master_name": "ignored-here"}}
    made = broker_from_url(sqs_server.url() + "?wait_time_seconds=2")
    assert isinstance(made, SqsBroker)
    assert (made.options.region, made.options.visibility_timeout) == ("eu-west-1", 120)
    assert made.options.queue_name("default") == "celery-default"
    assert made.options.wait_time_seconds == 2  # the URL's own


def test_celerys_sqs_settings_are_honoured(settings, sqs_server):
    """A Celery project's CELERY_BROKER_URL and CELERY_BROKER_TRANSPORT_OPTIONS, as they are."""
    from django.test import override_settings

    from django_taskq.brokers import broker_from_url
    from django_taskq.conf import get_settings

    celery = {"CELERY_BROKER_URL": sqs_server.url(),
              "CELERY_BROKER_TRANSPORT_OPTIONS": {"region": "eu-west-1", "polling_interval": 3,
                                                  "queue_name_prefix": "celery-"}}
    with override_settings(TASKQ={}, **celery):
        made = broker_from_url(get_settings().BROKER_URL)
        assert (made.options.region, made.options.polling_interval) == ("eu-west-1", 3.0)
        assert made.options.queue_name("celery.high") == "celery-celery-high"


def test_missing_boto3_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(ConfigurationError, match=r"pip install 'django-taskq\[sqs\]'"):
        make("sqs://")


def test_unreachable_endpoint_is_a_connection_error_naming_the_masked_url():
    port = free_port()  # nothing listens there
    broker = make(f"sqs://key:topsecret@127.0.0.1:{port}?connect_timeout=0.5")
    started = time.monotonic()
    with pytest.raises(BrokerConnectionError) as caught:
        broker.enqueue(envelope())
    assert time.monotonic() - started < 10
    text = str(caught.value)
    assert f"sqs://key:****@127.0.0.1:{port}" in text and "topsecret" not in text


def test_predefined_queues_are_used_and_others_refused(url, sqs_server):
    made = make(url)
    client = made.queues.client()
    existing, dead = (client.create_queue(QueueName=unique_prefix() + name)["QueueUrl"]
                      for name in ("given", "dead"))
    made.close()
    with pytest.raises(ConfigurationError, match="must list the dead letter queue too"):
        make(url, transport_options={"predefined_queues": {"default": {"url": existing}}})
    broker = make(url, transport_options={"predefined_queues": {
        "default": {"url": existing}, "taskq-dead": {"url": dead}}})
    sent = envelope()
    broker.enqueue(sent)
    [delivery] = reserve(broker)
    assert delivery.message_id == sent.message_id
    broker.dead_letter(delivery, "bad: test")
    assert [letter.message_id for letter in broker.dead_letter_list()] == [sent.message_id]
    with pytest.raises(ConfigurationError, match="not in the transport option predefined_queues"):
        broker.enqueue(envelope("other"))


# -- leases, delivery counts, dead letters ------------------------------------------------------

def test_heartbeat_extends_the_visibility_of_a_long_task(url):
    worker, other = make(url), make(url)
    worker.enqueue(envelope())
    [held] = reserve(worker, lease=1)
    for _ in range(5):  # 2.5 s of work, over twice the 1 s lease: extended every half second
        time.sleep(0.5)
        worker.extend_leases([held], 1)
        assert reserve(other) == []
    # The worker stops extending (it died): the message comes back to another worker.
    [again] = wait_for_delivery(other, timeout=3)
    assert (again.message_id, again.attempts) == (held.message_id, 2)


def test_killed_workers_message_comes_back_then_is_dead_lettered(url):
    broker = make(url, max_deliveries=2)
    sent = envelope()
    broker.enqueue(sent)
    [first] = reserve(broker, lease=1)  # this worker dies: its message is never settled
    [second] = wait_for_delivery(broker, lease=1)
    assert (second.message_id, second.attempts) == (sent.message_id, 2)
    time.sleep(1.1)  # the second worker dies too: MAX_DELIVERIES (2) deliveries lost
    assert reserve(broker) == []
    [lost] = broker.recover()
    assert lost.message_id == sent.message_id and "died 2 times" in lost.reason
    [letter] = broker.dead_letter_list()
    assert (letter.message_id, letter.attempts, letter.envelope.queue) == (
        sent.message_id, 2, "default")
    assert broker.dead_letter_requeue([letter.id]) == 1
    [back] = reserve(broker)
    assert (back.message_id, back.attempts) == (sent.message_id, 1)
    assert first.tag != second.tag != back.tag


def test_release_defer_and_requeue_count_as_they_should(broker):
    broker.enqueue(envelope())
    [first] = reserve(broker)
    broker.release([first])
    [again] = reserve(broker)
    assert again.attempts == 1
    broker.requeue(again)
    [third] = reserve(broker)
    assert third.attempts == 2
    broker.defer(third, in_(1.2))
    assert reserve(broker) == []
    [due] = wait_for_delivery(broker)
    assert due.attempts == 2


# -- delays ---------------------------------------------------------------------------------------

def test_countdown_waits_in_sqs_with_delay_seconds(broker):
    sent = envelope(eta=in_(1.5))
    broker.enqueue(sent)
    assert reserve(broker) == []
    assert broker.queue_counts(["default"])["default"].scheduled == 1
    [due] = wait_for_delivery(broker)
    assert (due.message_id, due.attempts) == (sent.message_id, 1)


def test_a_long_eta_hops_without_counting_a_delivery(broker):
    far = envelope(eta=in_(3600))
    broker.enqueue(far)  # sent with SQS's longest delay (900 s) and its due time in a header
    assert broker.queue_counts(["default"])["default"].scheduled == 1
    assert reserve(broker) == []
    # What such a message looks like when its 900 s are over and it is still early:
    soon = envelope()
    broker.queues.send("default", [Outgoing(soon, copy_headers(soon, 0, now_ms() + 1500))])
    assert reserve(broker) == []  # received early: sent on with a new delay, not handed out
    counts = broker.queue_counts(["default"])["default"]
    assert (counts.scheduled, counts.in_flight) == (2, 0)
    [due] = wait_for_delivery(broker)
    assert (due.message_id, due.attempts) == (soon.message_id, 1)


# -- FIFO, priorities ---------------------------------------------------------------------------

def test_fifo_keeps_the_order_within_a_message_group(broker):
    sent = [envelope("jobs.fifo", headers={"MessageGroupId": group}) for group in "ABABAB"]
    broker.enqueue_many(sent)
    assert broker.queues.locate("jobs.fifo")[0].endswith(".fifo")
    [a1] = reserve(broker, ["jobs.fifo"], n=1)
    assert a1.message_id == sent[0].message_id
    held = reserve(broker, ["jobs.fifo"])  # group A waits while its first message is in flight
    assert sent[0].message_id not in {d.message_id for d in held}
    assert {d.envelope.headers["MessageGroupId"] for d in held} == {"B"}
    broker.ack_many([a1, *held])
    rest = [a1, *held]
    while len(rest) < 6:
        got = wait_for_delivery(broker, queues=["jobs.fifo"])
        broker.ack_many(got)
        rest += got
    for group in "AB":
        assert [d.message_id for d in rest if d.envelope.headers["MessageGroupId"] == group] == [
            e.message_id for e in sent if e.headers["MessageGroupId"] == group]


def test_fifo_eta_is_held_back_until_due_and_not_counted(broker):
    sent = envelope("later.fifo", eta=in_(1.5))
    broker.enqueue(sent)
    assert reserve(broker, ["later.fifo"]) == []  # early: hidden until due (no delay on FIFO)
    [due] = wait_for_delivery(broker, queues=["later.fifo"])
    assert (due.message_id, due.attempts) == (sent.message_id, 1)


def test_priority_travels_but_does_not_reorder(broker):
    assert broker.supports_priority is False
    low, high = envelope(priority=0), envelope(priority=9)
    broker.enqueue_many([low, high])
    got = reserve(broker)
    assert [d.message_id for d in got] == [low.message_id, high.message_id]
    assert got[1].envelope.priority == 9


def test_apply_async_takes_celerys_message_group_id(settings, url):
    """Celery's ``apply_async(MessageGroupId=…, MessageDeduplicationId=…)`` reaches the queue."""
    from django_taskq.brokers import get_broker
    from tests.testapp.tasks import add

    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": url}
    add.apply_async((1, 2), queue="calls.fifo", MessageGroupId="tenant-7",
                    MessageDeduplicationId="once")
    add.apply_async((1, 2), queue="calls.fifo", MessageGroupId="tenant-7",
                    MessageDeduplicationId="once")  # same id within 5 minutes: dropped by SQS
    [got] = reserve(get_broker(), ["calls.fifo"])
    assert got.envelope.headers["MessageGroupId"] == "tenant-7"
    assert reserve(get_broker(), ["calls.fifo"]) == []
