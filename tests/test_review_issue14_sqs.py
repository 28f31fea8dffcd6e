"""Review of the SQS broker (issue 14): bugs a Celery SQS user would meet, each against a real
SQS-compatible server (moto's server mode, the session's ``sqs_server`` from conftest)."""

from __future__ import annotations

import time

import pytest

from django_taskq.brokers.amqp_delay import now_ms
from django_taskq.brokers.amqp_wire import copy_headers
from django_taskq.brokers.sqs import SqsBroker, from_url
from django_taskq.brokers.sqs_queues import Outgoing
from django_taskq.exceptions import BrokerError, MessageTooLarge
from django_taskq.message import retry_envelope
from django_taskq.service_url import parse
from tests.helpers import envelope
from tests.sqsserver import unique_prefix

pytestmark = [pytest.mark.own_server, pytest.mark.network_broker]


@pytest.fixture
def broker(sqs_server):
    made = from_url(parse(sqs_server.url(queue_name_prefix=unique_prefix(), wait_time_seconds=0),
                          setting="BROKER_URL"), poll_interval=0.05, max_deliveries=1)
    yield made
    made.close()


def reserve(broker: SqsBroker, queues=("default",), lease: float = 30.0):
    return broker.reserve(list(queues), max_messages=10, lease=lease, worker="w")


def test_a_retry_on_a_fifo_queue_is_not_dropped_as_a_duplicate(broker):
    """apply_async(MessageDeduplicationId=…) on a FIFO queue, then self.retry(): the retry is a
    new message (Celery gives it a fresh deduplication id); sent within SQS's five-minute window
    with the original's id it was silently dropped, and the task lost."""
    sent = envelope("jobs.fifo", headers={"MessageGroupId": "g", "MessageDeduplicationId": "once"})
    broker.enqueue_many([sent])
    [got] = reserve(broker, ["jobs.fifo"])
    broker.enqueue_many([retry_envelope(got.envelope, eta=None)])
    broker.ack_many([got])
    [again] = reserve(broker, ["jobs.fifo"])
    assert again.envelope.message_id == sent.message_id
    assert again.envelope.headers["retries"] == 1


def test_a_message_over_sqs_size_limit_is_refused_before_anything_is_sent(broker):
    """kombu's wrapping makes a message ~1.8 times its body: one over SQS's 1 MiB is refused
    with MessageTooLarge naming the limit, and none of the batch is sent."""
    small = envelope()
    big = envelope().replace(body=b"x" * 700_000)
    with pytest.raises(MessageTooLarge, match=r"SQS.*1048576 bytes.*MESSAGE_MAX_BYTES"):
        broker.enqueue_many([small, big])
    assert broker.size("default") == 0


def test_a_failed_dead_letter_send_in_a_reserve_leaves_no_duplicate_hop(broker, sqs_server):
    """One receive holds an early message (a hop: copy sent, original deleted) and a message
    to dead-letter; the dead letter queue cannot be written. The hop's original must be gone
    anyway, or it comes back and hops again: two copies, the task run twice."""
    dead_url, _ = broker.queues.locate("", dead=True)
    broker.queues.locate("default")
    broker.enqueue_many([envelope()])
    [lost] = reserve(broker, lease=1)  # its worker "dies": received again, it is dead (max 1)
    early = envelope()
    broker.queues.send("default", [Outgoing(early, copy_headers(early, 0, now_ms() + 3_600_000))])
    broker.queues.client().delete_queue(QueueUrl=dead_url)  # the dead letter send now fails
    time.sleep(1.1)
    with pytest.raises(BrokerError):
        reserve(broker, lease=30)
    url, key = broker.queues.locate("default")
    visible, delayed, hidden = broker.queues.counts(url, key)
    assert (visible, delayed, hidden) == (0, 1, 1)  # the hop's copy; the lost one, not settled


