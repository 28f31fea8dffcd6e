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


STORES: dict[str, Callable[[pytest.FixtureRequest], ResultBackend]] = {
    "memory": _memory,
    "sqlite": _database("sqlite"),
    "postgres": _database("postgres"),
    "mariadb": _database("mariadb"),
    "redis": _redis,
    "rpc": _rpc,
}

#: What a store cannot do, by kind: "cleanup_by_date" (expired results removed by cleanup();
#: Redis expires keys by TTL instead).
CANNOT: dict[str, set[str]] = {
    "redis": {"cleanup_by_date"},
    # Results are messages to one process: nothing stored to clean up (docs/result-backends.md).
    "rpc": {"cleanup_by_date"},
}


def kinds_that_can(capability: str) -> list[str]:
    """The store kinds able to do ``capability``."""
    return [kind for kind in STORES if capability not in CANNOT.get(kind, set())]
