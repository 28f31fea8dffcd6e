"""cache://<alias>: results, groups and chords in a Django cache, on a real memcached this module
starts (pymemcache) and on Redis through Django's own RedisCache; the item size limit, dead
servers, bad configuration, the system checks and a real taskworker process sharing the cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from django.core.cache import caches
from django.db import connections

from django_taskq import GroupResult, chain, chord, group, states
from django_taskq.exceptions import (
    ConfigurationError,
    ResultBackendConnectionError,
    ResultBackendError,
)
from django_taskq.outcome import Outcome
from django_taskq.results import backend_from_url, get_backend
from django_taskq.results.base import COMPRESSED_MAGIC
from tests import test_canvas_groups, test_chord_counting
from tests.helpers import drain
from tests.memcachedserver import memcached, memcached_caches, redis_caches
from tests.redisserver import free_port
from tests.testapp import tasks

pytestmark = [pytest.mark.own_server, pytest.mark.subprocess,
              pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=["memcached", "redis"])
def store(request, settings):
    """RESULT_BACKEND = cache://results on memcached or Redis (broker: memory://)."""
    if request.param == "memcached":
        settings.CACHES = memcached_caches(memcached().location)
    else:
        settings.CACHES = redis_caches(request.getfixturevalue("redis_url"))
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": "memory://",
                      "RESULT_BACKEND": "cache://results"}
    yield get_backend()
    caches.close_all()


@pytest.fixture
def worker(store):
    from django_taskq.worker import Worker, WorkerOptions

    made = Worker(WorkerOptions.from_settings(pool="solo", queues=("default",)))
    yield made
    made.heartbeat.stop()


def done(task_id, value):
    return Outcome(task_id, "t", states.SUCCESS, payload=json.dumps(value).encode())


# -- the chord and saved-group suites of the other stores, on the cache ----------------------

@pytest.mark.parametrize("suite", [
    test_chord_counting.test_a_header_task_recorded_twice_counts_once,
    test_chord_counting.test_only_the_completing_task_may_complete_again_until_the_body_is_sent,
    test_chord_counting.test_failures_are_kept_with_their_exception_and_unknown_chords_ignored,
    test_chord_counting.test_two_header_tasks_finishing_at_once_complete_the_chord_once,
    test_chord_counting.test_a_chord_sent_again_after_it_completed_runs_again,
    test_chord_counting.test_one_task_twice_in_a_header_counts_twice,
    test_canvas_groups.test_save_restore_delete,
], ids=lambda suite: suite.__name__)
def test_shared_chord_and_group_suites(store, suite):
    suite(configured="cache://results")


def test_header_tasks_without_an_index_take_free_places(store):
    store.set_chord_size("u", 2)
    assert store.add_chord_part("u", None, done("a", 1)) is None
    assert store.add_chord_part("u", None, done("a", 1)) is None  # redelivered: same place
    assert [p.value for p in store.add_chord_part("u", None, done("b", 2))] == [1, 2]


# -- a real worker: results, a chord, the item size limit ------------------------------------

def test_a_worker_stores_results_and_completes_a_chord(worker):
    result = tasks.add.delay(2, 3)
    assert drain(worker, result).get(timeout=1) == 5
    whole = chord([tasks.add.s(1, 1), tasks.add.s(2, 2)], tasks.tsum.s()).delay()
    assert drain(worker, whole).get(timeout=1) == 6
    # A header with a nested group and a chain in it (flattened; the chain's last step counts).
    mixed = chord([tasks.add.s(1, 1), group(tasks.add.s(2, 2), tasks.add.s(3, 3)),
                   chain(tasks.add.s(1, 1), tasks.add.s(1))], tasks.tsum.s()).delay()
    assert drain(worker, mixed).get(timeout=1) == 15


