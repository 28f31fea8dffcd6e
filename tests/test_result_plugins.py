"""Result stores of other packages, plugged in by URL scheme (TASKQ['RESULT_BACKEND_SCHEMES']):
the store of tests/plugin_backend.py runs a real task with a worker and a taskworker process;
bad entries are configuration errors and check errors (E020), each with its fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from django.db import connections

from django_taskq import GroupResult, chord
from django_taskq.checks import check_result_stores, check_settings
from django_taskq.exceptions import ConfigurationError
from django_taskq.results import backend_from_url, get_backend
from tests.helpers import drain
from tests.plugin_backend import SQLiteFileBackend
from tests.testapp import tasks

pytestmark = [pytest.mark.own_server, pytest.mark.subprocess, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parent.parent
PLUGIN = {"sqlitefile": "tests.plugin_backend.SQLiteFileBackend"}


@pytest.fixture
def plugged(settings, tmp_path):
    """RESULT_BACKEND = sqlitefile://<tmp>/results.sqlite3 (broker: memory://)."""
    url = f"sqlitefile://{tmp_path / 'results.sqlite3'}"
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": "memory://", "RESULT_BACKEND": url,
                      "RESULT_BACKEND_SCHEMES": PLUGIN, "RESULT_EXPIRES": 600}
    return url


def test_the_plugged_store_is_built_from_its_url_with_the_common_options(plugged, tmp_path):
    backend = get_backend()
    assert isinstance(backend, SQLiteFileBackend)
    assert backend.path == str(tmp_path / "results.sqlite3")
    assert (backend.expires, backend.serializer, backend.accept) == (600, "json", ("json",))
    assert check_result_stores() == [] and check_settings() == []


def test_a_worker_runs_a_task_end_to_end_on_the_plugged_store(plugged):
    from django_taskq.worker import Worker, WorkerOptions

    worker = Worker(WorkerOptions.from_settings(pool="solo", queues=("default",)))
    try:
        result = tasks.add.delay(2, 3)
        assert get_backend().get(result.id).state == "PENDING"
        assert drain(worker, result).get(timeout=1) == 5
        failed = tasks.fail.delay("no")
        with pytest.raises(ValueError, match="no"):
            drain(worker, failed).get(timeout=1)
        saved = GroupResult("plugged-group", [result, failed]).save()
        assert [r.id for r in GroupResult.restore(saved.id)] == [result.id, failed.id]
    finally:
        worker.heartbeat.stop()


def test_a_store_without_chord_counting_says_so(plugged):
    with pytest.raises(NotImplementedError, match="SQLiteFileBackend does not count chords"):
        chord([tasks.add.s(1, 1)], tasks.tsum.s()).delay()


def test_a_taskworker_process_stores_into_the_plugged_store(plugged, redis_url, settings):
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": redis_url}
    env = dict(os.environ, PYTHONPATH=str(ROOT), DJANGO_SETTINGS_MODULE="tests.settings",
               TASKQ_TEST_SQLITE=str(connections["default"].settings_dict["NAME"]),
               TASKQ_TEST_OVERRIDES=json.dumps({"BROKER_URL": redis_url, "RESULT_BACKEND": plugged,
                                                "RESULT_BACKEND_SCHEMES": PLUGIN,
                                                "POLL_INTERVAL": 0.1}))
    with tempfile.TemporaryFile(mode="w+") as log:
        proc = subprocess.Popen([sys.executable, "-m", "django", "taskworker", "--pool", "solo"],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            assert tasks.add.delay(40, 2).get(timeout=30) == 42
        finally:
            proc.kill()
            proc.wait()


# -- bad entries: an error naming the fix, from the URL and from manage.py check -------------

@pytest.mark.parametrize("path, error", [
    ("tests.nowhere.Backend", r"cannot be imported: No module named 'tests.nowhere'"),
    ("tests.plugin_backend.Missing", r"cannot be imported: .*Missing"),
    ("NoDots", r"cannot be imported"),
    ("tests.plugin_backend.NotABackend", r"not a subclass of django_taskq.results.ResultBackend"),
    ("tests.plugin_backend.HalfABackend", r"does not implement cleanup, forget, mark_pending, "
                                          r"store_many"),
])
def test_bad_dotted_paths_are_configuration_and_check_errors(settings, path, error):
    settings.TASKQ = {**settings.TASKQ, "RESULT_BACKEND_SCHEMES": {"mine": path}}
    with pytest.raises(ConfigurationError, match=error):
        backend_from_url("mine://somewhere")
    [message] = check_result_stores()
    assert message.id == "django_taskq.E020" and "RESULT_BACKEND_SCHEMES" in message.msg


def test_a_scheme_clashing_with_a_built_in_one_is_refused(settings):
    settings.TASKQ = {**settings.TASKQ, "RESULT_BACKEND_SCHEMES": {"redis": PLUGIN["sqlitefile"]}}
    [message] = check_result_stores()
    assert message.id == "django_taskq.E020" and "redis:// is a built-in result store" in message.msg
    assert backend_from_url("redis://127.0.0.1:1/0").__class__.__name__ == "RedisResultBackend"


def test_a_plugin_scheme_in_use_with_a_bad_path_is_e004_too(settings):
    settings.TASKQ = {**settings.TASKQ, "RESULT_BACKEND": "mine://x",
                      "RESULT_BACKEND_SCHEMES": {"mine": "tests.nowhere.Backend"}}
    assert "django_taskq.E004" in [m.id for m in check_settings()]


@pytest.mark.parametrize("table", [{"Bad Scheme": "a.B"}, {"ok": ""}, ["ok"], {"ok": 3}])
def test_a_malformed_scheme_table_is_a_setting_error(settings, table):
    settings.TASKQ = {**settings.TASKQ, "RESULT_BACKEND_SCHEMES": table}
    [message] = [m for m in check_settings() if m.id == "django_taskq.E002"]
    assert "RESULT_BACKEND_SCHEMES must be a dict of lowercase URL scheme" in message.hint


def test_an_unknown_scheme_lists_the_plugged_ones(settings):
    settings.TASKQ = {**settings.TASKQ, "RESULT_BACKEND_SCHEMES": PLUGIN}
    with pytest.raises(ConfigurationError, match=r"'cassandra' is not supported; .*sqlitefile://"):
        backend_from_url("cassandra://host/ks")


def test_the_plugged_store_takes_a_file(settings):
    settings.TASKQ = {**settings.TASKQ, "RESULT_BACKEND_SCHEMES": PLUGIN}
    with pytest.raises(ConfigurationError, match="give a file"):
        backend_from_url("sqlitefile://")


def test_manage_py_check_fails_on_a_bad_entry(settings):
    from django.core.management import call_command
    from django.core.management.base import SystemCheckError

    settings.TASKQ = {**settings.TASKQ, "RESULT_BACKEND_SCHEMES": {"cache": PLUGIN["sqlitefile"]}}
    with pytest.raises(SystemCheckError, match=r"django_taskq.E020.*cache:// is a built-in"):
        call_command("check", "--tag", "django_taskq")
