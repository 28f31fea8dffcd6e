"""The pytest plugin (django_taskq.testing): fixtures used here directly, as a project would,
and, through pytester, in small projects of their own (docs/testing.md's examples, misuse)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from django_taskq import send_task, task
from django_taskq.brokers import get_broker
from django_taskq.conf import get_settings
from django_taskq.exceptions import ConfigurationError
from django_taskq.testing import (
    DrainError,
    DrainTimeout,
    WorkerThread,
    WorkerThreadError,
    drain,
    memory_broker,
)
from tests.testapp.tasks import add, count_users, fail

pytest_plugins = ["pytester"]

DOCS = Path(__file__).resolve().parent.parent / "docs" / "testing.md"


@task(name="tests.plugin.relay")
def relay(x):
    """Sends a follow-up to another queue, as a task in a real project would."""
    add.apply_async((x, x), queue="side")
    return x


@task(name="tests.plugin.flaky", bind=True, max_retries=3)
def flaky(self):
    if self.request.retries < 2:
        raise self.retry(countdown=0)
    return self.request.retries


def database(alias: str) -> str:
    if alias not in django_settings.DATABASES:
        pytest.skip(f"database {alias!r} is not reachable")
    return alias


# -- taskq_sent --------------------------------------------------------------------------------

def test_sent_records_each_message_as_a_worker_receives_it(taskq_sent):
    first = add.delay(2, 3)
    add.apply_async((1,), {"y": 4}, queue="other", priority=7, countdown=60, expires=600)

    assert taskq_sent.names() == ["tests.testapp.tasks.add"] * 2
    assert (taskq_sent[0].id, taskq_sent[0].args, taskq_sent[0].queue) == (first.id, (2, 3),
                                                                            "default")
    second = taskq_sent[1]
    assert (second.args, second.kwargs, second.queue, second.priority) == ((1,), {"y": 4},
                                                                           "other", 7)
    assert second.eta is not None and second.expires is not None and second.eta.tzinfo
    assert second.headers["retries"] == 0


def test_sent_filters_by_task_or_field_and_clears(taskq_sent):
    add.delay(1, 2)
    relay.apply_async((3,), queue="side")
    send_task("nobody.knows.this")

    assert [s.args for s in taskq_sent.filter(add)] == [(1, 2)]
    assert taskq_sent.filter("tests.plugin.relay", queue="side")[0].args == (3,)
    assert taskq_sent.filter(queue="nowhere") == []
    assert "nobody.knows.this" in taskq_sent.names()
    taskq_sent.clear()
    assert len(taskq_sent) == 0 and list(taskq_sent) == []


def test_sent_stays_empty_in_eager_mode(taskq_eager, taskq_sent):
    assert add.delay(2, 3).get() == 5
    assert taskq_sent.names() == []


def test_sent_stop_disconnects_its_receivers(taskq_sent):
    from django_taskq import signals

    taskq_sent.stop()
    add.delay(1, 1)
    assert len(taskq_sent) == 0
    assert not any("django_taskq.testing" in str(key) for key, _ in
                   signals.after_task_publish.receivers)


# -- taskq_eager and taskq_memory ---------------------------------------------------------------

def test_eager_runs_the_task_here_and_raises_its_failure(taskq_eager):
    assert get_settings().TASK_ALWAYS_EAGER and get_settings().TASK_EAGER_PROPAGATES
    assert add.delay(2, 3).get() == 5
    with pytest.raises(ValueError, match="nope"):
        fail.delay("nope")


def test_eager_ends_with_the_test():
    assert not get_settings().TASK_ALWAYS_EAGER


def test_memory_gives_a_fresh_private_broker(taskq_memory):
    assert taskq_memory.startswith("memory://taskq-test-")
    settings = get_settings()
    assert settings.BROKER_URL == settings.RESULT_BACKEND == settings.CONTROL_URL == taskq_memory
    add.delay(1, 1)
    assert get_broker().size("default") == 1


def test_memory_sets_the_environment_overrides_aside(monkeypatch):
    monkeypatch.setenv("TASKQ_BROKER_URL", "redis://127.0.0.1:1/0")
    with memory_broker("mine") as url:
        assert get_settings().BROKER_URL == url == "memory://mine"
    assert get_settings().BROKER_URL == "redis://127.0.0.1:1/0"


# -- taskq_drain -------------------------------------------------------------------------------

def test_drain_runs_what_was_sent_on_every_queue_and_says_what_ran(taskq_drain):
    result = relay.delay(4)

    runs = taskq_drain()

    assert runs.names() == ["tests.plugin.relay", "tests.testapp.tasks.add"]
    assert runs.results() == [4, 8] and runs.failures() == []
    assert result.get(timeout=1) == 4
    assert get_broker().size("default") == get_broker().size("side") == 0


def test_drain_runs_only_the_queues_asked(taskq_drain):
    add.delay(1, 1)
    add.apply_async((2, 2), queue="other")

    assert taskq_drain(["other"]).results() == [4]
    assert get_broker().size("default") == 1


def test_drain_runs_retries_until_done(taskq_drain):
    result = flaky.delay()

    runs = taskq_drain()

    assert [run.state for run in runs] == ["RETRY", "RETRY", "SUCCESS"]
    assert result.get(timeout=1) == 2


def test_drain_raises_a_failure_with_the_tasks_exception_as_cause(taskq_drain):
    fail.delay("bad")
    add.delay(1, 1)

    with pytest.raises(DrainError, match=r"1 of 2 drained task\(s\) failed.*bad") as info:
        taskq_drain()
    assert isinstance(info.value.__cause__, ValueError)
    assert isinstance(info.value, AssertionError)


def test_drain_can_return_failures_instead(taskq_drain):
    fail.delay("bad")

    runs = taskq_drain(raise_on_failure=False)

    assert [(run.state, type(run.result)) for run in runs] == [("FAILURE", ValueError)]
    assert runs.failures() == list(runs)


def test_drain_reports_a_message_the_worker_refuses(taskq_drain):
    send_task("nobody.knows.this", (1,))

    with pytest.raises(DrainError, match="nobody.knows.this"):
        taskq_drain()
    runs = taskq_drain(raise_on_failure=False)
    assert runs == []  # dead-lettered: not run twice


def test_drain_waits_for_a_countdown_until_its_timeout(taskq_drain):
    add.apply_async((1, 1), countdown=60)

    with pytest.raises(DrainTimeout, match=r"after 0.3s.*default: 1.*countdown"):
        taskq_drain(timeout=0.3)


def test_drain_stops_after_max_tasks(taskq_drain):
    for n in range(3):
        add.delay(n, n)

    assert len(taskq_drain(max_tasks=2)) == 2
    assert get_broker().size("default") == 1


def test_drain_enforces_time_limits_in_the_main_thread(taskq_drain):
    from tests.testapp.limit_tasks import clean_up_on_soft_limit

    clean_up_on_soft_limit.apply_async((5,), soft_time_limit=0.1)

    assert taskq_drain().results() == ["cleaned up"]


def test_drain_without_the_fixture_names_its_queues():
    add.apply_async((5, 5), queue="side")
    assert drain(["side"]).results() == [10]


@pytest.mark.parametrize("kind", ["sqlite", "postgres", "mariadb"])
@pytest.mark.django_db(databases="__all__")
def test_drain_inside_a_db_test_sees_and_rolls_back_with_its_transaction(kind, settings,
                                                                       taskq_drain):
    from django.contrib.auth.models import User
    from django.db import connections

    alias = database({"sqlite": "default"}.get(kind, kind))
    url = f"db://{alias}"
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": url, "RESULT_BACKEND": url}
    User.objects.using(alias).create(username="uncommitted")
    result = count_users.delay(using=alias)

    assert taskq_drain().results() == [1]
    assert connections[alias].in_atomic_block  # still the test's own transaction
    assert result.get(timeout=1) == 1
    assert get_broker().size("default") == 0


def test_drain_on_redis(redis_url, settings, taskq_drain):
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": redis_url, "RESULT_BACKEND": redis_url}
    result = relay.delay(2)

    assert sorted(taskq_drain().results()) == [2, 4]
    assert result.get(timeout=5) == 2


# -- taskq_worker ------------------------------------------------------------------------------

def test_worker_thread_on_the_memory_broker(taskq_memory, taskq_worker):
    assert add.delay(2, 3).get(timeout=10) == 5
    assert taskq_worker.processed == 1


@pytest.mark.parametrize("taskq_worker_options", [{"pool": "threads", "concurrency": 3,
                                                   "queues": ["default", "other"]}])
def test_worker_thread_options(taskq_memory, taskq_worker):
    results = [add.apply_async((n, n), queue="other") for n in range(10)]
    assert [r.get(timeout=10) for r in results] == [2 * n for n in range(10)]
    assert taskq_worker.worker.options.pool == "threads"


@pytest.fixture(params=["sqlite", "postgres"])
def database_queue(request, settings):
    """TASKQ on a database (set before taskq_worker starts: listed first)."""
    alias = database({"sqlite": "default"}.get(request.param, request.param))
    url = f"db://{alias}"
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": url, "RESULT_BACKEND": url,
                      "POLL_INTERVAL": 0.02}
    return alias


@pytest.mark.django_db(transaction=True, databases="__all__")
def test_worker_thread_on_a_database_broker_with_transactional_db(database_queue, taskq_worker):
    from django.contrib.auth.models import User

    User.objects.using(database_queue).create(username="committed")
    assert count_users.delay(using=database_queue).get(timeout=10) == 1
    assert add.delay(2, 3).get(timeout=10) == 5


def test_worker_thread_on_redis(redis_url, settings, request):
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": redis_url, "RESULT_BACKEND": redis_url}
    worker = request.getfixturevalue("taskq_worker")
    assert relay.delay(3).get(timeout=10) == 3
    assert worker.processed >= 1


def test_worker_thread_refuses_prefork():
    with pytest.raises(ConfigurationError, match="prefork would fork the test process"):
        WorkerThread(pool="prefork")


def test_worker_thread_raises_what_ended_its_loop(taskq_memory, monkeypatch):
    thread = WorkerThread()

    def broken():
        raise RuntimeError("loop broke")

    monkeypatch.setattr(thread.worker, "step", broken)
    with pytest.raises(WorkerThreadError, match="loop broke"):
        thread.start()  # raises here, or (if the worker was ready first) on stop
        thread.stop()


def test_worker_thread_as_a_context_manager(taskq_memory):
    with WorkerThread(queues=["side"]) as thread:
        assert add.apply_async((1, 2), queue="side").get(timeout=10) == 3
    assert not thread._thread.is_alive()


# -- in projects of their own (pytester) -------------------------------------------------------

SETTINGS = """
SECRET_KEY = "tests"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "django_taskq", "shop"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3",
                         "TEST": {"NAME": "test_db.sqlite3"}}}