@pytest.mark.parametrize("store", ["memcached"], indirect=True)  # Redis takes 512 MB values
def test_a_result_larger_than_memcached_takes_fails_with_a_clear_error(worker, store, settings):
    big = tasks.echo.delay("x" * 1_200_000)
    drain(worker, big)
    with pytest.raises(ResultBackendError, match=r"object too large.*-I") as info:
        big.get(timeout=1)
    assert "bytes" in str(info.value)
    settings.TASKQ = {**settings.TASKQ, "RESULT_COMPRESSION": "zlib"}  # compressed, it fits
    from django_taskq.worker import Worker, WorkerOptions

    squeezed = Worker(WorkerOptions.from_settings(pool="solo", queues=("default",)))
    try:
        fits = tasks.echo.delay("x" * 1_200_000)
        assert len(drain(squeezed, fits).get(timeout=1)["args"][0]) == 1_200_000
    finally:
        squeezed.heartbeat.stop()


# -- what is stored, expiry, keys ------------------------------------------------------------

def test_bytes_survive_and_compression_is_celerys(store):
    import msgpack

    store.accept, store.serializer, store.compression = ("json", "msgpack"), "msgpack", "zlib"
    store.store(Outcome("bin", "t", states.SUCCESS, payload=msgpack.packb({"b": b"\x00\xff"}),
                        content_type="application/x-msgpack", content_encoding="binary"))
    raw = caches["results"].get(store.key("bin"))
    assert isinstance(raw, bytes) and raw.startswith(COMPRESSED_MAGIC)
    assert store.get("bin").result == {"b": b"\x00\xff"}


def test_results_expire_with_result_expires(store, settings):
    store.expires = 1
    store.store(done("short", 1))
    assert store.get("short").result == 1
    if "redis" in settings.CACHES["results"]["BACKEND"]:
        import redis

        client = redis.Redis.from_url(settings.CACHES["results"]["LOCATION"])
        assert client.pttl("taskq-test:1:celery-task-meta-short") <= 1000
    deadline = time.monotonic() + 5
    while store.get("short") is not None:
        assert time.monotonic() < deadline, "the result did not expire"
        time.sleep(0.1)


def test_a_forked_child_opens_its_own_cache_connection(store):
    store.store(done("before", 1))  # the parent's connection is open
    parent = caches["results"]
    pid = os.fork()
    if pid == 0:  # the child: a prefork pool's
        try:
            store.store(done("child", 2))
            os._exit(0 if caches["results"] is not parent else 3)
        finally:
            os._exit(4)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert (store.get("child").result, store.get("before").result) == (2, 1)


def test_ids_memcached_cannot_take_as_keys_are_hashed(store):
    odd = "an id with spaces " + "x" * 300
    store.mark_pending([(odd, "t")])
    store.store(done(odd, 7))
    assert store.get(odd).result == 7 and store.get(odd).task_id == odd
    assert store.key(odd).startswith("celery-task-meta-sha256-")


def test_a_foreign_value_under_a_result_key_is_an_error(store):
    caches["results"].set(store.key("foreign"), {"not": "bytes"})
    with pytest.raises(ResultBackendError, match="holds a dict"):
        store.get("foreign")


# -- unreachable servers, bad configuration, checks ------------------------------------------

@pytest.mark.parametrize("backend, location", [
    ("django.core.cache.backends.memcached.PyMemcacheCache", "127.0.0.1:{port}"),
    ("django.core.cache.backends.redis.RedisCache", "redis://127.0.0.1:{port}/0"),
])
def test_a_dead_cache_server_is_a_connection_error(settings, backend, location):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
                       "dead": {"BACKEND": backend,
                                "LOCATION": location.format(port=free_port())}}
    dead = backend_from_url("cache://dead")
    try:
        with pytest.raises(ResultBackendConnectionError, match="cache 'dead' failed"):
            dead.store(done("x", 1))
        with pytest.raises(ResultBackendConnectionError):
            dead.store(done("x", 1))  # pymemcache's "failing server" answer too
    finally:
        caches.close_all()


