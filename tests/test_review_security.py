"""Adversarial review of issue 13: messages a stranger writes to the broker are refused, never
raised (a raise stops the worker, and the message comes back to stop the next one), and
values that differ are never signed alike."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timezone

import pytest
from pydantic import BaseModel, ValidationError

from django_taskq import message, nesting, serializers, signing
from django_taskq.brokers import get_broker
from django_taskq.brokers.redis import from_wire
from django_taskq.exceptions import ContentDisallowed, MessageError, SignatureError
from django_taskq.task import build_task
from tests.helpers import dead_letters, envelope
from tests.testapp import tasks

KEY = b"k" * 32
KID = signing.key_id(KEY)
MEMORY = pytest.mark.parametrize("broker_kind", ["memory"])

#: Signature headers a stranger may write: each once raised out of verify (ValueError from
#: int("²"), TypeError from compare_digest on non-ASCII text).
MALFORMED = (f"v1:{KID}:²:{'a' * 64}", f"v1:{KID}:{int(time.time())}:{'é' * 64}",
             f"v1:{KID}:١٢٣:{'a' * 64}", f"v1:{KID}:1:{'A' * 64}\n")


def _deep(levels: int) -> list:
    value: list = []
    for _ in range(levels):
        value = [value]
    return value


def test_malformed_signature_headers_are_refusals():
    signed = signing.sign(envelope(), (KEY,), time.time())
    for value in MALFORMED:
        with pytest.raises(SignatureError, match="bad signature"):
            signing.verify(signed.with_headers(**{signing.SIGNATURE_HEADER: value}), (KEY,), 60,
                           time.time())


def test_headers_nested_past_the_recursion_limit_are_a_refusal():
    signed = signing.sign(envelope(), (KEY,), time.time())
    deep = signed.with_headers(deep=_deep(sys.getrecursionlimit() + 10))
    with pytest.raises(SignatureError, match="bad signature"):
        signing.verify(deep, (KEY,), 60, time.time())


def test_a_timestamp_header_never_signs_like_its_text():
    """An AMQP header table holds timestamps; written as their text they signed the same as
    a string header, so one could be swapped for the other."""
    when = datetime(2026, 12, 1, 4, 0, 0)
    signed = signing.sign(envelope(headers={"when": when.isoformat()}), (KEY,), time.time())
    with pytest.raises(SignatureError, match="bad signature"):
        signing.verify(signed.with_headers(when=when), (KEY,), 60, time.time())
    with pytest.raises(MessageError, match="cannot be signed"):
        signing.sign(envelope(headers={"when": when}), (KEY,), time.time())


@MEMORY
def test_a_worker_dead_letters_malformed_signatures_and_keeps_going(configured, settings,
                                                                    make_worker):
    settings.TASKQ = {**settings.TASKQ, "SIGNING_KEYS": [KEY]}
    broker, now = get_broker(), time.time()
    bad = [signing.sign(envelope(), (KEY,), now).with_headers(**{signing.SIGNATURE_HEADER: v})
           for v in MALFORMED]
    bad.append(signing.sign(envelope(), (KEY,), now).with_headers(deep=_deep(5000)))
    broker.enqueue_many(bad)
    good = tasks.add.delay(2, 3)
    worker = make_worker()
    for _ in range(50):
        if good.ready():
            break
        worker.step()
    assert good.get(timeout=5) == 5
    letters = dict(dead_letters(broker))
    assert {m.message_id for m in bad} == set(letters)
    assert all(r.startswith(f"{signing.REFUSED}: bad signature") for r in letters.values())


def test_a_content_type_that_is_not_text_is_refused_not_raised():
    for odd in (["application/json"], {"a": 1}):
        with pytest.raises(ContentDisallowed):
            serializers.accepted(odd, ("json",))  # type: ignore[arg-type]
        with pytest.raises(ContentDisallowed):
            message.decode(envelope().replace(content_type=odd), ("json",))


@MEMORY
def test_an_unsigned_worker_dead_letters_a_list_content_type(configured, make_worker):
    broker = get_broker()
    odd = envelope().replace(content_type=["application/json"])
    broker.enqueue(odd)
    good = tasks.add.delay(1, 1)
    worker = make_worker()
    for _ in range(50):
        if good.ready():
            break
        worker.step()
    assert good.get(timeout=5) == 2
    assert "Refusing content" in dict(dead_letters(broker))[odd.message_id]


def test_a_redis_message_nested_past_the_recursion_limit_is_malformed_not_raised():
    raw = '{"body": "", "headers": ' + "[" * 100_000 + "]" * 100_000 + "}"
    received = from_wire(raw, "default")
    assert received.content_type == "application/x-unknown" and received.headers == {}


class _Counted(list):
    """A list that counts how often it is walked."""

    walks = 0

    def __iter__(self):
        type(self).walks += 1
        return super().__iter__()


def test_shared_lists_are_walked_once_for_their_depth():
    """YAML aliases share one list many times ("billion laughs"): 2**20 paths, 21 lists."""
    _Counted.walks = 0
    value: list = _Counted(["x"])
    for _ in range(20):
        value = _Counted([value, value])
    nesting.check_value(value, 128)
    assert _Counted.walks == 21
    looped: list = []
    looped.append(looped)  # YAML's "&a [*a]"
    with pytest.raises(Exception, match="JSON_MAX_DEPTH"):
        nesting.check_value(looped, 128)
    laughs = "a: &a [x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(16))
    assert len(serializers.loads(laughs.encode(), "application/x-yaml", accept=("yaml",))) == 17


class Card(BaseModel):
    number: int


def test_a_sensitive_pydantic_task_fails_without_its_input_in_the_error():
    def pay(card: Card) -> int:
        return card.number

    secret = "SECRET-4242-4242"
    hidden = build_task(pay, pydantic=True, sensitive=True, name="tests.review.pay_hidden")
    shown = build_task(pay, pydantic=True, name="tests.review.pay_shown")
    with pytest.raises(ValidationError) as caught:
        hidden.apply(({"number": secret},), throw=True)
    assert secret not in str(caught.value) and "number" in str(caught.value)
    assert secret not in json.dumps(caught.value.errors(), default=str)
    stored = hidden.apply(({"number": secret},))  # what a failure keeps: message, traceback
    assert stored.failed() and secret not in f"{stored.result!r} {stored.traceback}"
    with pytest.raises(ValidationError, match=secret):  # not sensitive: pydantic's own text
        shown.apply(({"number": secret},), throw=True)


@pytest.mark.parametrize("broker_kind", ["sqlite"])
def test_a_stranger_s_letter_recovered_after_lost_workers_records_and_sends_nothing(
        configured, settings, make_worker):
    """The attempts count and the lease are bookkeeping, not signed: whoever can write the
    message table can hand the heartbeat a forged message as 'worker lost N times'. Its id is
    a stranger's and its errbacks would go out signed by this worker."""
    from django_taskq import AsyncResult
    from django_taskq.models import QueuedMessage

    settings.TASKQ = {**settings.TASKQ, "SIGNING_KEYS": [KEY]}
    broker, now = get_broker(), time.time()
    victim = tasks.add.delay(1, 2)
    worker = make_worker()
    for _ in range(50):
        if victim.ready():
            break
        worker.step()
    errbacks = [dict(tasks.tsum.s())]  # old-style: sent as a message
    forged = signing.sign(envelope(errbacks=errbacks).with_headers(id=victim.id), (b"x" * 32,),
                          now)
    fresh = signing.sign(envelope(errbacks=errbacks), (b"x" * 32,), now)
    genuine = signing.sign(envelope(errbacks=errbacks), (KEY,), now)
    broker.enqueue_many([forged, fresh, genuine])
    QueuedMessage.objects.update(state="reserved", attempts=broker.max_deliveries,
                           locked_until=datetime(2000, 1, 1, tzinfo=timezone.utc))
    worker.heartbeat.beat()
    assert len(dead_letters(broker)) == 3  # all moved: the broker's part
    assert victim.get(timeout=5) == 3  # not overwritten by WorkerLostError
    assert not AsyncResult(fresh.message_id).known  # nothing under a stranger's id
    assert AsyncResult(genuine.message_id).state == "FAILURE"
    assert broker.size("default") == 1  # the genuine letter's errback only


