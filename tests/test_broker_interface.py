"""The narrowed broker interface: capability flags, the optional dead-letter part, limits given
at construction, and database errors translated at the engine boundary."""

from __future__ import annotations

import pytest

from django_taskq.brokers import broker_from_url, dead_letter_store
from django_taskq.brokers.base import DEFAULT_MAX_DELIVERIES, Broker, DeadLetterStore
from django_taskq.brokers.memory import MemoryBroker
from django_taskq.exceptions import BrokerError, ControlStoreError, ResultBackendError


class NoDeadLetters(Broker):
    """A broker that keeps no listable dead letters (only the required part)."""

    def enqueue_many(self, envelopes): ...
    def reserve(self, queues, *, max_messages, lease, worker, timeout=0.0): return []
    def ack_many(self, deliveries): ...
    def requeue(self, delivery, eta=None): ...
    def defer(self, delivery, eta): ...
    def release(self, deliveries): ...
    def dead_letter(self, delivery, reason): ...
    def extend_leases(self, deliveries, lease): ...
    def recover(self): return []
    def purge(self, queue): return 0
    def size(self, queue): return 0


def test_capability_flags_have_safe_defaults_and_engines_say_what_they_do():
    assert (Broker.transactional, Broker.supports_priority, Broker.supports_eta) == \
        (False, True, True)
    assert broker_from_url("db://default").transactional is True
    assert broker_from_url("memory://flags").transactional is False


def test_dead_letters_are_an_optional_part():
    assert dead_letter_store(MemoryBroker()) is not None
    assert isinstance(MemoryBroker(), DeadLetterStore)
    with pytest.raises(BrokerError, match="keeps no dead letters"):
        dead_letter_store(NoDeadLetters())


def test_the_taskq_command_reports_a_broker_without_dead_letters(monkeypatch):
    from django.core.management import CommandError, call_command

    monkeypatch.setattr("django_taskq.deadletters.get_broker", NoDeadLetters)
    with pytest.raises(CommandError, match="keeps no dead letters"):
        call_command("taskq", "dead", "list")


def test_max_deliveries_is_given_when_the_broker_is_built(settings):
    assert MemoryBroker().max_deliveries == DEFAULT_MAX_DELIVERIES
    settings.TASKQ = {**settings.TASKQ, "MAX_DELIVERIES": 7}
    assert broker_from_url("db://default").max_deliveries == 7
    assert broker_from_url("memory://seven").max_deliveries == 7


@pytest.fixture
def empty_database(settings, tmp_path, django_db_blocker):
    """An alias whose database has no tables (migrate was never run)."""
    from django.db import connections

    settings.DATABASES["empty"] = {**settings.DATABASES["default"],
                                   "NAME": str(tmp_path / "empty.sqlite3"),
                                   "TEST": {**settings.DATABASES["default"]["TEST"]}}
    try:
        with django_db_blocker.unblock():
            yield "empty"
            connections["empty"].close()
    finally:  # the dict is changed in place: the settings fixture would not put it back
        del connections["empty"]
        del settings.DATABASES["empty"]


def test_database_errors_become_ours_with_the_fix(empty_database):
    from django_taskq.brokers.database import DatabaseBroker
    from django_taskq.control.database import DatabaseControlStore
    from django_taskq.results.database import DatabaseResultBackend

    with pytest.raises(ResultBackendError, match=r"taskq_result.*run manage.py migrate"):
        DatabaseResultBackend(alias=empty_database).get("some-id")
    with pytest.raises(BrokerError, match=r"taskq_message.*run manage.py migrate"):
        DatabaseBroker(alias=empty_database).size("default")
    with pytest.raises(ControlStoreError, match="run manage.py migrate"):
        DatabaseControlStore(alias=empty_database).is_revoked("some-id")
