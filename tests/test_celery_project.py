"""A Celery project moves to django_taskq by changing its imports (issue 9).

tests/celery_project is a small Django project written for Celery, with Celery's imports. Its
eager tests pass against the real ``celery`` package, and under a real ``celery worker`` its
``smoke`` command gives the results the tests below compare ours with: it is genuine Celery
code. A copy converted with the import table (tests/celery_project_imports.py) differs only in
its imports and one INSTALLED_APPS line; on it, ``manage.py check`` and ``migrate`` work, a
real ``manage.py taskworker`` (prefork, two children) runs what ``smoke`` sends — on the
database broker and on Redis — with the hooks and signals the project expects, and the
project's eager tests pass. Bad options and settings are errors that name the fix. Findings
that kept the switch from being complete are tests of their own (all pass now).
"""

from __future__ import annotations

import difflib
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from django_taskq import shared_task
from django_taskq.exceptions import Retry
from django_taskq.registry import registry
from django_taskq.task import Task, build_task
from tests import services
from tests.celery_project_driver import (
    PROJECT,
    Project,
    Run,
    celery_worker,
    convert,
    copy_project,
    run_worker,
    taskworker,
)
from tests.celery_project_imports import INSTALLED_APP
from tests.conftest import require_service

# Tasks of the eager test class whose Celery behaviour django_taskq does not share yet.
EAGER_RETRY_TAG = "celery-eager-retry"
# What `manage.py check` says about this project's Celery settings, and nothing else.
EXPECTED_WARNINGS = {("django_taskq.W011", "CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP"),
                     ("django_taskq.W011", "CELERY_TASK_ACKS_LATE"),
                     ("django_taskq.W011", "CELERY_TIMEZONE")}


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    return convert(copy_project(tmp_path_factory.mktemp("converted") / "project"))


# -- the project is Celery code; the switch changes imports only ---------------------------


@pytest.mark.subprocess
def test_the_project_is_celery_code(tmp_path):
    pytest.importorskip("celery")
    # Eager runs never reach a broker: Celery's in-memory transport and cache are enough.
    project = Project(copy_project(tmp_path / "original"), "memory://", "cache+memory://")
    done = project.manage("test", "-v", "2")
    assert done.returncode == 0, done.stderr
    assert "Ran 15 tests" in done.stderr and "\nOK" in done.stderr


