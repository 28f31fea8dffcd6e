"""Redis-specific behaviour: configuration errors, TLS defaults, raw bad input, Celery's layout."""

from __future__ import annotations

import json
import ssl

import pytest
import redis

from django_taskq import AsyncResult
from django_taskq.brokers import broker_from_url, get_broker
from django_taskq.brokers.redis import SEP, list_key
from django_taskq.exceptions import ConfigurationError
from django_taskq.results import backend_from_url
from tests.helpers import dead_letters, envelope
from tests.testapp import tasks

pytestmark = pytest.mark.parametrize("broker_kind", ["redis"])


def test_rediss_verifies_the_server_certificate_by_default(broker_kind):
    for engine in (broker_from_url("rediss://127.0.0.1:6379/0"),
                   backend_from_url("rediss://127.0.0.1:6379/0")):
        pool = engine.client.connection_pool
        assert pool.connection_class(**pool.connection_kwargs).cert_reqs == ssl.CERT_REQUIRED


@pytest.mark.parametrize("url, message", [
    ("redis://127.0.0.1:6379/0?socket_timeout=soon", "could not convert"),
    ("redis://127.0.0.1:6379/0?prefix=", "prefix must be a non-empty name"),
    ("redis://127.0.0.1:6379/0?poll_interval=0", "poll_interval must be a positive"),
])
def test_bad_url_options_are_configuration_errors(broker_kind, url, message):
    with pytest.raises(ConfigurationError, match=message):
        broker_from_url(url)


def test_messages_sit_in_celery_lists(broker_kind, redis_url):
    broker = broker_from_url(redis_url)
    broker.enqueue_many([envelope(priority=0), envelope(priority=5), envelope(priority=9)])
    client = redis.Redis.from_url(redis_url)
    assert client.llen("default") == 1
    assert client.llen(f"default{SEP}3") == 1 == client.llen(f"default{SEP}9")
    message = json.loads(client.lindex("default", 0))
    assert message["properties"]["body_encoding"] == "base64"
    assert message["properties"]["delivery_info"]["routing_key"] == "default"
    assert {"body", "content-type", "content-encoding", "headers"} <= set(message)
    assert list_key("q", 2) == "q" and list_key("q", 8) == f"q{SEP}6"


def test_raw_garbage_in_the_list_is_dead_lettered_and_the_worker_goes_on(make_worker, redis_url):
    client = redis.Redis.from_url(redis_url)
    client.lpush("default", b"\x00 not json")
    client.lpush("default", json.dumps({"body": "W1tdLHt9LHt9XQ==", "headers": {},
                                        "properties": {"body_encoding": "base64"}}))
    good = tasks.add.delay(1, 1)
    worker = make_worker()
    for _ in range(10):
        worker.step()
    assert AsyncResult(good.id).get(timeout=5) == 2
    reasons = [reason for _, reason in dead_letters(get_broker())]
    assert len(reasons) == 2 and all("no 'task' header" in r for r in reasons)
    assert client.hlen("taskq:inflight") == 0


def test_message_and_pending_record_go_in_one_round_trip(configured, monkeypatch):
    """Broker and result backend on the same Redis: delay() is one pipeline, not two."""
    from redis.client import Pipeline

    executed = []
    original = Pipeline.execute
    monkeypatch.setattr(Pipeline, "execute",
                        lambda self, *a, **k: executed.append(len(self)) or original(self, *a, **k))
    sent = tasks.add.delay(2, 2)
    assert len(executed) == 1
    assert AsyncResult(sent.id).known  # the PENDING record is there
    assert get_broker().size("default") == 1
