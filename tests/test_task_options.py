"""Task options: every Celery option on ``@task`` and on Task classes, checked once; TASK_CLASS,
TASK_ANNOTATIONS, typing, options that reach the message, and the options the worker honours
(throws, store_errors_even_if_ignored, acks_on_failure_or_timeout, Reject, Ignore)."""

from __future__ import annotations

import logging
import time
import types
from datetime import datetime, timedelta, timezone

import pytest

import django_taskq
from django_taskq import AsyncResult, Ignore, Reject, Task, states
from django_taskq.brokers import get_broker
from django_taskq.control.rate import parse_rate
from django_taskq.exceptions import ConfigurationError, TaskqError
from django_taskq.options import OPTION_NAMES, TaskOptionError
from django_taskq.task import build_task
from tests.helpers import dead_letters
from tests.testapp import surface_tasks as st


def body(a, b=1):
    return a + b


def key_of(a, b=1):
    return str(a)


#: A good value for every option, and what ``task.options`` holds for it.
GOOD = {
    "queue": ("feeds", "feeds"),
    "exchange": ("ex", "ex"),
    "routing_key": ("rk", "rk"),
    "priority": (5, 5),
    "expires": (30, 30.0),
    "serializer": ("msgpack", "msgpack"),
    "compression": ("zlib", "zlib"),
    "ignore_result": (True, True),
    "store_errors_even_if_ignored": (True, True),
    "track_started": (True, True),
    "max_retries": (7, 7),
    "default_retry_delay": (timedelta(seconds=5), 5.0),
    "autoretry_for": ((KeyError,), (KeyError,)),
    "dont_autoretry_for": (ValueError, (ValueError,)),
    "retry_kwargs": ({"countdown": 1}, {"countdown": 1}),
    "retry_backoff": (2, 2.0),
    "retry_backoff_max": (60, 60.0),
    "retry_jitter": (False, False),
    "time_limit": (10, 10.0),
    "soft_time_limit": (5, 5.0),
    "rate_limit": ("10/s", parse_rate("10/s")),
    "key_rate_limit": ("5/m", parse_rate("5/m")),
    "rate_limit_key": (key_of, key_of),
    "throws": ((KeyError, ValueError), (KeyError, ValueError)),
    "typing": (False, False),
    "sensitive": (True, True),
    "acks_late": (True, True),
    "acks_on_failure_or_timeout": (False, False),
    "acks_on_failure": (False, False),
    "acks_on_timeout": (True, True),
    "reject_on_worker_lost": (True, True),
    "retry_on_worker_lost": (True, True),
    "trail": (False, False),
    "send_events": (False, False),
    "resultrepr_maxsize": (10, 10),
    "pydantic": (True, True),
    "pydantic_strict": (True, True),
    "pydantic_context": ({"a": 1}, {"a": 1}),
    "pydantic_dump_kwargs": ({"by_alias": True}, {"by_alias": True}),
}
#: Options that only make sense together with another one.
COMPANIONS = {"key_rate_limit": {"rate_limit_key": key_of}, "rate_limit_key": {"key_rate_limit": "1/s"}}


def test_the_table_covers_every_option():
    assert set(GOOD) == OPTION_NAMES


@pytest.mark.parametrize("option", sorted(GOOD))
def test_every_option_is_accepted_as_a_decorator_keyword(option):
    given, expected = GOOD[option]
    made = build_task(body, name=f"opts.{option}", **{option: given}, **COMPANIONS.get(option, {}))
    assert getattr(made.options, option) == expected
    assert getattr(made, option) == given  # the keyword is an attribute of the task, as in Celery


@pytest.mark.parametrize("option", sorted(GOOD))
def test_every_option_is_accepted_as_a_class_attribute_of_a_base(option):
    given, expected = GOOD[option]
    attributes = {key: staticmethod(value) if isinstance(value, types.FunctionType) else value
                  for key, value in {option: given, **COMPANIONS.get(option, {})}.items()}
    base = type("Base", (Task,), attributes)
    made = build_task(body, base=base, name=f"base.{option}")
    assert isinstance(made, base)
    assert getattr(made.options, option) == expected


def test_defaults_are_celerys():
    made = build_task(body, name="opts.defaults")
    o = made.options
    assert (o.max_retries, o.default_retry_delay, o.retry_backoff_max, o.retry_jitter) == \
        (3, 180.0, 600.0, True)
    assert (o.typing, o.trail, o.send_events, o.acks_on_failure_or_timeout) == (True,) * 4
    assert (o.store_errors_even_if_ignored, o.resultrepr_maxsize, o.throws) == (False, 1024, ())
    assert o.queue is o.priority is o.expires is o.ignore_result is o.rate_limit is None


