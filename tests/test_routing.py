"""Task routes (Celery's task_routes): by name, glob, regex, router functions and dotted paths,
lists of them, and the precedence call > task > route > DEFAULT_QUEUE, key by key."""

from __future__ import annotations

import re

import pytest

from django_taskq import producer
from django_taskq.brokers import get_broker
from django_taskq.exceptions import ConfigurationError
from tests.testapp import surface_tasks as st
from tests.testapp import tasks

pytestmark = pytest.mark.parametrize("broker_kind", ["memory"])

def path_router(name, args, kwargs, options, task=None, **kw):
    """A router named by its dotted path in TASK_ROUTES."""
    return "by-path" if name == "tests.testapp.tasks.add" else None


def routes(settings, value, **more):
    settings.TASKQ = {**settings.TASKQ, "TASK_ROUTES": value, **more}


def queued(task, *args, **options):
    task.apply_async(args, **options)
    broker = get_broker()
    [(queue, entries)] = [(q, e) for q, e in broker._queues.items() if e]
    envelope = entries[0][3]
    broker.purge(queue)
    return queue, envelope.priority


@pytest.mark.parametrize("table, queue", [
    ({"tests.testapp.tasks.add": "exact"}, "exact"),
    ({"tests.testapp.tasks.*": {"queue": "globbed"}}, "globbed"),
    ({re.compile(r"tests\.testapp\.tasks\.(add|mul)$"): "regex"}, "regex"),
    ({"tests.testapp.tasks.echo": "other", "tests.*": "second"}, "second"),
    ([[("tests.testapp.tasks.add", "pairs")]], "pairs"),  # one route given as (name, queue) pairs
    ("tests.test_routing.path_router", "by-path"),
    ({"nothing.matches": "x"}, "default"),
])
def test_routes_by_name_glob_regex_and_path(configured, settings, table, queue):
    routes(settings, table)
    assert queued(tasks.add, 1, 2)[0] == queue


def test_a_list_of_routes_mixing_dicts_and_functions_first_answer_wins(configured, settings):
    seen = []

    def router(name, args, kwargs, options, task=None, **kw):
        seen.append((name, args, kwargs, task))
        return {"queue": "from-function", "priority": 4} if args == (9, 9) else None

    routes(settings, [{"tests.echo": "echoes"}, router,
                      {"tests.testapp.*": "fallback"}])
    assert queued(tasks.add, 9, 9) == ("from-function", 4)
    assert queued(tasks.add, 1, 1) == ("fallback", 0)
    assert queued(tasks.echo, 1) == ("echoes", 0)
    assert seen[0] == ("tests.testapp.tasks.add", (9, 9), {}, tasks.add)


def test_precedence_call_then_task_then_route_then_default_queue(configured, settings):
    routes(settings, {"*": {"queue": "routed", "priority": 5}}, DEFAULT_QUEUE="fallback")
    assert queued(st.optioned, queue="called") == ("called", 7)
    assert queued(st.optioned) == ("surface", 7)  # the task's own queue and priority
    assert queued(tasks.add, 1, 2) == ("routed", 5)
    assert queued(tasks.add, 1, 2, priority=1) == ("routed", 1)
    routes(settings, (), DEFAULT_QUEUE="fallback")
    assert queued(tasks.add, 1, 2)[0] == "fallback"


def test_a_route_gives_its_other_options_even_when_the_queue_is_chosen(configured, settings):
    # Celery merges the route under the call's and task's options key by key.
    routes(settings, {"tests.testapp.tasks.add": {"queue": "routed", "priority": 6}})
    assert queued(tasks.add, 1, 2, queue="called") == ("called", 6)


@pytest.mark.parametrize("table, words", [
    ("tests.no_such_module.router", "cannot be imported"),
    ({5: "queue"}, "not a task name"),
    (42, "TASK_ROUTES"),
])
def test_bad_routes_are_configuration_errors(configured, settings, table, words):
    routes(settings, [table])
    with pytest.raises(ConfigurationError, match=words):
        tasks.add.delay(1, 2)


def test_a_route_answering_nonsense_is_a_configuration_error(configured, settings):
    routes(settings, [lambda *a, **k: 42])
    with pytest.raises(ConfigurationError, match="returned 42"):
        tasks.add.delay(1, 2)


def test_send_task_of_an_unregistered_name_is_routed(configured, settings):
    routes(settings, {"billing.*": {"queue": "billing", "priority": 3}})
    producer.send_task("billing.charge", (1,))
    [delivery] = get_broker().reserve(["billing"], max_messages=5, lease=30, worker="t")
    assert (delivery.envelope.task_name, delivery.envelope.priority) == ("billing.charge", 3)