TASKQ = {"BROKER_URL": "db://default", "RESULT_BACKEND": "db://default", "POLL_INTERVAL": 0.05}
"""


def docs_files() -> dict[str, str]:
    """The example files of docs/testing.md: python blocks whose first line is ``# <path>``
    (blocks naming the same path are joined)."""
    files: dict[str, str] = {}
    for block in re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.S):
        first, _, rest = block.partition("\n")
        match = re.fullmatch(r"# ([\w/]+\.py)", first.strip())
        if match:
            files[match.group(1)] = files.get(match.group(1), "") + rest + "\n"
    return files


@pytest.fixture
def project(pytester, monkeypatch):
    """A user's project in pytester's directory: the docs' shop app and test settings."""
    for path, text in docs_files().items():
        if path.startswith("shop/"):
            target = pytester.path / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    (pytester.path / "shop" / "__init__.py").write_text("")
    (pytester.path / "settings.py").write_text(SETTINGS)
    (pytester.path / "settings_memdb.py").write_text(
        SETTINGS + 'DATABASES["default"].pop("TEST")\n')
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "settings")
    for variable in ("TASKQ_BROKER_URL", "TASKQ_RESULT_BACKEND"):
        monkeypatch.delenv(variable, raising=False)
    return pytester


def run(pytester, *args):
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=180)


