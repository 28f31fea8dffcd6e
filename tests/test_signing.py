"""Message signing (issue 13): what is signed survives every broker, and a worker with
SIGNING_KEYS runs only messages signed with one of its keys — on every broker."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest
from django.core.management import CommandError, call_command

from django_taskq import AsyncResult, signing
from django_taskq.brokers import get_broker
from django_taskq.exceptions import SignatureError
from tests.helpers import dead_letters, drain, envelope
from tests.testapp import tasks

KEY = b"k" * 32
OLD = b"o" * 32
OTHER = b"x" * 32

#: Header values of every JSON type, as a custom header set by a user would hold them.
ODD_HEADERS = {"int": 7, "big": 2**53 + 1, "negative": -3, "float": 1.5, "round": 30.0,
               "tiny": 1.5e-07, "none": None, "flag": True, "list": [1, "two", None, 2.5],
               "nested": {"b": [1, {"c": None}], "a": "é ü 漢"}, "empty": "", "zero": 0}


def test_signed_headers_survive_a_round_trip_on_every_broker(broker):
    sent = signing.sign(envelope(headers=dict(ODD_HEADERS), timelimit=(30.0, 12.5)), (KEY,),
                        time.time())
    broker.enqueue(sent)
    [delivery] = broker.reserve(["default"], max_messages=1, lease=30, worker="w")
    received = delivery.envelope
    kid = signing.key_id(KEY)
    assert signing.canonical(received, kid, 1) == signing.canonical(sent, kid, 1)
    signing.verify(received, (KEY,), 60, time.time())


# -- sign and verify, without a broker ---------------------------------------------------------

def test_each_refusal_has_its_own_reason():
    now = time.time()
    signed = signing.sign(envelope(), (KEY,), now)
    assert signed.headers[signing.SIGNATURE_HEADER].startswith(f"v1:{signing.key_id(KEY)}:")
    signing.verify(signed, (OLD, KEY), 60, now)  # any listed key verifies
    cases = {
        "unsigned": envelope(),
        "unknown key": signing.sign(envelope(), (OTHER,), now),
        "bad signature": signed.with_headers(retries=1),
        "expired": signing.sign(envelope(), (KEY,), now - 61),
        "signed in the future": signing.sign(envelope(), (KEY,), now + 61 + 60),
    }
    for reason, message in cases.items():
        with pytest.raises(SignatureError) as caught:
            signing.verify(message, (KEY,), 60, now)
        assert caught.value.reason == reason
    body = signed.replace(body=signed.body.replace(b"1", b"7"))
    for changed in (body, signed.replace(content_type="application/x-yaml"),
                    signed.with_headers(**{signing.SIGNATURE_HEADER: "v1:nope"})):
        with pytest.raises(SignatureError, match="bad signature"):
            signing.verify(changed, (KEY,), 60, now)


def test_age_counts_from_the_eta_and_broker_headers_are_not_signed():
    now = time.time()
    eta = datetime.fromtimestamp(now + 500, timezone.utc)
    countdown = signing.sign(envelope(eta=eta), (KEY,), now)
    signing.verify(countdown, (KEY,), 60, now + 530)  # 30 s after its eta: fine
    with pytest.raises(SignatureError, match="expired"):
        signing.verify(countdown, (KEY,), 60, now + 600)
    bookkept = signing.sign(envelope(), (KEY,), now).with_headers(
        **{"x-taskq-attempts": 3, "x-death": [{"count": 1}], "x-delivery-count": 2})
    signing.verify(bookkept, (KEY,), 60, now)
    assert "x-taskq-attempts" not in signing.canonical(bookkept, "k", 1).decode()


def test_the_signature_says_nothing_of_the_key():
    signed = signing.sign(envelope(), (KEY,), time.time())
    assert KEY.decode() not in str(signed.headers) and "k" * 8 not in signing.key_id(KEY)


# -- a worker with SIGNING_KEYS, on every broker ------------------------------------------------

GONE = b"g" * 32
REF = f"{signing.REFUSED}: "


@pytest.fixture
def keyed(configured, settings):
    """SIGNING_KEYS = [KEY, OLD] (KEY signs; OLD, the previous key, still verifies)."""
    settings.TASKQ = {**settings.TASKQ, "SIGNING_KEYS": [KEY, OLD], "SIGNING_MAX_AGE": 3600}
    return configured


def _echo(*args, task_id=None):
    """An unsigned message for the harmless task ``tests.echo``."""
    made = envelope(task="tests.echo", args=args)
    return made.with_headers(id=task_id) if task_id else made


def test_only_messages_signed_with_a_listed_key_run(keyed, make_worker, tmp_path):
    broker, now = get_broker(), time.time()
    good = tasks.add.delay(2, 3)
    zipped = tasks.add.apply_async((3, 4), compression="zlib")  # signed as sent: compressed
    marker = tmp_path / "ran"
    harmless = signing.sign(_echo(str(marker), 1), (KEY,), now)
    tampered_body = signing.sign(envelope(args=(1, 1)), (KEY,), now)
    sent = {
        "rotated": (signing.sign(envelope(args=(4, 4)), (OLD,), now), None),
        "unsigned": (_echo(), "unsigned"),
        "forged": (signing.sign(_echo(), (OTHER,), now), "unknown key"),
        "same id": (signing.sign(_echo(task_id=good.id), (OTHER,), now), "unknown key"),
        "rotated away": (signing.sign(_echo(), (GONE,), now), "unknown key"),
        "task swapped": (harmless.with_headers(task="tests.testapp.tasks.mark"),
                         "bad signature"),
        "args changed": (tampered_body.replace(body=tampered_body.body.replace(b"1", b"9")),
                         "bad signature"),
        "replayed": (signing.sign(envelope(), (KEY,), now - 3700), "expired"),
    }
    broker.enqueue_many([message for message, _ in sent.values()])
    assert AsyncResult(_step_until(make_worker(), lambda: len(dead_letters(broker)) == 7,
                                   sent["rotated"][0])).get(timeout=5) == 8
    assert good.get(timeout=5) == 5  # signed by delay(); not overwritten by "same id"
    assert zipped.get(timeout=5) == 7
    letters = dict(dead_letters(broker))
    for name, (message, reason) in sent.items():
        if reason is None:
            continue
        assert letters.get(message.message_id, "").startswith(REF + reason), name
        if name != "same id":
            assert not AsyncResult(message.message_id).known, name  # no FAILURE stored
    assert not marker.exists()  # the changed task name did not run
    assert len(letters) == len(sent) - 1


def _step_until(worker, done, last, rounds=300):
    """Step ``worker`` until ``done()`` and the message ``last`` has a result; its id."""
    result = AsyncResult(last.message_id)
    for _ in range(rounds):
        if done() and result.ready():
            return last.message_id
        worker.step()
    raise AssertionError("the worker did not get through the messages")


def test_retries_workflows_and_beat_send_signed_messages(keyed, make_worker, monkeypatch):
    from django_taskq import chain, chord
    from django_taskq.beat.models import IntervalSchedule, PeriodicTask
    from django_taskq.beat.scheduler import Scheduler
    from django_taskq.clock import Clock as TaskqClock
    from tests.testapp import canvas_tasks as ct
    from tests.testapp import feature_tasks as ft

    retried = ft.retry_with_new_args.delay(0)  # sent again twice, with new arguments
    chained = chain(ct.add.s(1, 2), ct.add.s(3), ct.mul.s(2)).delay()
    chorded = chord([ct.add.s(i, i) for i in range(3)], ct.tsum.s()).delay()
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=2)
    moment = {"now": start}
    monkeypatch.setattr("django.utils.timezone.now", lambda: moment["now"])
    schedule = IntervalSchedule.objects.create(every=1, period="minutes")
    periodic = PeriodicTask.objects.create(name="signed-beat", task="tests.testapp.tasks.add",
                                           interval=schedule, args=[20, 22], anchor=start)
    moment["now"] = start + timedelta(minutes=1, seconds=1)
    Scheduler(clock=TaskqClock(now=lambda: moment["now"])).tick()
    monkeypatch.undo()
    beat_id = PeriodicTask.objects.get(pk=periodic.pk).last_task_id
    assert beat_id
    worker = make_worker()
    for result in (retried, chained, chorded, AsyncResult(beat_id)):
        drain(worker, result)
    assert retried.get(timeout=5) == {"n": 2, "retries": 2}
    assert chained.get(timeout=5) == 12
    assert chorded.get(timeout=5) == 6
    assert AsyncResult(beat_id).get(timeout=5) == 42
    assert dead_letters(get_broker()) == []


def test_requeue_signs_again_but_never_launders_a_refused_message(keyed, make_worker, settings):
    from django_taskq import deadletters

    broker, now = get_broker(), time.time()
    forged = signing.sign(_echo(), (OTHER,), now)
    misfit = signing.sign(envelope(args=(1, 2, 3)), (KEY,), now - 600)  # arguments do not fit
    broker.enqueue_many([forged, misfit])
    _step_until(make_worker(), lambda: len(dead_letters(broker)) == 2, misfit)
    ids = {letter.envelope.message_id: letter.id for letter in broker.dead_letter_list(10)}
    with pytest.raises(deadletters.RequeueRefused, match="unknown key") as refused:
        deadletters.requeue([ids[misfit.message_id], ids[forged.message_id]])
    assert "Purge" in str(refused.value) and len(dead_letters(broker)) == 2
    with pytest.raises(CommandError, match=f"{ids[forged.message_id]}: signature refused"):
        call_command("taskq", "dead", "requeue", ids[forged.message_id])
    assert deadletters.requeue(None) == 1  # the refused one stays
    assert [m for m, _ in dead_letters(broker)] == [forged.message_id]
    [back] = broker.reserve(["default"], max_messages=1, lease=30, worker="w")
    assert back.envelope.message_id == misfit.message_id
    signed_at = int(back.envelope.headers[signing.SIGNATURE_HEADER].split(":")[2])
    assert signed_at >= int(now)  # a fresh signature, not the old one
    signing.verify(back.envelope, (KEY,), 60, time.time())
    settings.TASKQ = {**settings.TASKQ, "SIGNING_KEYS": []}  # signing off: still refused
    with pytest.raises(deadletters.RequeueRefused):
        deadletters.requeue([ids[forged.message_id]], broker)


def test_eager_runs_neither_sign_nor_verify(settings):
    settings.TASKQ = {**settings.TASKQ, "SIGNING_KEYS": [KEY], "TASK_ALWAYS_EAGER": True}
    assert tasks.add.delay(1, 2).get(timeout=1) == 3


@pytest.mark.parametrize("broker_kind", ["memory"])
def test_what_publish_receivers_change_is_signed(keyed, make_worker):
    from django_taskq import signals

    seen = []

    def before(sender, headers, body, **kwargs):
        seen.append(body[0])  # decoded, also when the message is compressed
        headers["tenant"] = "a"  # signed: the seal comes after the signal

    signals.before_task_publish.connect(before, weak=False)
    try:
        result = tasks.whoami.apply_async(compression="zlib")
    finally:
        signals.before_task_publish.disconnect(before)
    drain(make_worker(), result)
    assert seen == [[]] and result.get(timeout=5)["id"] == result.id


def test_hostile_headers_are_refused_not_raised():
    now = time.time()
    signed = signing.sign(envelope(), (KEY,), now)
    for headers in ([], None, {**signed.headers, 1: "int key"},
                    {**signed.headers, "odd": object()}):
        with pytest.raises(SignatureError):
            signing.verify(signed.replace(headers=headers), (KEY,), 60, now)
