"""Review of issue 14's result stores (cache://, rpc://, plugged-in stores): cases a user coming
from Celery would meet, each a bug found in review."""

from __future__ import annotations

import json

import pytest
from django.core.cache import caches

from django_taskq import states
from django_taskq.outcome import Outcome
from django_taskq.results import get_backend
from tests.memcachedserver import memcached, memcached_caches, redis_caches

pytestmark = [pytest.mark.own_server, pytest.mark.django_db(transaction=True)]


@pytest.fixture(params=["memcached", "redis"])
def cache_store(request, settings):
    if request.param == "memcached":
        settings.CACHES = memcached_caches(memcached().location)
    else:
        settings.CACHES = redis_caches(request.getfixturevalue("redis_url"))
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": "memory://",
                      "RESULT_BACKEND": "cache://results"}
    yield get_backend()
    caches.close_all()


def done(task_id, value):
    return Outcome(task_id, "t", states.SUCCESS, payload=json.dumps(value).encode())


def test_a_chord_whose_counter_was_evicted_still_completes(cache_store):
    cache_store.set_chord_size("g1", 2)
    assert cache_store.add_chord_part("g1", 0, done("a", 1)) is None
    cache_store.cache.delete(cache_store.chord_key("g1", ".c"))  # evicted by memcached's LRU
    parts = cache_store.add_chord_part("g1", 1, done("b", 2))
    assert parts is not None and [p.value for p in parts] == [1, 2]


def test_a_chord_whose_size_was_evicted_is_logged_not_silent(cache_store, caplog):
    cache_store.set_chord_size("g2", 2)
    cache_store.cache.delete(cache_store.chord_key("g2", ".s"))  # evicted
    assert cache_store.add_chord_part("g2", 0, done("a", 1)) is None
    assert "chord g2 cannot complete" in caplog.text and "evicted" in caplog.text
    caplog.clear()
    cache_store.set_chord_size("g3", 1)  # a late duplicate after the body was sent: quiet
    assert cache_store.add_chord_part("g3", 0, done("c", 1)) is not None
    cache_store.chord_sent("g3")
    assert cache_store.add_chord_part("g3", 0, done("c", 1)) is None
    assert "cannot complete" not in caplog.text