def test_the_docs_examples_pass_as_written(project):
    files = docs_files()
    assert {"shop/models.py", "shop/tasks.py", "tests/test_shop.py",
            "tests/test_unittest_style.py"} <= set(files)
    for path in ("tests/test_shop.py", "tests/test_unittest_style.py"):
        (project.path / path).parent.mkdir(exist_ok=True)
        (project.path / path).write_text(files[path])

    result = run(project, "-q", "tests")

    result.assert_outcomes(passed=11)


def test_the_fixtures_are_registered_by_the_entry_point(project):
    result = run(project, "--fixtures")
    for name in ("taskq_sent", "taskq_drain", "taskq_eager", "taskq_worker", "taskq_memory",
                 "taskq_worker_options"):
        result.stdout.fnmatch_lines([f"{name} -- *django_taskq*testing*pytest_plugin.py*"])


MISUSE = """
import pytest

def test_db_fixture(db, taskq_worker):
    pass

@pytest.mark.django_db
def test_db_mark(taskq_worker):
    pass

def test_no_database(taskq_worker):
    pass

def test_memory_broker_needs_no_database(taskq_memory, taskq_worker):
    pass
"""


def test_a_worker_thread_that_could_not_see_the_test_data_fails_clearly(project):
    project.makepyfile(test_misuse=MISUSE)

    result = run(project, "-q")

    result.assert_outcomes(passed=1, errors=3)
    result.stdout.fnmatch_lines([
        "*ERROR at setup of test_db_fixture*",
        "taskq_worker: *database 'default'*runs inside a transaction*use the transactional_db "
        "fixture*taskq_memory*taskq_drain*",
        "*ERROR at setup of test_db_mark*",
        "taskq_worker: *runs inside a transaction*",
        "*ERROR at setup of test_no_database*",
        "taskq_worker: *this test has no database access: use the transactional_db fixture*",
    ])


