"""Fixtures: one broker per engine (memory, SQLite, PostgreSQL, MariaDB) and a fake clock."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

import pytest
from django.conf import settings

from django_taskq.brokers.database import DatabaseBroker
from django_taskq.brokers.memory import MemoryBroker
from tests import services

DB_ALIASES = {"sqlite": "default", "postgres": "postgres", "mariadb": "mariadb"}
BROKER_KINDS = ["memory", *DB_ALIASES, "redis", "amqp", "sqs"]
#: Brokers that keep time themselves (a fake clock cannot move it): tests marked
#: ``needs_fake_clock`` are not collected for them.
REAL_CLOCK_KINDS = frozenset({"amqp", "sqs"})
#: What SQS cannot do: these contract tests are not collected for it (docs/brokers-sqs.md).
SQS_CANNOT = frozenset({"test_higher_priority_runs_first"})
#: Modules whose ``configured`` tests (a worker, commands, pages) also run on SQS; elsewhere SQS
#: runs the broker-level tests only (moto is slow: the whole suite on it would take too long).
SQS_CONFIGURED_MODULES = frozenset({"test_dead_letters.py"})
#: Queues the shared tests use on RabbitMQ; emptied (deleted) around every test.
AMQP_TEST_QUEUES = ("default", "a", "b", "other", "noise", "surface", "side", "called", "high",
                    "billing", "routed", "feeds", "main", "globbed", "from-function", "q",
                    "proj-q", "bulk")


class Clock:
    """A settable clock for lease and eta tests: no test sleeps to make time pass."""

    def __init__(self) -> None:
        self.now = datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def require_service(url: str, name: str) -> str:
    """``url`` when its server answers; skip (or, in CI, fail) when it does not."""
    if not services.url_reachable(url):
        assert not services.REQUIRED, f"{name} at {url} is required (TASKQ_REQUIRE_SERVICES=1)"
        pytest.skip(f"{name} is not reachable at {url}")
    return url


@pytest.fixture(scope="session")
def sqs_server():
    """One moto server (SQS in memory) for the session's SQS contract tests; each test uses
    queues of its own (a unique queue_name_prefix)."""
    from tests.sqsserver import start_or_skip

    server = start_or_skip()
    yield server
    server.kill()


@pytest.fixture
def redis_url():
    """The test Redis database, emptied before and after the test."""
    import redis

    url = require_service(services.REDIS_URL, "Redis")
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


def delete_amqp_queues(url: str, queues=AMQP_TEST_QUEUES) -> None:
    """Delete ``queues`` (with their delay queues and exchanges) and the dead letter queue."""
    from django_taskq.brokers.amqp import from_url
    from django_taskq.service_url import parse

    broker = from_url(parse(url, setting="BROKER_URL"))
    try:
        for queue in queues:
            broker.delete(queue)
        broker.publisher.delete([broker.options.dead_letter_queue])
    finally:
        broker.close()


@pytest.fixture
def amqp_url():
    """The test RabbitMQ, with the queues tests use deleted before and after the test."""
    url = require_service(services.AMQP_URL, "RabbitMQ")
    delete_amqp_queues(url)
    yield url
    delete_amqp_queues(url)


def require_alias(kind: str) -> str:
    """The database alias for ``kind``, skipping (or, in CI, failing) when it is missing."""
    alias = DB_ALIASES[kind]
    if alias not in settings.DATABASES:
        assert not services.REQUIRED, f"{kind} is required (TASKQ_REQUIRE_SERVICES=1)"
        pytest.skip(f"{kind} is not reachable")
    return alias


@pytest.fixture(params=BROKER_KINDS)
def broker_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def broker(broker_kind: str, clock: Clock, request: pytest.FixtureRequest):
    """A fresh, empty broker of each kind, on the fake clock."""
    if broker_kind == "memory":
        return MemoryBroker(now=clock)
    if broker_kind == "redis":
        from django_taskq.brokers.redis import RedisBroker
        from django_taskq.service_url import parse

        url = request.getfixturevalue("redis_url")
        made = RedisBroker(parse(url, setting="BROKER_URL"), poll_interval=0.01, now=clock)
        request.addfinalizer(made.close)
        return made
    if broker_kind == "sqs":  # SQS keeps time itself too; one moto server per session
        from django_taskq.brokers.sqs import from_url
        from django_taskq.service_url import parse
        from tests.sqsserver import unique_prefix

        server = request.getfixturevalue("sqs_server")
        made = from_url(parse(server.url(queue_name_prefix=unique_prefix(), wait_time_seconds=0),
                              setting="BROKER_URL"), poll_interval=0.01)
        request.addfinalizer(made.close)
        return made
    if broker_kind == "amqp":  # RabbitMQ keeps time itself: the fake clock does not apply
        from django_taskq.brokers.amqp import from_url
        from django_taskq.service_url import parse

        made = from_url(parse(request.getfixturevalue("amqp_url"), setting="BROKER_URL"))
        request.addfinalizer(made.close)
        return made
    alias = require_alias(broker_kind)
    request.getfixturevalue("transactional_db")
    return DatabaseBroker(alias=alias, poll_interval=0.01, now=clock)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Broker-parametrised tests touch every configured database; let them all in, and
    # truncate between tests so that committed rows from real claims never leak.
    kept, dropped = [], []
    # A version leg of scripts/test.sh leaves one database server's variants to another leg.
    deselected_kinds = set(filter(None, os.environ.get("TASKQ_TEST_DESELECT_KINDS", "").split(",")))
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "broker" in names or "configured" in names:
            item.add_marker(pytest.mark.django_db(transaction=True, databases="__all__"))
        params = getattr(getattr(item, "callspec", None), "params", {})
        kinds = {value for value in params.values() if isinstance(value, str)}
        if NETWORK_BROKERS.intersection(kinds) or NETWORK_FIXTURES.intersection(names):
            item.add_marker(pytest.mark.network_broker)
        if OWN_SERVER_KINDS.intersection(kinds):  # servers the tests start themselves
            item.add_marker(pytest.mark.own_server)
        # A fake clock cannot move RabbitMQ's or SQS's time: such tests do not apply to them.
        kind = params.get("broker_kind")
        if kinds & deselected_kinds or (item.get_closest_marker("needs_fake_clock")
                                        and kind in REAL_CLOCK_KINDS) or (
                kind == "sqs" and not _sqs_applies(item, names)):
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def _sqs_applies(item: pytest.Item, names: Sequence[str]) -> bool:
    if getattr(item, "originalname", "") in SQS_CANNOT:
        return False
    if "configured" in names:
        return item.path.name in SQS_CONFIGURED_MODULES
    return "broker" in names


@pytest.fixture
def configured(broker_kind: str, request: pytest.FixtureRequest, settings):
    """TASKQ pointed at ``broker_kind`` for both broker and results; yields the URL used."""
    if broker_kind == "memory":
        url = "memory://"
    elif broker_kind == "redis":
        url = request.getfixturevalue("redis_url")
    elif broker_kind == "amqp":
        request.getfixturevalue("transactional_db")
        url = request.getfixturevalue("amqp_url")
    elif broker_kind == "sqs":
        from tests.sqsserver import unique_prefix

        request.getfixturevalue("transactional_db")
        url = request.getfixturevalue("sqs_server").url(queue_name_prefix=unique_prefix(),
                                                        wait_time_seconds=0)
    else:
        alias = require_alias(broker_kind)
        request.getfixturevalue("transactional_db")
        url = f"db://{alias}"
    results = "db://default" if broker_kind in ("amqp", "sqs") else url
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": url, "RESULT_BACKEND": results,
                      "POLL_INTERVAL": 0.01}
    return url


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def service(request: pytest.FixtureRequest, settings):
    """(alias, url) for a real worker process: a database broker, or Redis (results there too)."""
    if request.param == "redis":
        alias, url = "default", request.getfixturevalue("redis_url")
    else:
        alias = require_alias(request.param)
        url = f"db://{alias}"
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": url, "RESULT_BACKEND": url}
    return alias, url


@pytest.fixture
def make_worker(configured):
    """Build in-process workers on the configured broker; they are shut down afterwards."""
    from django_taskq.worker import Worker, WorkerOptions

    made = []

    def make(**options):
        options.setdefault("pool", "solo")
        options.setdefault("queues", ("default",))
        worker = Worker(WorkerOptions.from_settings(**options))
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.heartbeat.stop()


#: Engines that never touch Django's ORM: their tests are marked ``network_broker``, and the
#: other Django/Python legs of scripts/test.sh leave them (and ``subprocess`` tests) to the main
#: leg, which runs everything.
NETWORK_BROKERS = frozenset({"redis", "amqp", "sqs", "rpc"})
#: Kinds whose server the tests start (moto's SQS server, memcached), and the RPC and
#: Django-cache stores: the servers leg of scripts/test.sh runs them beside the version legs.
OWN_SERVER_KINDS = frozenset({"sqs", "cache_memcached", "cache_redis", "rpc"})
NETWORK_FIXTURES = frozenset({"redis_url", "amqp_url", "rabbit"})


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "network_broker: runs on Redis or RabbitMQ (no ORM)")
    config.addinivalue_line("markers", "worker_db: uses the configured() broker fixture")
    config.addinivalue_line("markers", "needs_fake_clock: moves a fake clock (not for amqp)")


@pytest.fixture(autouse=True)
def fresh_queue():
    """Every test starts with new settings caches and empty memory brokers and backends."""
    from django_taskq.conf import reset_settings

    reset_settings()
    yield
    reset_settings()


@pytest.fixture
def sends(monkeypatch):
    """Every producer send: the list of envelopes of each call."""
    from django_taskq import producer

    calls = []
    original = producer.send

    def spy(envelopes, record_results, options=None):
        calls.append(list(envelopes))
        return original(envelopes, record_results, options)

    monkeypatch.setattr(producer, "send", spy)
    return calls


def worker_urls(request: pytest.FixtureRequest, settings, kind: str) -> tuple[str, str]:
    """(broker URL, result backend URL) of a real broker ``kind`` (results in the database for
    RabbitMQ), configured here and for worker processes."""
    if kind == "redis":
        broker = results = request.getfixturevalue("redis_url")
    elif kind == "amqp":
        broker, results = request.getfixturevalue("amqp_url"), "db://default"
    else:
        broker = results = f"db://{require_alias(kind)}"
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": broker, "RESULT_BACKEND": results}
    return broker, results
