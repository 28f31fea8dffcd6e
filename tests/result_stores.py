"""The result stores the result contract suite (tests/test_results.py) runs on.

Each kind maps to a factory taking the pytest request and returning a fresh store; a store that
cannot do something the suite checks says so in CANNOT (kind -> capability names), and the tests
needing that capability are not collected for it.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from django_taskq.results.base import ResultBackend
from django_taskq.results.database import DatabaseResultBackend
from django_taskq.results.memory import MemoryResultBackend
from django_taskq.results.redis import RedisResultBackend
from django_taskq.service_url import parse
from tests import services
from tests.conftest import require_alias, require_service


def _memory(request: pytest.FixtureRequest) -> ResultBackend:
    return MemoryResultBackend()


def _redis(request: pytest.FixtureRequest) -> ResultBackend:
    made = RedisResultBackend(parse(request.getfixturevalue("redis_url"),
                                    setting="RESULT_BACKEND"))
    request.addfinalizer(made.close)
    return made


def _database(kind: str) -> Callable[[pytest.FixtureRequest], ResultBackend]:
    def make(request: pytest.FixtureRequest) -> ResultBackend:
        alias = require_alias(kind)
        request.getfixturevalue("transactional_db")
        return DatabaseResultBackend(alias=alias)
    return make


def _rpc(request: pytest.FixtureRequest) -> ResultBackend:
    """rpc:// addressed to itself: what a worker publishes comes back to this process."""
    from tests.rpc_loopback import loopback_backend

    made = loopback_backend(require_service(services.AMQP_URL, "RabbitMQ"))
    request.addfinalizer(made.close)
    return made


def _cache(kind: str) -> Callable[[pytest.FixtureRequest], ResultBackend]:
    """cache://results on a memcached this process starts, or on Redis through Django's
    RedisCache (tests/memcachedserver.py)."""
    def make(request: pytest.FixtureRequest) -> ResultBackend:
        from django.core.cache import caches

        from django_taskq.results.cache import CacheResultBackend
        from tests.memcachedserver import memcached, memcached_caches, redis_caches

        settings = request.getfixturevalue("settings")
        settings.CACHES = memcached_caches(memcached().location) if kind == "memcached" \
            else redis_caches(request.getfixturevalue("redis_url"))
        request.addfinalizer(caches.close_all)
        return CacheResultBackend(alias="results")
    return make


def _plugin(request: pytest.FixtureRequest) -> ResultBackend:
    """A store plugged in by its dotted path (tests/plugin_backend.py), built from its URL."""
    from django_taskq.results import backend_from_url

    settings = request.getfixturevalue("settings")
    settings.TASKQ = {**settings.TASKQ, "RESULT_BACKEND_SCHEMES": {
        "sqlitefile": "tests.plugin_backend.SQLiteFileBackend"}}
    path = request.getfixturevalue("tmp_path") / "results.sqlite3"
    made = backend_from_url(f"sqlitefile://{path}")
    request.addfinalizer(made.close)
    return made


STORES: dict[str, Callable[[pytest.FixtureRequest], ResultBackend]] = {
    "memory": _memory,
    "sqlite": _database("sqlite"),
    "postgres": _database("postgres"),
    "mariadb": _database("mariadb"),
    "redis": _redis,
    "rpc": _rpc,
    "cache_memcached": _cache("memcached"),
    "cache_redis": _cache("redis"),
    "plugin": _plugin,
}

#: What a store cannot do, by kind: "cleanup_by_date" (expired results removed by cleanup();
#: Redis expires keys by TTL instead).
CANNOT: dict[str, set[str]] = {
    "redis": {"cleanup_by_date"},
    # Results are messages to one process: nothing stored to clean up (docs/result-backends.md).
    "rpc": {"cleanup_by_date"},
    # The cache drops results when their timeout (RESULT_EXPIRES) ends.
    "cache_memcached": {"cleanup_by_date"},
    "cache_redis": {"cleanup_by_date"},
}


def kinds_that_can(capability: str) -> list[str]:
    """The store kinds able to do ``capability``."""
    return [kind for kind in STORES if capability not in CANNOT.get(kind, set())]