def test_a_worker_thread_refuses_sqlite_in_memory(project):
    project.makepyfile(test_memdb="def test_it(transactional_db, taskq_worker):\n    pass\n")

    result = run(project, "-q", "--ds=settings_memdb")

    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*SQLite in memory*give it a file*['TEST']*"])


PLAIN = """
def test_plain():
    assert True

def test_fixture(taskq_sent):
    pass
"""


def test_a_project_without_the_app_is_untouched_until_a_fixture_is_used(project):
    (project.path / "settings.py").write_text(
        SETTINGS.replace('"django_taskq", "shop"', '"shop"').replace("TASKQ", "UNUSED"))
    (project.path / "shop" / "tasks.py").write_text("")
    project.makepyfile(test_plain=PLAIN)

    result = run(project, "-q")

    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["taskq_sent: add 'django_taskq' to INSTALLED_APPS."])


def test_a_project_without_django_settings_is_untouched_until_a_fixture_is_used(project,
                                                                                monkeypatch):
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE")
    project.makepyfile(test_plain=PLAIN)

    result = run(project, "-q", "-p", "no:django")

    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["taskq_sent: Django is not set up.*"])


def test_loading_the_plugin_reads_no_settings():
    script = textwrap.dedent("""
        import sys
        import django_taskq.testing.pytest_plugin
        from django.conf import settings
        from django_taskq import conf
        assert not settings.configured and conf._cached is None
        assert "django_taskq.models" not in sys.modules
        print("ok")
    """)
    import subprocess
    import sys

    env = {"PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True,
                          text=True, env=env, timeout=60)
    assert done.stdout.strip() == "ok", done.stderr
