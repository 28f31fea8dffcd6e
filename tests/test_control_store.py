"""The control store contract (memory, SQLite, PostgreSQL, MariaDB, Redis), and rate parsing.

Memory and database stores run on a fake clock; Redis keeps time itself (the server's TIME), so
its tests use slow rates and short real sleeps. Global enforcement is tested with real
processes hammering one bucket.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core import checks
from django.db import connections

from django_taskq import control
from django_taskq.control.database import DatabaseControlStore
from django_taskq.control.memory import MemoryControlStore
from django_taskq.control.rate import Rate, parse_rate
from django_taskq.exceptions import BrokerConnectionError, ConfigurationError, RateLimitError
from django_taskq.service_url import parse
from tests.conftest import DB_ALIASES, require_alias

STORE_KINDS = ["memory", "sqlite", "postgres", "mariadb", "redis"]
DATABASE_KINDS = ("sqlite", "postgres", "mariadb")
#: Four tokens a second: a quarter-second interval is long next to a Redis round trip, and
#: short enough for Redis tests to sleep through.
RATE = Rate(4, 1.0)
ROOT = Path(__file__).resolve().parent.parent


class SecondsClock:
    """A settable Unix-seconds clock for the memory and database stores."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def seconds_clock() -> SecondsClock:
    return SecondsClock()


def kinds(*names: str) -> list:
    """``names`` as parameters; database kinds marked to get their (truncated) test database."""
    params = []
    for name in names:
        alias = DB_ALIASES.get(name)
        marks = ([pytest.mark.django_db(transaction=True, databases=[alias])]
                 if alias in django_settings.DATABASES else [])
        params.append(pytest.param(name, marks=marks, id=name))
    return params


@pytest.fixture(params=kinds(*STORE_KINDS))
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _use_database(request: pytest.FixtureRequest, kind: str) -> str:
    alias = require_alias(kind)
    request.getfixturevalue("transactional_db")
    return alias


@pytest.fixture
def make_store(store_kind: str, seconds_clock: SecondsClock, request: pytest.FixtureRequest):
    """Build stores of ``store_kind`` over the same storage (new connections each time)."""
    made = []
    memory = MemoryControlStore(now=seconds_clock)  # in-process: the object is the storage
    if store_kind == "redis":
        url = parse(request.getfixturevalue("redis_url"), setting="CONTROL_URL")
    elif store_kind in DATABASE_KINDS:
        alias = _use_database(request, store_kind)

    def make():
        if store_kind == "memory":
            store = memory
        elif store_kind == "redis":
            from django_taskq.control.redis import RedisControlStore

            store = RedisControlStore(url)
        else:
            store = DatabaseControlStore(alias=alias, now=seconds_clock)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def store(make_store):
    return make_store()


@pytest.fixture
def elapse(store_kind: str, seconds_clock: SecondsClock):
    """Let ``seconds`` pass for the store: the fake clock, or real time for Redis."""
    def elapse(seconds: float) -> None:
        if store_kind == "redis":
            time.sleep(seconds)
        else:
            seconds_clock.advance(seconds)
    return elapse


# -- parse_rate -------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("100/s", Rate(100, 1.0)),
    ("100/m", Rate(100, 60.0)),
    ("100/h", Rate(100, 3600.0)),
    (" 5 / m ", Rate(5, 60.0)),
    ("10", Rate(10, 1.0)),
    (10, Rate(10, 1.0)),
    (2.0, Rate(2, 1.0)),
    ("0.5/s", Rate(1, 2.0)),
    (0.25, Rate(1, 4.0)),
    ("1.5/m", Rate(1, 40.0)),
])
def test_parse_rate_reads_celery_forms(text, expected):
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", [None, "", "  ", 0, 0.0, "0", "0/m"])
def test_parse_rate_no_limit(text):
    assert parse_rate(text) is None


@pytest.mark.parametrize("text", [
    "100 per m", "100/d", "100/min", "abc", "/s", "100/", "-1", -5, "-5/m", True, [1], "nan",
    float("nan"), "inf", float("inf"), "1/s/s"])
def test_parse_rate_refuses_other_forms(text):
    with pytest.raises(RateLimitError, match='"100/m"'):
        parse_rate(text)


def test_rate_values_are_checked():
    assert RATE.interval == 0.25
    with pytest.raises(RateLimitError):
        Rate(0, 1.0)
    with pytest.raises(RateLimitError):
        Rate(1, 0.0)


# -- buckets -----------------------------------------------------------------------------------