def test_settings_refuse_secret_key_as_a_signing_key_and_a_nan_max_age(settings):
    from django_taskq.conf import find_problems

    secret = "s" * 40
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = secret, ["f" * 40]
    for keys in ([secret], [KEY, ("f" * 40).encode()]):
        [problem] = find_problems({"SIGNING_KEYS": keys})
        assert "never SECRET_KEY" in str(problem) and secret not in str(problem)
    assert not find_problems({"SIGNING_KEYS": [KEY]})
    [problem] = find_problems({"SIGNING_MAX_AGE": float("nan")})  # nan > max_age: never
    assert "SIGNING_MAX_AGE" in str(problem)


def test_a_password_holding_a_question_mark_or_hash_is_masked():
    from django_taskq.service_url import mask, mask_text

    for url, masked in (("redis://:pa?ss@host:6379/0", "redis://:****@host:6379/0"),
                        ("redis://:pa#ss@host/0", "redis://:****@host/0"),
                        ("amqp://guest:g?x@h1;amqp://guest:g#y@h2",
                         "amqp://guest:****@h1;amqp://guest:****@h2"),
                        ("redis://host:6379/0?x=a@b", "redis://host:6379/0?x=a@b")):
        assert mask(url) == masked
    assert mask_text("cannot reach redis://:pa?ss@host:6379/0") == \
        "cannot reach redis://:****@host:6379/0"
