"""The Signal class: every way Celery and Django connect receivers, sender matching, robustness."""

from __future__ import annotations

import gc
import logging

import pytest
from django.dispatch import receiver as django_receiver

from django_taskq import signals
from django_taskq.signals import Signal, send

#: Every signal of Celery's that has a meaning here (CELERY.md §1.16).
CELERY_SIGNALS = [
    "before_task_publish", "after_task_publish", "task_received", "task_prerun", "task_postrun",
    "task_success", "task_retry", "task_failure", "task_internal_error", "task_revoked",
    "task_rejected", "task_unknown", "celeryd_init", "celeryd_after_setup", "import_modules",
    "worker_init", "worker_before_create_process", "worker_process_init",
    "worker_process_shutdown", "worker_ready", "worker_shutting_down", "worker_shutdown",
    "heartbeat_sent", "setup_logging", "after_setup_logger", "after_setup_task_logger",
    "beat_init", "beat_embedded_init",
]


@pytest.fixture
def sig():
    return Signal("test_signal")


def value(text: str) -> str:
    """An equal string that is a different object (as a sender built at run time is)."""
    made = "".join(list(text))
    assert made == text and made is not text
    return made


@pytest.mark.parametrize("name", CELERY_SIGNALS)
def test_every_celery_signal_is_defined_and_named(name):
    signal = getattr(signals, name)
    assert isinstance(signal, Signal) and signal.name == name
    assert name in signals.__all__


def test_connect_with_the_receiver_returns_it(sig):
    calls = []

    def on(sender, **kwargs):
        calls.append((sender, kwargs))

    assert sig.connect(on) is on
    send(sig, "me", extra=1)
    assert calls == [("me", {"signal": sig, "extra": 1})]


def test_bare_decorator_keeps_the_function_and_its_receiver_alive(sig):
    calls = []

    @sig.connect
    def on(sender, **kwargs):
        calls.append(sender)

    gc.collect()
    assert callable(on)  # the name is the function, not None (Django's connect returns None)
    send(sig, "once")
    assert calls == ["once"]


def test_decorator_with_arguments_connects_for_that_sender(sig):
    calls, task_a, task_b = [], object(), object()

    @sig.connect(sender=task_a)
    def on(sender, **kwargs):
        calls.append(sender)

    gc.collect()
    assert callable(on)
    send(sig, task_b)
    send(sig, task_a)
    assert calls == [task_a]


def test_strong_reference_and_dispatch_uid(sig):
    calls = []

    def make():
        def on(sender, **kwargs):
            calls.append(sender)
        return on

    sig.connect(weak=False, dispatch_uid="one")(make())
    sig.connect(make(), weak=False, dispatch_uid="one")  # same uid: not connected twice
    gc.collect()  # no name holds either function: the strong reference keeps the first
    send(sig, "x")
    assert calls == ["x"]
    assert sig.disconnect(dispatch_uid="one")
    send(sig, "y")
    assert calls == ["x"]


def test_weak_receiver_nobody_keeps_is_dropped(sig):
    calls = []
    sig.connect(lambda sender, **kwargs: calls.append(sender))
    gc.collect()
    send(sig, "x")
    assert calls == []


def test_positional_options_in_djangos_order(sig):
    calls, owner = [], object()

    def on(sender, **kwargs):
        calls.append(sender)

    assert sig.connect(on, owner, False, "uid") is on
    send(sig, object())
    send(sig, owner)
    assert calls == [owner]


def test_string_senders_match_by_value(sig):
    calls = []

    @sig.connect(sender="proj.tasks.add")
    def on(sender, **kwargs):
        calls.append(sender)

    send(sig, value("proj.tasks.add"))
    send(sig, "proj.tasks.mul")
    assert calls == ["proj.tasks.add"]
    assert sig.has_listeners(value("proj.tasks.add"))
    assert not sig.has_listeners("proj.tasks.mul")
    assert sig.send(value("proj.tasks.add"))  # Django's send, too
    assert sig.disconnect(on, sender=value("proj.tasks.add"))
    send(sig, "proj.tasks.add")
    assert calls == ["proj.tasks.add", "proj.tasks.add"]


def test_djangos_receiver_decorator_still_works(sig):
    other, calls = Signal("other"), []

    @django_receiver([sig, other], sender="host@a")
    def on(sender, signal, **kwargs):
        calls.append((signal.name, sender))

    gc.collect()
    send(sig, value("host@a"))
    send(other, value("host@a"))
    send(other, "host@b")
    assert calls == [("test_signal", "host@a"), ("other", "host@a")]


def test_bad_receivers_are_refused_at_connect_time(sig):
    with pytest.raises(TypeError, match="sender=..."):
        sig.connect("proj.tasks.add")
    with pytest.raises(ValueError, match=r"\*\*kwargs"):
        sig.connect(lambda sender: None)
    with pytest.raises(ValueError, match=r"\*\*kwargs"):
        sig.connect(sender="x")(lambda sender: None)


def test_a_failing_receiver_is_logged_and_the_others_still_run(sig, caplog):
    calls = []

    @sig.connect
    def broken(sender, **kwargs):
        raise RuntimeError("receiver bug")

    @sig.connect
    def fine(sender, **kwargs):
        calls.append(sender)

    with caplog.at_level(logging.ERROR):
        responses = send(sig, "x")
    assert calls == ["x"]
    assert isinstance(dict(responses)[broken], RuntimeError)
    assert "receiver bug" in caplog.text and "test_signal" in caplog.text


def test_no_receivers_is_one_look_up(sig, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("send_robust called with no receivers")

    monkeypatch.setattr(sig, "send_robust", never)
    assert send(sig, "x", a=1) == ()


def test_retry_calls_the_receiver_until_it_succeeds(sig, monkeypatch, caplog):
    waited, attempts = [], []
    monkeypatch.setattr(signals, "_sleep", waited.append)

    @sig.connect(retry=True)
    def flaky(sender, **kwargs):
        attempts.append(sender)
        if len(attempts) < 4:
            raise ConnectionError("not yet")
        return "done"

    gc.collect()
    assert not hasattr(flaky, "__wrapped__")  # the module keeps the plain function
    assert [response for _, response in send(sig, "x")] == ["done"]
    assert attempts == ["x"] * 4 and waited == [2.0, 4.0, 6.0]
    assert "retrying in 2s" in caplog.text
    assert sig.disconnect(flaky)  # found by the plain function, as in Celery
    assert send(sig, "x") == ()


def test_retry_interval_stops_growing_at_thirty_seconds(sig, monkeypatch):
    waited = []
    monkeypatch.setattr(signals, "_sleep", waited.append)
    failures = iter(range(20))

    def flaky(sender, **kwargs):
        if next(failures) < 19:
            raise OSError("down")

    sig.connect(flaky, retry=True)
    send(sig, None)
    assert waited[:3] == [2.0, 4.0, 6.0] and max(waited) == 30.0 and waited[-1] == 30.0