def test_any_other_keyword_becomes_a_task_attribute():
    made = build_task(body, name="opts.extra", foo=1, describe=lambda self: self.name)
    assert made.foo == 1
    assert made.describe() == "opts.extra"  # a function becomes a method, as in Celery


BAD = {
    "queue": [5, ""], "exchange": [5, ""], "routing_key": [""], "priority": [10, -1, True, "high"],
    "expires": [0, -5, "soon"], "serializer": [5, ""], "compression": [5, "snappy"],
    "ignore_result": ["yes"], "store_errors_even_if_ignored": [None, 1],
    "track_started": ["yes"], "max_retries": [-1, True, 1.5],
    "default_retry_delay": [-1, "soon", None], "autoretry_for": [ValueError("x"), "ValueError", [int]],
    "dont_autoretry_for": [int], "retry_kwargs": [[1]], "retry_backoff": [-1, "x"],
    "retry_backoff_max": [-1], "retry_jitter": ["yes"], "time_limit": [0, float("inf")],
    "soft_time_limit": [-1], "rate_limit": ["fast", "10/d"], "key_rate_limit": ["fast"],
    "rate_limit_key": [5], "throws": ["KeyError"], "typing": ["no"], "sensitive": ["yes"],
    "acks_late": ["yes"],
    "acks_on_failure_or_timeout": [None], "acks_on_failure": ["no"], "acks_on_timeout": [0],
    "reject_on_worker_lost": ["yes"],
    "retry_on_worker_lost": ["yes"], "trail": ["yes"], "send_events": [1],
    "resultrepr_maxsize": [0, "big"], "pydantic": ["yes"], "pydantic_strict": [1],
    "pydantic_context": [5], "pydantic_dump_kwargs": ["x"],
}


def test_every_option_has_bad_values_listed():
    assert set(BAD) == OPTION_NAMES


@pytest.mark.parametrize("option, value", [(o, v) for o, values in BAD.items() for v in values])
def test_a_bad_value_is_a_task_option_error_naming_task_and_option(option, value):
    with pytest.raises(TaskOptionError) as caught:
        build_task(body, name="opts.bad", **{option: value}, **COMPANIONS.get(option, {}))
    assert isinstance(caught.value, TypeError) and isinstance(caught.value, TaskqError)
    assert "opts.bad" in str(caught.value) and option in str(caught.value)


def test_a_bad_class_attribute_fails_when_the_task_is_defined():
    base = type("Base", (Task,), {"priority": 42})
    with pytest.raises(TaskOptionError, match="opts.bad_base: priority"):
        build_task(body, base=base, name="opts.bad_base")


@pytest.mark.parametrize("options, words", [
    ({"time_limit": 5, "soft_time_limit": 5}, "soft_time_limit"),
    ({"key_rate_limit": "1/s"}, "rate_limit_key"),
    ({"rate_limit_key": key_of}, "key_rate_limit"),
])
def test_options_checked_together(options, words):
    with pytest.raises(TaskOptionError, match=words):
        build_task(body, name="opts.together", **options)


def test_base_must_be_a_task_class():
    with pytest.raises(TypeError, match="base="):
        build_task(body, base=dict)


# -- TASK_CLASS -----------------------------------------------------------------------------

def test_task_class_setting_is_the_project_wide_default(settings):
    settings.TASKQ = {**settings.TASKQ, "TASK_CLASS": "tests.testapp.surface_tasks.Recording"}
    made = build_task(body, name="opts.default_class")
    assert isinstance(made, st.Recording)
    assert isinstance(build_task(body, base=st.Wrapping), st.Wrapping)  # base= still wins


@pytest.mark.parametrize("path, words", [
    ("tests.testapp.no_such_module.Task", "cannot be imported"),
    ("tests.testapp.surface_tasks.NoSuchClass", "cannot be imported"),
    ("tests.testapp.surface_tasks.calls", "not a subclass of django_taskq.Task"),
])
def test_a_bad_task_class_is_a_clear_configuration_error(settings, path, words):
    settings.TASKQ = {**settings.TASKQ, "TASK_CLASS": path}
    with pytest.raises(ConfigurationError, match=words) as caught:
        build_task(body, name="opts.bad_class")
    assert "TASK_CLASS" in str(caught.value) and path in str(caught.value)


# -- TASK_ANNOTATIONS -----------------------------------------------------------------------

def _annotated(settings, annotations, **options):
    settings.TASKQ = {**settings.TASKQ, "TASK_ANNOTATIONS": annotations}
    return build_task(body, name="opts.annotated", **options)


