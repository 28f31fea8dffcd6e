"""pytest fixtures for projects that use django_taskq (docs/testing.md).

pytest loads this module through django_taskq's ``pytest11`` entry point. Loading it does
nothing: no settings are read and no database is touched until a test asks for a fixture, and
a fixture that cannot work (no Django settings, django_taskq not installed, a worker thread
that could not see the test's data) fails that test with a message saying what to change.

Fixtures: ``taskq_eager``, ``taskq_memory``, ``taskq_sent``, ``taskq_drain``,
``taskq_worker`` (configured by ``taskq_worker_options``).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, cast

import pytest

if TYPE_CHECKING:
    from django.db.backends.sqlite3.base import DatabaseWrapper as SQLiteWrapper

#: pytest-django fixtures that give a test database access.
DB_FIXTURES = ("db", "transactional_db", "django_db_reset_sequences",
               "django_db_serialized_rollback", "live_server")
#: Fixtures that change TASKQ; a worker thread must start after them, and stop before.
CONFIG_FIXTURES = ("taskq_memory", "taskq_eager")


def _require_django(fixture: str) -> None:
    from django.apps import apps

    if not apps.ready:
        pytest.fail(f"{fixture}: Django is not set up. Install pytest-django and set "
                    "DJANGO_SETTINGS_MODULE (or --ds), or call django.setup() in conftest.py.",
                    pytrace=False)
    if not apps.is_installed("django_taskq"):
        pytest.fail(f"{fixture}: add 'django_taskq' to INSTALLED_APPS.", pytrace=False)


@pytest.fixture
def taskq_eager() -> Iterator[None]:
    """``delay()`` runs the task at once, here, and raises its failure (TASK_ALWAYS_EAGER,
    TASK_EAGER_PROPAGATES) for this test."""
    _require_django("taskq_eager")
    from .override import eager_mode

    with eager_mode():
        yield


@pytest.fixture
def taskq_memory() -> Iterator[str]:
    """A fresh in-memory broker, result backend and control store for this test (no database,
    no server); yields its ``memory://`` URL."""
    _require_django("taskq_memory")
    from .override import memory_broker

    with memory_broker() as url:
        yield url


@pytest.fixture
def taskq_sent() -> Iterator[Any]:
    """The task messages sent during this test (a SentTasks: ``names()``, ``filter()``,
    ``clear()``); eager runs send nothing and are not in it."""
    _require_django("taskq_sent")
    from .sent import capture_sent

    with capture_sent() as sent:
        yield sent


@pytest.fixture
def taskq_drain() -> Iterator[Any]:
    """``drain(queues=None, *, timeout=10, max_tasks=None, raise_on_failure=True)``: run the
    queued tasks in the test's thread until the queues are empty; returns the runs."""
    _require_django("taskq_drain")
    from .drain import drain
    from .sent import capture_sent

    with capture_sent() as sent:  # the queues messages go to, for drain() to empty them all
        yield functools.partial(drain, seen=sent)


@pytest.fixture
def taskq_worker_options() -> dict[str, Any]:
    """Options for ``taskq_worker``: override it, e.g. ``{"queues": ["default", "mail"],
    "pool": "threads", "concurrency": 4}``."""
    return {}


@pytest.fixture
def taskq_worker(request: pytest.FixtureRequest,
                 taskq_worker_options: dict[str, Any]) -> Iterator[Any]:
    """A worker running in a background thread for this test (a WorkerThread). With a
    database broker or result backend the test needs ``transactional_db``."""
    _require_django("taskq_worker")
    for name in (*DB_FIXTURES, *CONFIG_FIXTURES):  # set up first, so torn down after
        if name in request.fixturenames:
            request.getfixturevalue(name)
    from .thread import WorkerThread

    thread = WorkerThread(**taskq_worker_options)
    aliases = thread.database_aliases()
    if aliases:
        _check_database(request, sorted(aliases))
    thread.start()
    yield thread
    thread.stop()


def _check_database(request: pytest.FixtureRequest, aliases: list[str]) -> None:
    """The worker thread has its own connection: it sees committed rows only (celery#4511)."""
    from django.db import connections

    where = f"database {', '.join(repr(a) for a in aliases)}"
    fix = ("use the transactional_db fixture (or @pytest.mark.django_db(transaction=True)), "
           "or taskq_memory for an in-memory broker, or taskq_drain, which runs the tasks in "
           "the test's own thread and transaction")
    uses_db = request.node.get_closest_marker("django_db") is not None \
        or any(name in request.fixturenames for name in DB_FIXTURES)
    if not uses_db:
        pytest.fail(f"taskq_worker: the broker, result backend or control store is in {where}, "
                    f"and this test has no database access: {fix}.", pytrace=False)
    in_memory = [a for a in aliases if connections[a].vendor == "sqlite"
                 and cast("SQLiteWrapper", connections[a]).is_in_memory_db()]
    if in_memory:
        pytest.fail(f"taskq_worker: the test database {in_memory[0]!r} is SQLite in memory, "
                    "which a second thread shares only with 'database table is locked' errors: "
                    f"give it a file, DATABASES[{in_memory[0]!r}]['TEST'] = "
                    "{'NAME': 'test_db.sqlite3'}, or use taskq_memory or taskq_drain.",
                    pytrace=False)
    if any(connections[alias].in_atomic_block for alias in aliases):
        pytest.fail(f"taskq_worker: the broker, result backend or control store is in {where}, "
                    "and this test runs inside a transaction (the db fixture or "
                    "@pytest.mark.django_db) that the worker's thread cannot see: "
                    f"{fix}.", pytrace=False)