def test_only_imports_and_installed_apps_change(converted):
    changed: list[str] = []
    for original in sorted(PROJECT.rglob("*.py")):
        copy = converted / original.relative_to(PROJECT)
        diff = difflib.unified_diff(original.read_text().splitlines(),
                                    copy.read_text().splitlines(), lineterm="", n=0)
        changed += [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    removed = [line[1:] for line in changed if line.startswith("-")]
    added = [line[1:] for line in changed if line.startswith("+")]
    assert removed and all(re.match(r"from celery(\.[\w.]+)? import ", line) for line in removed)
    assert [line for line in added if not line.startswith("from django_taskq")] == [
        f'    "{INSTALLED_APP}",']
    assert len(added) == len(removed) + 1
    sources = "\n".join(path.read_text() for path in converted.rglob("*.py")
                        if path.name != "celery.py" or path.parent != converted)
    assert not re.search(r"^\s*(from|import) celery\b", sources, re.MULTILINE)


@pytest.mark.subprocess
def test_check_passes_with_the_expected_warnings_and_migrate_works(converted, tmp_path):
    project = Project(converted, "db://default", "django-db")
    project.env["PROJ_DB"] = str(tmp_path / "check.sqlite3")
    checked = project.manage("check")
    assert checked.returncode == 0, checked.stderr
    found = set(re.findall(r"^\?: \(([\w.]+)\) (\w+) ", checked.stderr, re.MULTILINE))
    assert found == EXPECTED_WARNINGS, checked.stderr
    migrated = project.manage("migrate", "-v", "0")
    assert migrated.returncode == 0, migrated.stderr
    assert (tmp_path / "check.sqlite3").exists()
    unmade = project.manage("makemigrations", "--check", "--dry-run")
    assert unmade.returncode == 0, unmade.stdout


@pytest.mark.subprocess
def test_the_beat_schedule_moves_over(converted, tmp_path):
    """CELERY_BEAT_SCHEDULE (crontab from celery.schedules) and add_periodic_task in
    on_after_configure become periodic task rows when taskbeat starts."""
    project = Project(converted, "db://default", "django-db")
    project.env["PROJ_DB"] = str(tmp_path / "beat.sqlite3")
    assert project.manage("migrate", "-v", "0").returncode == 0
    beat = subprocess.Popen([sys.executable, "manage.py", "taskbeat"], cwd=converted,
                            env=project.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        lines = []
        for line in beat.stdout:
            lines.append(line)
            if "declared in code upserted" in line:
                break
    finally:
        beat.terminate()
        output = "".join(lines) + beat.communicate(timeout=30)[0]
    assert beat.returncode == 0, output
    shown = project.manage("shell", "-c", (
        "from django_taskq.models import PeriodicTask\n"
        "for t in PeriodicTask.objects.order_by('name'):\n"
        "    print(t.name, t.task, t.schedule().describe(), t.expire_seconds, sep='|')"))
    assert shown.returncode == 0, shown.stderr
    assert [line for line in shown.stdout.splitlines() if "|" in line] == [
        "ping every 5 minutes|proj.celery.ping|every 5 minutes|None",
        "ping-every-minute|proj.celery.ping|every minute|30",
        "purge-abandoned-carts|shop.maintenance.purge_abandoned_carts|"
        "At 03:30, Monday through Friday, UTC|None",
        "taskq.backend_cleanup|django_taskq.backend_cleanup|At 04:00, UTC|None"]


# -- a real worker ---------------------------------------------------------------------------


def _flush(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()


@pytest.fixture(scope="module")
def redis_db() -> Iterator[str]:
    url = require_service(services.REDIS_URL, "Redis")
    _flush(url)
    yield url
    _flush(url)


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def run(request, converted, tmp_path_factory) -> Run:
    """The converted project under ``taskworker -P prefork -c 2 -Q main,billing``: on the
    database broker (results as django-celery-results' ``django-db``), or all on Redis."""
    if request.param == "sqlite":
        urls = ("db://default", "django-db")
    else:
        urls = (request.getfixturevalue("redis_db"),) * 2
        _flush(urls[0])
    path = tmp_path_factory.mktemp(f"run-{request.param}") / "project"
    return run_worker(Project(shutil.copytree(converted, path), *urls), taskworker())


@pytest.fixture(scope="module")
def celery_run(redis_db, tmp_path_factory) -> Run:
    """The original project under a real ``celery worker`` with the same options, on Redis."""
    pytest.importorskip("celery")
    _flush(redis_db)
    path = copy_project(tmp_path_factory.mktemp("celery-run") / "project")
    return run_worker(Project(path, redis_db, redis_db), celery_worker())


@pytest.mark.subprocess
def test_results_come_back(run):
    assert run.returncode == 0, run.output
    for name, value in {"add": 5, "notify": "gave up", "report": "partial", "purge": 0,
                        "ping": "pong", "refund": {"order": 7, "refunded": "9.99"}}.items():
        assert (run.report[name]["state"], run.value(name)) == ("SUCCESS", value), name
    assert run.value("whoami") == {"id": run.id("whoami"), "name": "shop.tasks.whoami",
                                   "queue": "billing"}  # apply_async(queue=...)
    # send_task by name, routed by the CELERY_TASK_ROUTES glob; from a task, it is the parent.
    assert run.value("charge") == {"order": 7, "amount": "9.99", "queue": "billing",
                                   "parent_id": None}
    assert run.value("checkout") == run.id("checkout_charge")
    assert run.value("checkout_charge")["parent_id"] == run.id("checkout")
    failed = run.report["reserve_sold_out"]
    assert failed["state"] == "FAILURE" and failed["traceback"]
    assert failed["value"].endswith("sold-out: nothing left")
    assert run.report["visit_failed"] == {"id": run.id("visit_failed"), "state": "FAILURE",
                                          "value": "page is required"}
    assert run.report["revoked"]["state"] == run.report["expired"]["state"] == "REVOKED"
    assert run.report["extended"] == {"name": "shop.tasks.reserve_stock",
                                      "args": ["flaky-lamp", 2], "kwargs": {}, "queue": "main",
                                      "retries": 1, "worker": "proj@test"}


@pytest.mark.subprocess
def test_retries_happened(run):
    assert run.value("reserve_flaky")["retries"] == 1  # self.retry(countdown=...)
    assert run.value("fetch_rates")["retries"] == 1  # autoretry_for + retry_backoff
    retried = {e["task"]: e["reason"] for e in run.audit if e["event"] == "task_retry"}
    assert retried.pop("shop.tasks.notify_customer").startswith("Retry in 0.2s")
    assert retried == {
        "shop.tasks.reserve_stock": "Retry in 0.5s: ConnectionError('warehouse timed out')",
        "shop.tasks.fetch_rates": "Retry in 1s: ConnectionError('rates service unavailable')"}
    assert "giving up on ada@example.com after 1 retries" in run.output  # MaxRetriesExceededError


@pytest.mark.subprocess
def test_base_class_handlers_and_task_signals_fire(run):
    assert run.events("reserve_flaky") == [
        "task_prerun", "before_start", "on_retry", "task_retry", "task_postrun",
        "task_prerun", "before_start", "on_success", "after_return", "task_postrun"]
    calls = [e for e in run.audit if e["event"] == "__call__" and e["args"] == ["flaky-lamp", 2]]
    assert len(calls) == 2  # the __call__ override wraps each run
    assert run.events("reserve_sold_out") == ["task_prerun", "before_start", "on_failure",
                                              "task_failure", "after_return", "task_postrun"]
    sold_out = run.id("reserve_sold_out")
    by_event = {e["event"]: e for e in run.audit if e.get("task_id") == sold_out}
    assert by_event["on_failure"]["exc"] == "OutOfStock" and by_event["on_failure"]["traceback"]
    assert by_event["task_failure"]["message"] == "sold-out: nothing left"
    assert by_event["after_return"]["status"] == by_event["task_postrun"]["state"] == "FAILURE"
    assert by_event["before_start"]["args"] == ["sold-out", 1]
    # task_postrun was connected with sender=reserve_stock: no other task reports it.
    assert {e["task"] for e in run.audit if e["event"] == "task_postrun"} == {
        "shop.tasks.reserve_stock"}
    assert run.events("checkout") == ["task_prerun", "before_start", "on_success", "after_return"]
    assert run.events("add") == run.events("charge") == ["task_prerun"]
    # throws=(OutOfStock,): an expected failure is logged without its traceback.
    assert f"task raised expected name=shop.tasks.reserve_stock id={sold_out}" in run.output


@pytest.mark.subprocess
def test_the_publish_signal_header_reaches_the_task(run):
    assert run.value("reserve_flaky")["tenant"] == "acme"
    assert run.value("reserve_flaky")["category"] == "orders"  # an option of the project's own


@pytest.mark.subprocess
def test_reject_dead_letters_and_ignore_stores_nothing(run):
    assert "shop.tasks.cancel_order" in run.dead_letters
    assert "rejected: order 999999 does not exist" in run.dead_letters
    assert "1 dead letter(s) in all" in run.dead_letters
    assert f"task rejected name=shop.tasks.cancel_order id={run.id('cancel_unknown')}" \
        in run.output
    assert f"task ignored name=shop.tasks.refresh_cache id={run.id('refresh_fresh')}" \
        in run.output
    # Ignore stores no final state: STARTED (CELERY_TASK_TRACK_STARTED) stays, as in Celery.
    assert run.states["refresh_fresh"] == "STARTED"


@pytest.mark.subprocess
def test_task_logger_lines_carry_the_task_name_and_id(run):
    flaky = run.id("reserve_flaky")
    assert f"shop.tasks.reserve_stock[{flaky}]: reserving 2 x flaky-lamp (try 1)" in run.output
    assert f"shop.tasks.reserve_stock[{flaky}]: reserving 2 x flaky-lamp (try 2)" in run.output
    report = run.id("report")
    assert f"shop.tasks.build_report[{report}]: report cut short by its soft time limit" \
        in run.output
    assert f"Request: Request(id='{run.id('debug')}', task='proj.celery.debug_task'" in run.output


@pytest.mark.subprocess
def test_worker_signals_fire_in_the_worker_and_its_children(run):
    assert run.worker_events() == ["after_setup_logger", "after_setup_task_logger",
                                   "worker_ready", "worker_shutting_down"]
    stop = next(e for e in run.audit if e["event"] == "worker_shutting_down")
    assert (stop["sig"], stop["how"], stop["exitcode"]) == ("SIGTERM", "Warm", 0)
    assert {e["loglevel"] for e in run.audit if e["event"].startswith("after_setup")} == {20}
    children = {e["pid"] for e in run.audit if e["event"] == "worker_process_init"}
    assert len(children) == 2 and run.worker_pid not in children
    assert {e["pid"] for e in run.audit if e["event"] == "task_prerun"} <= children


# -- side by side with a real celery worker --------------------------------------------------

#: Smoke entries that differ from Celery's on purpose or for a finding tested below.
DIFFERENT = {"reserve_sold_out": "results never import classes: RemoteTaskError's text",
             "revoked": "the TaskRevokedError's text", "expired": "the TaskRevokedError's text"}


@pytest.mark.subprocess
def test_the_same_as_under_a_celery_worker(run, celery_run):
    ours, celery = run.named_report(), celery_run.named_report()
    assert {k: v for k, v in ours.items() if k not in DIFFERENT} == \
        {k: v for k, v in celery.items() if k not in DIFFERENT}
    assert {k: ours[k]["state"] for k in DIFFERENT} == {k: celery[k]["state"] for k in DIFFERENT}
    for name in ("add", "reserve_flaky", "reserve_sold_out", "checkout", "fetch_rates", "notify",
                 "charge", "refresh_fresh", "visit_failed"):
        assert run.events(name) == celery_run.events(name), name
    assert run.worker_events() == celery_run.worker_events()
    assert run.states["refresh_fresh"] == celery_run.states["refresh_fresh"]


@pytest.mark.subprocess
def test_a_rejected_task_ends_failed_as_in_celery(run, celery_run):
    assert celery_run.states["cancel_unknown"] == "FAILURE"
    assert run.events("cancel_unknown") == celery_run.events("cancel_unknown")
    assert run.states["cancel_unknown"] == "FAILURE"


@pytest.mark.subprocess
def test_an_ignored_result_leaves_no_state_behind(run, celery_run):
    assert (celery_run.states["debug"], celery_run.states["visit"]) == ("PENDING", "PENDING")
    assert (run.states["debug"], run.states["visit"]) == ("PENDING", "PENDING")


@pytest.mark.subprocess
def test_a_custom_header_is_an_attribute_of_the_request(run):
    assert run.value("tenant") == "acme"


def test_a_retry_without_exception_reads_as_celerys():
    assert str(Retry(exc=None, when=0.2)) == "Retry in 0.2s"


# -- the project's own eager tests ---------------------------------------------------------


def _eager(converted: Path, tmp_path: Path, *labels: str) -> subprocess.CompletedProcess[str]:
    project = Project(converted, "db://default", "django-db")
    project.env["PROJ_DB"] = str(tmp_path / "eager.sqlite3")
    return project.manage("test", *labels)


@pytest.mark.subprocess
def test_the_projects_eager_tests_pass(converted, tmp_path):
    done = _eager(converted, tmp_path, "--exclude-tag", EAGER_RETRY_TAG)
    assert done.returncode == 0, done.stderr
    assert "Ran 14 tests" in done.stderr


@pytest.mark.subprocess
def test_an_eager_retry_propagates_as_in_celery(converted, tmp_path):
    done = _eager(converted, tmp_path, "--tag", EAGER_RETRY_TAG)
    assert done.returncode == 0, done.stderr


# -- bad options and settings name their fix ------------------------------------------------


def _sample(x, y):
    return x + y


def test_a_bad_decorator_option_value_names_the_fix():
    with pytest.raises(TypeError, match=r"Task .*_sample: priority must be a whole number "
                                        r"from 0 to 9 \(higher runs first\), not 42\."):
        shared_task(priority=42)(_sample)
    assert f"{__name__}._sample" not in registry


def test_an_unknown_apply_async_option_is_refused():
    task = build_task(_sample)  # not registered: nothing leaks into other tests
    with pytest.raises(TypeError, match=r"apply_async\(\) got unknown option\(s\) countdwn; "
                                        r"accepted: .*countdown"):
        task.apply_async((1, 2), countdwn=5)


def test_a_misspelled_decorator_option_names_the_option_meant(recwarn):
    messages = []
    try:
        shared_task(autoretry_fro=(ValueError,))(_sample)
    except TypeError as exc:
        messages.append(str(exc))
    finally:
        registry.unregister(f"{__name__}._sample")
    messages += [str(warning.message) for warning in recwarn]
    assert any("autoretry_for" in message for message in messages)


def test_a_task_has_its_app():
    class Probe(Task):
        name = "tests.test_celery_project.probe"

    assert Probe().app.send_task


def test_states_has_celerys_names():
    from django_taskq import states

    assert states.PROPAGATE_STATES == frozenset({states.FAILURE, states.REVOKED})
    assert (states.REJECTED, states.IGNORED) == ("REJECTED", "IGNORED")


@pytest.mark.subprocess
def test_bad_celery_settings_name_their_fix(converted, tmp_path):
    path = shutil.copytree(converted, tmp_path / "project")
    settings = path / "proj" / "settings.py"
    settings.write_text(settings.read_text() + 'CELERY_TASK_ROUTE = {"x.*": "x"}\n'
                        'CELERY_TASK_ALWAYS_EAGER = "yes"\n')
    checked = Project(path, "db://default", "django-db").manage("check")
    assert checked.returncode == 1
    assert "(django_taskq.E010) CELERY_TASK_ALWAYS_EAGER = 'yes' is not valid." in checked.stderr
    assert "HINT: CELERY_TASK_ALWAYS_EAGER must be True or False." in checked.stderr
    assert "(django_taskq.W013) CELERY_TASK_ROUTE is not a Celery setting: a typo?" \
        in checked.stderr
    assert "HINT: Did you mean CELERY_TASK_ROUTES?" in checked.stderr