def test_annotations_by_name_apply_over_the_task_own_options(settings):
    made = _annotated(settings, {"opts.annotated": {"rate_limit": "5/s", "max_retries": 9},
                                 "other.task": {"priority": 1}}, max_retries=2)
    assert made.options.rate_limit == parse_rate("5/s")
    assert made.options.max_retries == 9
    assert made.options.priority is None


def test_annotations_for_all_tasks(settings):
    made = _annotated(settings, {"*": {"store_errors_even_if_ignored": True}})
    assert made.options.store_errors_even_if_ignored is True


def test_annotations_from_a_function_and_a_list(settings):
    def annotate(name):
        return {"priority": 3} if name == "opts.annotated" else None

    made = _annotated(settings, [annotate, {"*": {"max_retries": 1}}])
    assert (made.options.priority, made.options.max_retries) == (3, 1)


def test_celery_annotation_objects_and_their_dotted_paths(settings):
    made = _annotated(settings, [st.CeleryAnnotation()])
    assert (made.options.priority, made.options.max_retries) == (2, 4)
    made = _annotated(settings, ["tests.testapp.surface_tasks.CeleryAnnotation"])
    assert (made.options.priority, made.options.max_retries) == (2, 4)


def test_an_annotation_path_that_cannot_be_imported_is_a_configuration_error(settings):
    made = _annotated(settings, ["tests.testapp.no_such_module.Annotation"])
    with pytest.raises(ConfigurationError, match="TASK_ANNOTATIONS names"):
        made.options  # noqa: B018


def test_a_bad_annotation_value_is_a_task_option_error(settings):
    made = _annotated(settings, {"opts.annotated": {"priority": 99}})
    with pytest.raises(TaskOptionError, match="opts.annotated: priority"):
        made.options  # noqa: B018


def test_annotations_reach_registered_tasks_after_a_settings_change(settings):
    assert st.typed.options.priority is None
    settings.TASKQ = {**settings.TASKQ, "TASK_ANNOTATIONS": {st.typed.name: {"priority": 4}}}
    assert st.typed.options.priority == 4


# -- typing -------------------------------------------------------------------------------

def test_typing_checks_arguments_at_call_time(configured):
    with pytest.raises(TypeError, match="missing a required argument"):
        st.typed.delay()
    with pytest.raises(TypeError, match="too many positional"):
        st.typed.apply_async((1, 2))
    assert get_broker().size("default") == 0


def test_typing_false_sends_whatever_it_is_given(configured):
    st.untyped.delay(1, 2, 3)
    st.untyped.apply_async(kwargs={"nope": 1})
    assert get_broker().size("default") == 2


def test_typing_false_arguments_are_not_refused_by_the_worker_either(make_worker):
    # The task runs with what it was given, as in Celery: a misfit is the task's own TypeError.
    result = st.untyped.delay(1, 2, 3)
    drain(make_worker(), result)
    with pytest.raises(TypeError, match="positional argument"):
        result.get(timeout=5)
    assert dead_letters(get_broker()) == []


# -- options that reach the message ---------------------------------------------------------

def test_task_options_reach_the_message(configured):
    before = datetime.now(timezone.utc)
    result = st.optioned.delay()
    [delivery] = get_broker().reserve(["surface"], max_messages=5, lease=30, worker="t")
    envelope = delivery.envelope
    assert envelope.queue == "surface" and envelope.priority == 7
    assert envelope.content_type == "application/x-msgpack"
    assert envelope.headers["ignore_result"] is True
    expires = datetime.fromisoformat(envelope.headers["expires"])
    assert before + timedelta(seconds=599) <= expires <= datetime.now(timezone.utc) + \
        timedelta(seconds=601)
    assert not AsyncResult(result.id).known  # ignore_result: no PENDING record either


def test_call_options_win_over_task_options(configured):
    st.optioned.apply_async(queue="default", priority=2, serializer="json", ignore_result=False)
    [delivery] = get_broker().reserve(["default"], max_messages=5, lease=30, worker="t")
    assert (delivery.envelope.priority, delivery.envelope.content_type) == (2, "application/json")
    assert delivery.envelope.headers["ignore_result"] is False


# -- options the worker honours, on every broker --------------------------------------------

def drain(worker, *results, rounds=30):
    for _ in range(rounds):
        worker.step()
        if results and all(r.ready() for r in results):
            break


def test_throws_is_logged_without_traceback_and_still_a_failure(make_worker, caplog):
    result = st.throws_expected.delay()
    with caplog.at_level(logging.INFO, logger="django_taskq"):
        drain(make_worker(), result)
    assert result.state == states.FAILURE
    with pytest.raises(KeyError, match="expected one"):
        result.get(timeout=5)
    mine = [r for r in caplog.records if result.id in r.getMessage()]
    assert [r.levelno for r in mine if "raised expected" in r.getMessage()] == [logging.INFO]
    assert not any(r.levelno >= logging.ERROR for r in mine)
    assert not any("Traceback" in r.getMessage() or r.exc_info for r in mine)


