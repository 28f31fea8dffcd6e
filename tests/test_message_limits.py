"""MESSAGE_MAX_BYTES (issue 13): a clear error to the caller at enqueue, nothing sent; a dead letter
with the reason at the worker; a retry or next step too large fails its task — on every broker."""

from __future__ import annotations

import time
import uuid

import pytest

from django_taskq import AsyncResult, chain, deadletters, group, signing, states, task
from django_taskq.brokers import get_broker
from django_taskq.exceptions import MessageTooLarge
from tests.helpers import dead_letters, drain, envelope
from tests.testapp import canvas_tasks as ct
from tests.testapp import tasks

LIMIT = 2000
BIG = "x" * 3000
KEY = b"k" * 32


@task(name="limits.grow", bind=True)
def grow(self, text):
    """Retries once with arguments over the limit."""
    if len(text) < LIMIT:
        raise self.retry(args=(BIG,), countdown=0)
    return len(text)


@task(name="limits.big")
def big():
    return BIG


@pytest.fixture
def limited(configured, settings):
    settings.TASKQ = {**settings.TASKQ, "MESSAGE_MAX_BYTES": LIMIT}
    return configured


# Checked before any broker is asked: three of them show it.
@pytest.mark.parametrize("broker_kind", ["memory", "sqlite", "redis"])
def test_enqueue_over_the_limit_is_an_error_and_sends_nothing(limited):
    task_id = str(uuid.uuid4())
    with pytest.raises(MessageTooLarge, match=r"over MESSAGE_MAX_BYTES \(2000 bytes\)") as caught:
        tasks.echo.apply_async((BIG,), task_id=task_id)
    assert "tests.echo" in str(caught.value) and "bytes" in str(caught.value)
    with pytest.raises(MessageTooLarge, match="MESSAGE_MAX_BYTES"):
        group(tasks.echo.s("small"), tasks.echo.s(BIG)).delay()  # all or nothing
    assert get_broker().size("default") == 0
    assert not AsyncResult(task_id).known


def test_a_retry_or_next_step_over_the_limit_fails_its_task(limited, make_worker):
    retried, chained = grow.delay("small"), chain(big.s(), ct.add.s("y")).delay()
    worker = make_worker()
    drain(worker, retried)
    drain(worker, chained.parent)
    for result in (retried, chained.parent):
        assert result.state == states.FAILURE
        with pytest.raises(MessageTooLarge, match="MESSAGE_MAX_BYTES"):
            result.get(timeout=5)


@pytest.mark.parametrize("keys", [[], [KEY]], ids=["unsigned", "signed"])
def test_a_message_over_the_limit_is_dead_lettered_by_the_worker(limited, make_worker, settings,
                                                                 keys):
    settings.TASKQ = {**settings.TASKQ, "SIGNING_KEYS": keys}
    broker = get_broker()
    huge = envelope(task="tests.echo", args=(BIG,))
    if keys:
        huge = signing.sign(huge, keys, time.time())
    broker.enqueue(huge)
    good = tasks.add.delay(1, 2)
    drain(make_worker(), good)
    [(dead_id, reason)] = dead_letters(broker)
    assert dead_id == huge.message_id
    assert reason.startswith("message too large") and "MESSAGE_MAX_BYTES (2000 bytes)" in reason
    # Signing on, its id is not verified before the size check: nothing is written under it.
    assert AsyncResult(huge.message_id).known is not bool(keys)
    # Requeued it would only come back: refused while the limit stands.
    [letter] = broker.dead_letter_list(10)
    with pytest.raises(deadletters.RequeueRefused, match="over MESSAGE_MAX_BYTES"):
        deadletters.requeue([letter.id], broker)
    assert deadletters.requeue(None, broker) == 0 and len(dead_letters(broker)) == 1