def test_full_bucket_grants_burst_then_says_how_long_to_wait(store):
    assert [store.take("b", RATE, burst=3) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = store.take("b", RATE, burst=3)
    assert wait == pytest.approx(RATE.interval, abs=0.05)


def test_token_comes_back_after_the_wait(store, elapse):
    assert store.take("b", RATE) == 0.0
    wait = store.take("b", RATE)
    assert 0.0 < wait <= RATE.interval
    elapse(wait)
    assert store.take("b", RATE) == 0.0
    assert store.take("b", RATE) == pytest.approx(RATE.interval, abs=0.05)


def test_refused_take_takes_nothing(store, elapse):
    assert store.take("b", RATE) == 0.0
    waits = [store.take("b", RATE) for _ in range(5)]
    assert all(0.0 < w <= RATE.interval for w in waits)
    assert waits == sorted(waits, reverse=True)  # time passes; the wait never grows
    elapse(waits[-1])
    assert store.take("b", RATE) == 0.0


def test_idle_bucket_fills_up_to_burst_only(store, elapse):
    assert store.take("b", RATE, burst=2) == 0.0
    assert store.take("b", RATE, burst=2) == 0.0
    elapse(RATE.interval * 6)
    assert store.take("b", RATE, burst=2) == 0.0
    assert store.take("b", RATE, burst=2) == 0.0
    assert store.take("b", RATE, burst=2) > 0.0


def test_buckets_are_independent(store):
    assert store.take("a", RATE) == 0.0
    assert store.take("a", RATE) > 0.0
    assert store.take("b", RATE) == 0.0
    assert store.take("a", Rate(1, 3600.0)) > 0.0  # the bucket is a's whatever the rate
    assert store.take("c", Rate(1, 3600.0)) == 0.0


def test_burst_must_be_a_positive_whole_number(store):
    for burst in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="burst"):
            store.take("b", RATE, burst=burst)