def test_bad_cache_urls_are_configuration_errors(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
                       "nothing": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
    with pytest.raises(ConfigurationError, match=r"'missing', which is not in CACHES.*default"):
        backend_from_url("cache://missing")
    with pytest.raises(ConfigurationError, match="DummyCache, which stores nothing"):
        backend_from_url("cache://nothing")
    with pytest.raises(ConfigurationError, match="takes a CACHES alias and nothing else"):
        backend_from_url("cache://default?timeout=3")
    assert backend_from_url("cache://").alias == "default"


def test_a_cache_whose_client_library_is_missing_names_what_to_install(settings):
    pytest.importorskip("django.core.cache.backends.memcached")
    try:
        import pylibmc  # noqa: F401
        pytest.skip("pylibmc is installed here")
    except ImportError:
        pass
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
                       "mc": {"BACKEND": "django.core.cache.backends.memcached.PyLibMCCache",
                              "LOCATION": "127.0.0.1:11211"}}
    with pytest.raises(ConfigurationError, match=r"cannot be loaded: No module named 'pylibmc'"
                                                 r".*pip install pylibmc"):
        backend_from_url("cache://mc")


def test_checks_report_unshared_and_non_atomic_caches(settings, tmp_path):
    from django_taskq.checks import check_result_stores, check_settings

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
                       "files": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                                 "LOCATION": str(tmp_path)}}
    settings.TASKQ = {"RESULT_BACKEND": "cache://"}
    [local] = check_result_stores()
    assert local.id == "django_taskq.W020" and "LocMemCache" in local.msg
    settings.TASKQ = {"RESULT_BACKEND": "cache://files"}
    [files] = check_result_stores()
    assert files.id == "django_taskq.W021" and "not atomic" in files.msg
    settings.TASKQ = {"RESULT_BACKEND": "cache://gone"}
    assert [m.id for m in check_settings() if "CACHES" in m.msg] == ["django_taskq.E004"]


def test_memcached_and_redis_caches_pass_the_checks(store):
    from django_taskq.checks import check_result_stores

    assert check_result_stores() == []


# -- a taskworker process and this one share the cache ---------------------------------------

def test_a_worker_process_stores_what_this_process_reads(settings, redis_url):
    location = memcached().location
    settings.CACHES = memcached_caches(location)
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": redis_url,
                      "RESULT_BACKEND": "cache://results"}
    env = dict(os.environ, PYTHONPATH=str(ROOT), DJANGO_SETTINGS_MODULE="tests.cache_settings",
               TASKQ_TEST_CACHES=json.dumps(settings.CACHES),
               TASKQ_TEST_SQLITE=str(connections["default"].settings_dict["NAME"]),
               TASKQ_TEST_OVERRIDES=json.dumps({"BROKER_URL": redis_url,
                                                "RESULT_BACKEND": "cache://results",
                                                "POLL_INTERVAL": 0.1}))
    with tempfile.TemporaryFile(mode="w+") as log:
        proc = subprocess.Popen([sys.executable, "-m", "django", "taskworker", "--pool", "solo",
                                 "--loglevel", "INFO"], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)
        try:
            ok, big = tasks.add.delay(20, 22), tasks.echo.delay("y" * 1_100_000)
            assert ok.get(timeout=30) == 42
            with pytest.raises(ResultBackendError, match="too large"):
                big.get(timeout=30)
            group = GroupResult("g-proc", [ok, big]).save()
            assert [r.id for r in GroupResult.restore(group.id)] == [ok.id, big.id]
        finally:
            proc.kill()
            proc.wait()
            log.seek(0)
            output = log.read()
        assert "cannot be stored" in output, output[-2000:]
    caches.close_all()


# -- moving from Celery ----------------------------------------------------------------------

def test_celerys_cache_settings_become_the_cache_store_or_say_how():
    from django.test import override_settings

    from django_taskq.checks import check_celery_settings
    from django_taskq.conf import get_settings

    with override_settings(TASKQ={}, CELERY_RESULT_BACKEND="django-cache",
                           CELERY_CACHE_BACKEND="results"):
        assert get_settings().RESULT_BACKEND == "cache://results"
        assert check_celery_settings() == []
    with override_settings(TASKQ={}, CELERY_RESULT_BACKEND="cache",
                           CELERY_CACHE_BACKEND="memcached://10.1.2.3:11211/"):
        [note] = check_celery_settings()
        assert note.id == "django_taskq.W011"
        assert "'LOCATION': '10.1.2.3:11211'" in note.hint and "cache://results" in note.hint
        assert get_settings().RESULT_BACKEND == "db://default"