def test_an_unexpected_failure_is_logged_with_its_traceback(make_worker, caplog):
    from tests.testapp import tasks

    result = tasks.fail.delay("loud")
    with caplog.at_level(logging.INFO, logger="django_taskq"):
        drain(make_worker(), result)
    [record] = [r for r in caplog.records if result.id in r.getMessage()]
    assert record.levelno == logging.ERROR and "Traceback" in record.getMessage()


def test_store_errors_even_if_ignored_stores_the_failure_only(make_worker):
    failed = st.ignored_but_errors_stored.delay()
    succeeded = st.ignored_but_errors_stored.delay(fail=False)
    drain(make_worker(), failed)
    drain(make_worker(), rounds=3)
    assert failed.state == states.FAILURE
    with pytest.raises(ValueError, match="stored anyway"):
        failed.get(timeout=5)
    assert not succeeded.known
    assert get_broker().size("default") == 0


def test_acks_on_failure_or_timeout_false_dead_letters_the_failed_message(make_worker):
    result = st.fail_dead_letters.delay()
    drain(make_worker(), result)
    assert result.state == states.FAILURE
    [(dead_id, reason)] = dead_letters(get_broker())
    assert dead_id == result.id and "to the dead letters" in reason
    assert get_broker().size("default") == 0


def test_celery_57_split_acks_options_win_over_the_combined_one(make_worker):
    dead = st.fail_dead_letters_on_failure.delay()
    acked = st.fail_acked_despite_combined.delay()
    worker = make_worker()
    drain(worker, dead)
    drain(worker, acked)
    assert (dead.state, acked.state) == (states.FAILURE, states.FAILURE)
    [(dead_id, reason)] = dead_letters(get_broker())
    assert dead_id == dead.id and "acks_on_failure=False" in reason


def test_reject_dead_letters_the_message_and_fails_the_task(make_worker, tmp_path):
    from django_taskq import signals
    from django_taskq.exceptions import Reject

    failures = []

    @signals.task_failure.connect(weak=False)
    def seen(sender, exception, **kwargs):
        failures.append(exception)

    try:
        result = st.reject.delay(str(tmp_path / "runs"))
        drain(make_worker(), rounds=5)
    finally:
        signals.task_failure.disconnect(seen)
    [(dead_id, reason)] = dead_letters(get_broker())
    assert dead_id == result.id and "no thanks" in reason
    # As Celery 5.7 (celery#4222): FAILURE is stored and task_failure sent, so nobody waits.
    assert result.state == states.FAILURE
    assert isinstance(failures[0], Reject) and len(failures) == 1
    assert (tmp_path / "runs").read_text().count("run") == 1
    assert get_broker().size("default") == 0


def test_reject_with_requeue_puts_the_message_back(make_worker, tmp_path):
    runs = tmp_path / "runs"
    result = st.reject.delay(str(runs), requeue=True)
    worker = make_worker()
    deadline = time.monotonic() + 15
    while (not runs.exists() or runs.read_text().count("run") < 2) and time.monotonic() < deadline:
        worker.step()
    assert runs.read_text().count("run") >= 2  # delivered again after the reject
    assert get_broker().size("default") == 1  # and back in its queue after each run
    assert dead_letters(get_broker()) == []
    assert result.state == states.PENDING


def test_reject_with_requeue_every_time_ends_dead_lettered(make_worker, tmp_path):
    runs = tmp_path / "runs"
    result = st.reject.delay(str(runs), requeue=True)
    worker = make_worker()
    deadline = time.monotonic() + 15
    while not dead_letters(get_broker()) and time.monotonic() < deadline:
        worker.step()
    [(dead_id, reason)] = dead_letters(get_broker())
    assert dead_id == result.id and "(rejected with requeue) on each of its 3 deliveries" in reason
    assert runs.read_text().count("run") == 3  # MAX_DELIVERIES, then given up (promise 2)
    assert result.state == states.FAILURE


def test_ignore_stores_nothing_and_the_message_is_gone(make_worker):
    result = st.ignore_me.delay()
    drain(make_worker(), rounds=5)
    assert result.state == states.PENDING
    assert get_broker().size("default") == 0
    assert dead_letters(get_broker()) == []


def test_reject_and_ignore_are_exported_task_errors():
    assert django_taskq.Reject is Reject and django_taskq.Ignore is Ignore
    assert issubclass(Reject, TaskqError) and issubclass(Ignore, TaskqError)
    assert Reject("why", requeue=True).requeue is True and Reject().requeue is False