def test_a_lease_that_cannot_be_extended_past_12_hours_is_logged(broker, caplog):
    """SQS keeps a message in flight 12 hours at most (moto counts from its sending): the
    heartbeat's extension past that is refused and the message will run twice. That was
    silent on AWS; on moto the whole batch failed, so the other leases were not extended."""
    broker.enqueue_many([envelope()])
    time.sleep(1.2)
    broker.enqueue_many([envelope()])
    held = reserve(broker, lease=1)
    assert len(held) == 2
    with caplog.at_level("WARNING", logger="django_taskq.brokers.sqs_queues"):
        broker.extend_leases(held, 43_199)  # over 12 h for the first one only
    assert "12 hours" in caplog.text and "1 message" in caplog.text
    time.sleep(1.1)
    counts = broker.queue_counts(["default"])["default"]
    assert (counts.depth, counts.in_flight) == (1, 1)  # the first one back; the second held


def test_listing_dead_letters_ends_when_the_scan_outlasts_their_hiding(broker, monkeypatch):
    """Listing receives every dead letter, each hidden SCAN_HIDE seconds: a scan longer than
    that (a large dead letter queue) received the first ones again, for ever. SCAN_HIDE 0 is
    such a scan in miniature."""
    import threading

    from django_taskq.brokers import sqs_dead

    for _ in range(3):
        broker.enqueue_many([envelope()])
        [got] = reserve(broker)
        broker.dead_letter(got, "bad")
    monkeypatch.setattr(sqs_dead, "SCAN_HIDE", 0)
    listed: list[int] = []
    thread = threading.Thread(target=lambda: listed.append(len(broker.dead_letter_list())),
                              daemon=True)
    thread.start()
    thread.join(5)
    assert listed == [3]


def test_a_malformed_region_is_a_configuration_error_naming_the_option(sqs_server):
    """A region boto3 cannot use ('eu west 1', a typo'd underscore form) raised botocore's own
    InvalidRegionError at the first send; it is a ConfigurationError naming the option."""
    from django_taskq.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"region.*'eu_west 1'"):
        made = from_url(parse(sqs_server.url(region="eu_west%201"), setting="BROKER_URL"),
                        poll_interval=0.05)
        made.enqueue_many([envelope()])


def test_predefined_queues_take_a_region_each_as_celery_does(sqs_server):
    """kombu reads a 'region' in each predefined_queues entry (queues in several regions); it
    was ignored, so a queue in another region than the broker's did not exist."""
    import boto3

    client = boto3.client("sqs", region_name="eu-west-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing",
                          endpoint_url=f"http://127.0.0.1:{sqs_server.port}")
    prefix = unique_prefix()
    urls = {name: client.create_queue(QueueName=prefix + name)["QueueUrl"]
            for name in ("work", "dead")}
    made = from_url(parse(sqs_server.url(wait_time_seconds=0), setting="BROKER_URL"),
                    poll_interval=0.05, transport_options={
                        "region": "us-east-1", "dead_letter_queue": "dead",
                        "predefined_queues": {name: {"url": url, "region": "eu-west-1"}
                                              for name, url in urls.items()}})
    try:
        made.enqueue_many([envelope("work")])
        [got] = reserve(made, ["work"])
        made.dead_letter(got, "bad")
        assert made.dead_letter_count() == 1
    finally:
        made.close()


def test_a_chain_on_a_fifo_queue_keeps_its_next_steps(settings, sqs_server):
    """A chain's options reach every step here (unlike Celery's, which reach the first only):
    with MessageDeduplicationId among them each next step was sent with the first one's id,
    and SQS dropped it within five minutes: the chain stopped after its first task."""
    import json

    from django_taskq import chain, signature
    from django_taskq.brokers import get_broker
    from tests.testapp.tasks import add

    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": sqs_server.url(
        queue_name_prefix=unique_prefix(), wait_time_seconds=0)}
    chain(add.s(1, 2), add.s(3)).apply_async(queue="steps.fifo", MessageGroupId="g",
                                            MessageDeduplicationId="once")
    [first] = reserve(get_broker(), ["steps.fifo"])
    [step] = json.loads(first.envelope.body)[2]["chain"]
    signature(step).apply_async((3,))  # as the worker sends it: the first result added
    get_broker().ack_many([first])
    [second] = reserve(get_broker(), ["steps.fifo"])
    assert second.envelope.message_id == step["options"]["task_id"]


