"""Regressions found by reviewing issue 9: one bad result never stops a worker, bad
annotations are caught before a worker runs, Celery's autoretry and eager rules, handlers
given as keywords, and bounded redelivery when a task ends its worker."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from django_taskq import states
from django_taskq.brokers import get_broker
from django_taskq.exceptions import ConfigurationError
from django_taskq.message import SendOptions, build_envelope
from tests.helpers import dead_letters
from tests.testapp import review_tasks as rt
from tests.testapp import tasks


def steps(worker, count=10):
    for _ in range(count):
        worker.step()


@pytest.mark.parametrize("broker_kind", ["sqlite", "postgres", "mariadb"])
def test_a_result_with_a_nul_character_is_stored(make_worker):
    bad, good = rt.fail_with_nul.delay("a\x00b"), tasks.add.delay(1, 2)
    steps(make_worker())
    assert (bad.state, good.get(timeout=1)) == (states.FAILURE, 3)
    assert "\\x00" in bad.traceback


@pytest.mark.parametrize("broker_kind", ["postgres"])
def test_a_result_the_backend_refuses_dead_letters_its_message_and_the_worker_goes_on(
        make_worker, settings):
    # Messages in Redis or RabbitMQ (memory here), results in PostgreSQL: a Celery producer's
    # task id longer than the result column takes.
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": "memory://refused"}
    too_long = "x" * 300
    get_broker().enqueue(build_envelope(tasks.add.name, (1, 2), {}, too_long,
                                        SendOptions(queue="default")))
    after = tasks.add.delay(2, 3)
    worker = make_worker()
    steps(worker)
    assert after.get(timeout=1) == 5  # the next message ran: the worker is not wedged
    [(dead_id, reason)] = dead_letters(get_broker())
    assert dead_id == too_long and "the result could not be stored" in reason


@pytest.mark.parametrize("broker_kind", ["memory"])
def test_bad_annotations_are_a_check_error_and_stop_a_worker_before_it_runs(make_worker,
                                                                              settings):
    settings.TASKQ = {**settings.TASKQ,
                      "TASK_ANNOTATIONS": {tasks.add.name: {"rate_limit": "10 per minute"}}}
    with pytest.raises(SystemCheckError, match=r"django_taskq.E011.*tests.testapp.tasks.add"):
        call_command("check")
    with pytest.raises(ConfigurationError, match="rate_limit"):
        make_worker()


def test_annotations_can_switch_autoretry_on(settings, tmp_path):
    settings.TASKQ = {**settings.TASKQ, "TASK_ANNOTATIONS": {rt.flaky_connection.name: {
        "autoretry_for": (ConnectionError,), "default_retry_delay": 0}}}
    assert rt.flaky_connection.apply((str(tmp_path / "runs"),)).get() == "up"
    assert (tmp_path / "runs").read_text().split() == ["0", "1", "2"]


def test_ignore_and_reject_are_never_autoretried():
    rt.runs.clear()
    assert rt.ignored_with_autoretry.apply().state == states.IGNORED
    assert rt.runs == [0]


def test_eager_propagation_leaves_ignore_and_reject_to_the_run(settings):
    settings.TASKQ = {**settings.TASKQ, "TASK_EAGER_PROPAGATES": True}
    assert rt.ignored_with_autoretry.apply().state == states.IGNORED
    assert rt.reject_eagerly.apply().state == states.FAILURE  # stored, not raised (Celery)


@pytest.mark.parametrize("broker_kind", ["memory"])
def test_a_function_given_as_a_keyword_is_a_method_of_the_task(make_worker):
    rt.notified.clear()
    result = rt.fails_and_notifies.delay()
    steps(make_worker(), 3)
    assert result.state == states.FAILURE
    assert rt.notified == [(rt.fails_and_notifies.name, "told")]


@pytest.mark.parametrize("broker_kind", ["memory"])
def test_a_task_that_ends_its_worker_every_time_is_dead_lettered(make_worker, tmp_path):
    runs = tmp_path / "runs"
    result = rt.exits.delay(str(runs))
    for _ in range(5):  # a supervisor restarts the worker each time
        with pytest.raises(SystemExit):
            make_worker().run()
        if dead_letters(get_broker()):
            break
    assert len(runs.read_text().split()) == get_broker().max_deliveries
    [(dead_id, reason)] = dead_letters(get_broker())
    assert dead_id == result.id and "worker lost" in reason
    assert result.state == states.FAILURE


@pytest.mark.parametrize("broker_kind", ["memory"])
def test_a_timeout_with_acks_on_timeout_false_runs_again_as_in_celery(make_worker, tmp_path):
    runs = tmp_path / "runs"
    result = rt.too_slow_run_again.delay(str(runs))
    worker = make_worker(pool="solo")
    for _ in range(30):
        worker.step()
        if dead_letters(get_broker()):
            break
    # Put back after each timeout (Celery rejects with requeue), then given up (promise 2).
    assert runs.read_text().split() == ["run"] * get_broker().max_deliveries
    [(dead_id, reason)] = dead_letters(get_broker())
    assert dead_id == result.id and "acks_on_timeout=False" in reason
    assert result.state == states.FAILURE


@pytest.mark.parametrize("broker_kind", ["memory"])
def test_apply_many_routes_each_call_by_its_arguments(configured, settings):
    settings.TASKQ = {**settings.TASKQ,
                      "TASK_ROUTES": ["tests.testapp.review_tasks.route_by_tenant"]}
    rt.per_tenant.delay_many([(1,), (2,), (2,)])
    broker = get_broker()
    assert (broker.size("tenant-1"), broker.size("tenant-2")) == (1, 2)


@pytest.mark.parametrize("broker_kind", ["memory"])
def test_taskq_sent_records_the_queue_not_the_routing_key(taskq_sent, configured):
    tasks.add.apply_async((1, 2), queue="feeds", routing_key="feed.import")
    [sent] = taskq_sent
    assert sent.queue == "feeds"


def test_autodiscover_tasks_takes_app_config_paths():
    from django_taskq.discovery import _discover_packages

    assert _discover_packages(["django_taskq.apps.TaskqConfig"], "signals") == \
        ["django_taskq.signals"]


def test_push_request_for_tests_of_bound_tasks():
    task = tasks.whoami
    task.push_request(id="pushed", retries=2, tenant="acme")
    try:
        assert (task.request.id, task.request.retries, task.request.tenant) == \
            ("pushed", 2, "acme")
    finally:
        task.pop_request()
    assert task.request.called_directly