def _take_in_threads(make_store, store_kind, threads=4, takes=15):
    """Takes from one bucket (one token an hour, burst 5) in threads; the grants counted."""
    granted = []
    errors = []

    def hammer():
        store = make_store()
        try:
            for _ in range(takes):
                if store.take("shared", Rate(1, 3600.0), burst=5) == 0.0:
                    granted.append(1)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            if store_kind in DATABASE_KINDS:
                connections.close_all()

    workers = [threading.Thread(target=hammer) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    return len(granted)


def test_concurrent_takes_never_grant_more_than_the_bucket_holds(make_store, store_kind):
    assert _take_in_threads(make_store, store_kind) == 5


# -- revocations -------------------------------------------------------------------------------

def test_revocations_map_ids_to_terminate(store):
    assert store.revocations() == {}
    store.revoke(["a", "b"], expires=60)
    store.revoke(["c"], terminate=True, expires=60)
    assert store.revocations() == {"a": False, "b": False, "c": True}
    assert store.is_revoked("a") and store.is_revoked("c")
    assert not store.is_revoked("zzz")


# The memory store lives and dies with its process: durability applies to the others.
@pytest.mark.parametrize("store_kind", kinds(*(k for k in STORE_KINDS if k != "memory")))
def test_revocations_survive_a_new_store(make_store, store_kind):
    first = make_store()
    first.revoke(["a"], terminate=True, expires=60)
    first.revoke(["b"], expires=60)
    first.close()
    second = make_store()
    assert second.revocations() == {"a": True, "b": False}
    assert second.is_revoked("b")


def test_revocations_expire(store, elapse):
    store.revoke(["short"], expires=0.3)
    store.revoke(["long"], expires=60)
    assert store.is_revoked("short")
    elapse(0.4)
    assert not store.is_revoked("short")
    assert store.revocations() == {"long": False}


def test_revoking_again_keeps_the_later_expiry(store, elapse):
    store.revoke(["a"], expires=0.3)
    store.revoke(["a"], expires=60)
    store.revoke(["b"], expires=60)
    store.revoke(["b"], expires=0.3)
    elapse(0.4)
    assert store.revocations() == {"a": False, "b": False}


def test_plain_revoke_does_not_cancel_terminate(store):
    store.revoke(["a"], terminate=True, expires=60)
    store.revoke(["a", "b"], expires=60)
    assert store.revocations() == {"a": True, "b": False}
    store.revoke(["b"], terminate=True, expires=60)
    assert store.revocations() == {"a": True, "b": True}


def test_expired_terminate_is_not_inherited(store, elapse):
    store.revoke(["a"], terminate=True, expires=0.3)
    elapse(0.4)
    store.revoke(["a"], expires=60)
    assert store.revocations() == {"a": False}


def test_many_ids_at_once(store):
    ids = [f"task-{n}" for n in range(1234)]
    store.revoke(ids, terminate=True, expires=60)
    store.revoke(ids[:3], expires=60)  # duplicates are fine
    revoked = store.revocations()
    assert len(revoked) == 1234
    assert all(revoked.values())


# -- pruning -----------------------------------------------------------------------------------

def _stored_entries(store, store_kind) -> int:
    """Buckets plus revocations held by the store, expired or not."""
    if store_kind == "memory":
        return len(store._buckets) + len(store._revoked)
    if store_kind == "redis":
        client = store.client
        return (len(client.keys(store.bucket_key("*"))) + client.zcard(store.revoked_key)
                + client.hlen(store.terminate_key))
    from django_taskq.models import RateBucket, Revocation

    return (RateBucket.objects.using(store.alias).count()
            + Revocation.objects.using(store.alias).count())


def test_prune_forgets_full_buckets_and_expired_revocations(store, store_kind, elapse):
    store.revoke(["gone"], terminate=True, expires=0.3)
    store.revoke(["kept"], expires=60)
    assert store.take("idle", RATE) == 0.0
    elapse(0.4)  # "idle" is full again, "gone" expired
    assert store.take("busy", Rate(1, 3600.0)) == 0.0
    before = _stored_entries(store, store_kind)
    removed = store.prune()
    if store_kind == "redis":  # buckets expire by TTL instead
        assert removed == 1
        assert before - _stored_entries(store, store_kind) == 2  # zset member and flag
        assert 0 < store.client.pttl(store.bucket_key("busy")) <= 3600 * 1000 + 1000
    else:
        assert removed == 2
        assert before - _stored_entries(store, store_kind) == 2
    assert store.revocations() == {"kept": False}
    assert store.take("busy", Rate(1, 3600.0)) > 3000  # a bucket in use is kept
    assert store.take("idle", RATE) == 0.0


@pytest.mark.parametrize("store_kind", kinds("redis"))
def test_redis_buckets_expire_by_themselves(store, store_kind):
    assert store.take("b", Rate(10, 1.0)) == 0.0
    assert store.client.exists(store.bucket_key("b"))
    time.sleep(1.3)  # full after 0.1 s, plus the 1 s margin of the TTL
    assert not store.client.exists(store.bucket_key("b"))


def test_unreachable_redis_is_a_connection_error():
    from django_taskq.control.redis import RedisControlStore

    store = RedisControlStore(parse("redis://127.0.0.1:1/0?socket_connect_timeout=0.5",
                                    setting="CONTROL_URL"))
    with pytest.raises(BrokerConnectionError):
        store.take("b", RATE)
    with pytest.raises(BrokerConnectionError):
        store.revocations()
    store.close()


# -- global enforcement across processes -------------------------------------------------------

HAMMER = """
import json, os, sys, time
cfg = json.loads(sys.argv[1])
import django
from django.conf import settings
if cfg["alias"]:
    settings.DATABASES[cfg["alias"]]["NAME"] = cfg["name"]
django.setup()
from django_taskq.control import control_store_from_url
from django_taskq.control.rate import Rate
store = control_store_from_url(cfg["url"])
rate = Rate(cfg["count"], 1.0)
print("ready", flush=True)
start, stop = json.loads(sys.stdin.readline())
while time.time() < start:
    time.sleep(0.0005)
grants, calls, end = [], 0, start
while True:
    before = time.time()
    if before >= stop:
        break
    wait = store.take("hammered", rate, 1)
    end = time.time()
    calls += 1
    if wait == 0.0:
        grants.append([before, end])
store.close()
print(json.dumps({"grants": grants, "calls": calls, "end": end}), flush=True)
"""


def _hammer(url: str, alias: str | None, processes: int, count: int, seconds: float):
    """Run ``processes`` processes taking from one bucket as fast as they can."""
    name = connections[alias].settings_dict["NAME"] if alias else None
    cfg = json.dumps({"url": url, "alias": alias, "name": name, "count": count})
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", HAMMER, cfg], cwd=ROOT, env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
             for _ in range(processes)]
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready"
        start = time.time() + 0.2
        for proc in procs:
            proc.stdin.write(json.dumps([start, start + seconds]) + "\n")
            proc.stdin.flush()
        reports = [json.loads(proc.communicate(timeout=60)[0]) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return start, reports


@pytest.mark.parametrize("store_kind", kinds("postgres", "mariadb", "redis"))
def test_limit_holds_across_processes(store_kind, request):
    if store_kind == "redis":
        url, alias = request.getfixturevalue("redis_url"), None
    else:
        alias = _use_database(request, store_kind)
        url = f"db://{alias}"
    count, seconds = 20, 1.5
    start, reports = _hammer(url, alias, processes=4, count=count, seconds=seconds)
    grants = sorted(g for report in reports for g in report["grants"])
    end = max(report["end"] for report in reports)
    assert all(report["calls"] > len(report["grants"]) for report in reports)  # all contended
    # The bucket starts full (1 token), then gains one every 1/count s: never more than that
    # over the whole run, nor over any stretch between two grants (times are of the calls).
    assert len(grants) <= 1 + count * (end - start) + 1e-6
    for i, (first_start, _) in enumerate(grants):
        for j in range(i, len(grants)):
            assert j - i + 1 <= 1 + count * (grants[j][1] - first_start) + 1e-6, (i, j)
    # ...and the limit is a limit, not a stall: most of the allowance is granted.
    assert len(grants) >= 0.6 * count * seconds


# -- choosing the store ------------------------------------------------------------------------

@pytest.mark.parametrize(("taskq", "kind", "where"), [
    ({"BROKER_URL": "memory://"}, MemoryControlStore, None),
    ({"BROKER_URL": "db://default"}, DatabaseControlStore, "default"),
    ({"BROKER_URL": "amqp://guest@localhost//", "RESULT_BACKEND": "db://default"},
     DatabaseControlStore, "default"),
    ({"BROKER_URL": "amqp://guest@localhost//", "RESULT_BACKEND": "memory://"},
     DatabaseControlStore, "default"),
    ({"BROKER_URL": "redis://127.0.0.1:1/3"}, "redis", "taskq"),
    ({"BROKER_URL": "amqp://guest@localhost//", "RESULT_BACKEND": "rediss://127.0.0.1:1/3"},
     "redis", "taskq"),
    ({"BROKER_URL": "db://default", "CONTROL_URL": "redis://127.0.0.1:1/3?prefix=ctl"},
     "redis", "ctl"),
    ({"BROKER_URL": "redis://127.0.0.1:1/3", "CONTROL_URL": "memory://"},
     MemoryControlStore, None),
])
def test_store_is_chosen_from_the_settings(settings, taskq, kind, where):
    settings.TASKQ = {**settings.TASKQ, **taskq}
    store = control.get_control_store()  # built, never connected
    if kind == "redis":
        from django_taskq.control.redis import RedisControlStore

        assert isinstance(store, RedisControlStore)
        assert store.revoked_key == f"{where}:revoked"
    else:
        assert isinstance(store, kind)
        if where:
            assert store.alias == where
    assert control.get_control_store() is store


def test_store_is_rebuilt_when_settings_change(settings):
    settings.TASKQ = {**settings.TASKQ, "CONTROL_URL": "memory://one"}
    first = control.get_control_store()
    first.revoke(["a"], expires=60)
    settings.TASKQ = {**settings.TASKQ, "CONTROL_URL": "db://default"}
    assert isinstance(control.get_control_store(), DatabaseControlStore)


@pytest.mark.parametrize("url", ["ftp://host/", "db://nosuchalias", "not a url",
                                 "amqp://guest@localhost//", "redis://h/0?prefix="])
def test_unusable_control_url(settings, url):
    settings.TASKQ = {**settings.TASKQ, "CONTROL_URL": url}
    with pytest.raises(ConfigurationError, match="CONTROL_URL"):
        control.get_control_store()
    errors = checks.run_checks(tags=["django_taskq"])
    assert [e.id for e in errors if e.id == "django_taskq.E006"] == ["django_taskq.E006"]
    assert any("CONTROL_URL" in e.msg for e in errors if e.id == "django_taskq.E006")


@pytest.mark.parametrize("url", [None, "memory://", "db://default", "redis://127.0.0.1:1/3"])
def test_usable_control_url_passes_the_check(settings, url):
    settings.TASKQ = {**settings.TASKQ, "CONTROL_URL": url}
    assert not [e for e in checks.run_checks(tags=["django_taskq"])
                if e.id == "django_taskq.E006"]


def test_rate_interval_is_finite():
    assert math.isfinite(parse_rate("1/h").interval)