def test_status_counts_a_queue_not_in_predefined_queues_as_empty(sqs_server):
    """``taskq status``, /metrics and the dashboard count DEFAULT_QUEUE and the workers'
    queues: with predefined_queues that do not list one of them, counting raised (the whole
    status failed); such a queue does not exist for us: empty. Consuming it stays an error."""
    import boto3

    from django_taskq.exceptions import ConfigurationError

    client = boto3.client("sqs", region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing",
                          endpoint_url=f"http://127.0.0.1:{sqs_server.port}")
    prefix = unique_prefix()
    urls = {name: client.create_queue(QueueName=prefix + name)["QueueUrl"]
            for name in ("work", "taskq-dead")}
    made = from_url(parse(sqs_server.url(wait_time_seconds=0), setting="BROKER_URL"),
                    poll_interval=0.05, transport_options={
                        "predefined_queues": {name: {"url": url} for name, url in urls.items()}})
    try:
        made.enqueue_many([envelope("work")])
        counts = made.queue_counts(["celery", "work"])
        assert (counts["celery"].depth, counts["work"].depth) == (0, 1)
        assert made.size("celery") == 0
        with pytest.raises(ConfigurationError, match="predefined_queues"):
            reserve(made, ["celery"])
    finally:
        made.close()


def test_a_queue_with_a_smaller_maximum_message_size_refuses_before_sending(sqs_server):
    """Queues made before 2025 (and Celery's) often say MaximumMessageSize 262144: a message
    over it is refused by the queue's own limit, before any of its batch is sent (SQS's
    refusal came after the batch's first messages had gone)."""
    made = from_url(parse(sqs_server.url(queue_name_prefix=unique_prefix(), wait_time_seconds=0),
                          setting="BROKER_URL"), poll_interval=0.05, transport_options={
                              "sqs-creation-attributes": {"MaximumMessageSize": "262144"}})
    try:
        with pytest.raises(MessageTooLarge, match=r"MaximumMessageSize.*262144 bytes"):
            made.enqueue_many([envelope(), envelope().replace(body=b"x" * 200_000)])
        assert made.size("default") == 0
    finally:
        made.close()


def test_a_heartbeat_failing_on_one_queue_still_extends_the_others(broker):
    """One queue's ChangeMessageVisibilityBatch fails (the queue was deleted under the worker):
    the leases on the other queues were not extended, so their tasks ran twice."""
    broker.enqueue_many([envelope("gone"), envelope("kept")])
    held = reserve(broker, ["gone"], lease=1) + reserve(broker, ["kept"], lease=1)
    assert len(held) == 2
    gone_url, _ = broker.queues.locate("gone")
    broker.queues.client().delete_queue(QueueUrl=gone_url)
    with pytest.raises(BrokerError):
        broker.extend_leases(held, 30)
    time.sleep(1.1)
    counts = broker.queue_counts(["kept"])["kept"]
    assert (counts.depth, counts.in_flight) == (0, 1)


def test_a_release_failing_on_one_queue_leaves_no_duplicate_on_another(broker):
    """A stopping worker releases messages of two queues; sending to the second fails. The
    first queue's copies were sent but their originals not deleted: each came back too."""
    broker.enqueue_many([envelope("first"), envelope("second")])
    held = reserve(broker, ["first"], lease=30) + reserve(broker, ["second"], lease=30)
    assert len(held) == 2
    second_url, _ = broker.queues.locate("second")
    broker.queues.client().delete_queue(QueueUrl=second_url)
    with pytest.raises(BrokerError):
        broker.release(held)
    counts = broker.queue_counts(["first"])["first"]
    assert (counts.depth, counts.in_flight) == (1, 0)  # the copy only


def test_a_dead_letter_requeue_failing_on_one_queue_keeps_no_duplicate(broker):
    """Requeueing dead letters of two queues, the second send fails: the first queue's letters
    were sent back but stayed in the dead letter queue, to be requeued (run) again."""
    for queue in ("first", "second"):
        broker.enqueue_many([envelope(queue)])
        [got] = reserve(broker, [queue])
        broker.dead_letter(got, "bad")
    second_url, _ = broker.queues.locate("second")
    broker.queues.client().delete_queue(QueueUrl=second_url)
    with pytest.raises(BrokerError):
        broker.dead_letter_requeue()
    assert [letter.envelope.queue for letter in broker.dead_letter_list()] == ["second"]
    assert broker.size("first") == 1
