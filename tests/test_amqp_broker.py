"""The RabbitMQ broker on a real RabbitMQ: what the shared contract cannot show with a fake clock
(redelivery after a dead consumer, delays in real time), plus reconnection, real worker
processes, bad input and configuration.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
from django.db import connections

from django_taskq import AsyncResult, states
from django_taskq.brokers import amqp_delay as delay
from django_taskq.brokers import broker_from_url, get_broker
from django_taskq.brokers.amqp import AmqpBroker, from_url
from django_taskq.brokers.amqp_options import connect, queue_arguments
from django_taskq.brokers.amqp_publisher import Publisher
from django_taskq.exceptions import BrokerConnectionError, ConfigurationError
from django_taskq.service_url import parse
from tests.helpers import dead_letters, envelope
from tests.tcpproxy import TcpProxy
from tests.test_worker_process import runs, wait_for
from tests.testapp import tasks

ROOT = Path(__file__).resolve().parent.parent
LEASE = 30.0


def soon(seconds: float) -> datetime:
    return datetime.now(timezone.utc) + timedelta(seconds=seconds)


@pytest.fixture
def rabbit(amqp_url):
    """Make brokers on a queue and dead letter queue of this test's own; all cleaned up."""
    tag = uuid.uuid4().hex[:10]
    queue, dead = f"taskq-test.{tag}", f"taskq-test.{tag}.dead"
    made: list[AmqpBroker] = []

    def make(url: str = amqp_url, **options: object) -> AmqpBroker:
        query = urlencode({"dead_letter_queue": dead, **options})
        broker = from_url(parse(f"{url}?{query}", setting="BROKER_URL"))
        made.append(broker)
        return broker

    make.queue, make.dead, make.url = queue, dead, amqp_url  # type: ignore[attr-defined]
    yield make
    for broker in made:
        broker.close()
    cleaner = make()
    cleaner.delete(queue)
    cleaner.publisher.delete([dead])
    cleaner.close()


def take(broker: AmqpBroker, queue: str, n: int = 10, timeout: float = 0.0):
    return broker.reserve([queue], max_messages=n, lease=LEASE, worker="w", timeout=timeout)


def take_one(broker: AmqpBroker, queue: str, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = take(broker, queue, n=1, timeout=0.2)
        if got:
            return got[0]
    raise AssertionError("nothing delivered in time")


# -- configuration (no server needed) --------------------------------------------------------

@pytest.mark.parametrize("url, problem", [
    ("amqp://guest:secret@127.0.0.1//?no_such_option=1", "unknown option"),
    ("amqp://127.0.0.1//?queue_type=lazy", "queue_type"),
    ("amqp://127.0.0.1//?confirm_timeout=soon", "confirm_timeout"),
    ("amqps://127.0.0.1//?cert_reqs=maybe", "cert_reqs"),
    ("amqp://127.0.0.1//?max_priority=2.5", "max_priority"),
])
def test_a_wrong_url_option_is_a_configuration_error(url, problem):
    with pytest.raises(ConfigurationError, match=problem) as caught:
        broker_from_url(url)
    assert "secret" not in str(caught.value)


def test_queue_arguments_match_what_celery_must_declare():
    classic = from_url(parse("amqp://127.0.0.1//", setting="BROKER_URL"))
    assert classic.queue_arguments() == {"x-max-priority": 10}
    quorum = from_url(parse("amqp://127.0.0.1//?queue_type=quorum&delivery_limit=4",
                            setting="BROKER_URL"))
    assert queue_arguments(quorum.options) == {
        "x-queue-type": "quorum", "x-delivery-limit": 4, "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": "taskq.dead"}


def test_tls_verifies_the_certificate_and_host_name_by_default():
    from django_taskq.brokers.amqp_options import tls_settings

    strict = from_url(parse("amqps://broker.example//", setting="BROKER_URL")).options
    assert strict.tls
    assert tls_settings(strict, "broker.example") == {"cert_reqs": 2,  # ssl.CERT_REQUIRED
                                                      "server_hostname": "broker.example"}
    lax = from_url(parse("amqps://h//?cert_reqs=none", setting="BROKER_URL")).options
    assert "server_hostname" not in tls_settings(lax, "h")


def test_delay_buckets_never_overshoot_and_shrink():
    assert delay.bucket(1) == delay.MIN_BUCKET
    assert delay.bucket(1000) == 512
    assert delay.bucket(1024) == 1024
    assert delay.bucket(10**12) == 1 << delay.MAX_EXPONENT
    for remaining in (17, 100, 5000, 123_456_789):
        assert remaining / 2 < delay.bucket(remaining) <= remaining


# -- deliveries and redelivery -------------------------------------------------------------

def test_closing_the_consuming_connection_unacked_redelivers_with_attempts_2(rabbit):
    first, second = rabbit(), rabbit()
    sent = envelope(rabbit.queue)
    first.enqueue(sent)
    held = take_one(first, rabbit.queue)
    assert held.attempts == 1
    first.consumer.drop()  # the socket closes without a word, as when a worker process dies
    again = take_one(second, rabbit.queue)
    assert (again.message_id, again.attempts) == (sent.message_id, 2)
    assert "x-taskq-attempts" not in again.envelope.headers
    second.ack(again)
    assert take(rabbit(), rabbit.queue, timeout=0.2) == []


def test_message_whose_consumer_keeps_dying_is_dead_lettered_as_worker_lost(rabbit):
    sent = envelope(rabbit.queue)
    rabbit().enqueue(sent)
    for attempt in (1, 2, 3):
        dying = rabbit()
        dying.recover()
        assert take_one(dying, rabbit.queue).attempts == attempt
        dying.consumer.drop()
    survivor = rabbit()
    survivor.recover()
    assert take(survivor, rabbit.queue, timeout=0.5) == []
    [(message_id, reason)] = dead_letters(survivor)
    assert message_id == sent.message_id
    assert "worker lost" in reason and "3 times" in reason
    [letter] = survivor.recover()  # handed to the worker, which records the FAILURE
    assert (letter.envelope.message_id, letter.attempts) == (sent.message_id, 3)
    assert dead_letters(survivor) == [(message_id, reason)]  # listing does not consume


def test_stale_holders_ack_after_its_connection_died_leaves_the_redelivered_copy(rabbit):
    parts = urlsplit(rabbit.url)
    with TcpProxy(parts.port or 5672, parts.hostname or "127.0.0.1") as proxy:
        slow, fast = rabbit(proxy.url(rabbit.url)), rabbit()
        slow.enqueue(envelope(rabbit.queue))
        stale = take_one(slow, rabbit.queue)
        proxy.cut()
        current = take_one(fast, rabbit.queue)
        assert current.attempts == 2
        with contextlib.suppress(BrokerConnectionError):
            slow.ack(stale)  # its connection is gone: an error, or nothing
        for _ in range(3):  # it notices the loss (an error) and reconnects: a new channel
            with contextlib.suppress(BrokerConnectionError):
                take(slow, rabbit.queue, timeout=0.1)
                break
        slow.ack(stale)  # not its delivery any more: nothing happens
        slow.close()
    fast.consumer.drop()  # had a stale ack removed it, nothing would come back
    again = take_one(rabbit(), rabbit.queue)
    assert (again.message_id, again.attempts) == (current.message_id, 3)


def test_release_undoes_and_requeue_keeps_the_attempt(rabbit):
    broker = rabbit()
    broker.enqueue_many([envelope(rabbit.queue) for _ in range(2)])
    first, second = take(broker, rabbit.queue, n=2, timeout=1)
    broker.release([first])
    broker.requeue(second)
    again = {d.message_id: d.attempts for d in take(rabbit(), rabbit.queue, n=10, timeout=1)}
    assert again == {first.message_id: 1, second.message_id: 2}


def test_close_gives_back_what_was_prefetched_but_never_handed_out(rabbit):
    broker = rabbit()
    broker.enqueue_many([envelope(rabbit.queue) for _ in range(4)])
    [running] = take(broker, rabbit.queue, n=1, timeout=1)
    assert broker.size(rabbit.queue) == 3  # buffered here, still waiting as far as anyone knows
    broker.close()  # the three buffered go back untouched; the running one is lost
    again = {d.message_id: d.attempts for d in take(rabbit(), rabbit.queue, n=10, timeout=1)}
    assert len(again) == 4
    assert again.pop(running.message_id) == 2
    assert set(again.values()) == {1}


def test_bulk_enqueue_waits_for_confirms_once_per_batch(rabbit, monkeypatch):
    waits = []
    original = Publisher._wait_confirms
    monkeypatch.setattr(Publisher, "_wait_confirms",
                        lambda self: waits.append(1) or original(self))
    broker = rabbit()
    broker.enqueue_many([envelope(rabbit.queue) for _ in range(1500)])
    assert len(waits) == 2  # two chunks of up to 1000, not 1500 round trips
    assert broker.size(rabbit.queue) == 1500


def test_a_queue_deleted_behind_the_declare_cache_is_declared_again(rabbit):
    broker = rabbit()
    broker.enqueue(envelope(rabbit.queue))
    broker.publisher.delete([rabbit.queue])
    broker.enqueue(envelope(rabbit.queue))  # unroutable now: returned, declared, sent again
    assert broker.size(rabbit.queue) == 1
    broker.delete(rabbit.queue)  # the exchange too: a channel error, then a fresh start
    broker.enqueue(envelope(rabbit.queue))
    assert broker.size(rabbit.queue) == 1


def test_interrupt_wakes_a_waiting_reserve(rabbit):
    broker = rabbit()
    threading.Timer(0.3, broker.interrupt).start()
    started = time.monotonic()
    assert take(broker, rabbit.queue, timeout=10) == []
    assert time.monotonic() - started < 5


def test_a_busy_consumer_keeps_its_connection_alive_between_reserves(rabbit):
    """A long task in the solo pool: nobody reads, the keep-alive thread sends heartbeats."""
    broker = rabbit(heartbeat=1)
    broker.enqueue(envelope(rabbit.queue))
    held = take_one(broker, rabbit.queue)
    time.sleep(3.5)  # RabbitMQ closes a connection silent for two heartbeats
    assert take(rabbit(), rabbit.queue, timeout=0.3) == []  # not redelivered elsewhere
    broker.ack(held)
    assert take(broker, rabbit.queue, timeout=0.2) == []


# -- delays ----------------------------------------------------------------------------------

def test_eta_message_is_not_delivered_before_its_eta_nor_held_meanwhile(rabbit):
    broker = rabbit()
    eta = soon(1.0)
    sent = envelope(rabbit.queue, eta=eta)
    broker.enqueue(sent)
    assert broker.size(rabbit.queue) == 1
    while datetime.now(timezone.utc) < eta - timedelta(seconds=0.15):
        assert take(broker, rabbit.queue, timeout=0.1) == []
        assert broker.consumer.unacked == set()  # early arrivals are re-delayed, never kept
    got = take_one(broker, rabbit.queue)
    assert datetime.now(timezone.utc) >= eta
    assert (got.message_id, got.attempts) == (sent.message_id, 1)
    assert "x-taskq-due" not in got.envelope.headers
    broker.ack(got)
    assert broker.size(rabbit.queue) == 0


def test_defer_and_requeue_with_eta_wait_in_a_delay_queue(rabbit):
    broker = rabbit()
    broker.enqueue_many([envelope(rabbit.queue), envelope(rabbit.queue)])
    deferred, retried = take(broker, rabbit.queue, n=2, timeout=1)
    eta = soon(0.5)
    broker.defer(deferred, eta)
    broker.requeue(retried, eta)
    assert take(broker, rabbit.queue, timeout=0.1) == []
    assert broker.size(rabbit.queue) == 2
    back = {d.message_id: d.attempts for d in (take_one(broker, rabbit.queue),
                                                take_one(broker, rabbit.queue))}
    assert datetime.now(timezone.utc) >= eta
    assert back == {deferred.message_id: 1, retried.message_id: 2}  # defer undoes the attempt


def test_purge_empties_delay_queues_too(rabbit):
    broker = rabbit()
    broker.enqueue_many([envelope(rabbit.queue), envelope(rabbit.queue, eta=soon(60))])
    assert broker.size(rabbit.queue) == 2
    assert broker.purge(rabbit.queue) == 2
    assert broker.size(rabbit.queue) == 0


# -- quorum queues ---------------------------------------------------------------------------

def test_quorum_queue_mode_declares_and_round_trips(rabbit):
    broker = rabbit(queue_type="quorum")
    first, later = envelope(rabbit.queue, priority=9), envelope(rabbit.queue, eta=soon(0.3))
    broker.enqueue_many([first, later])
    got = take_one(broker, rabbit.queue)
    assert (got.message_id, got.attempts) == (first.message_id, 1)
    broker.dead_letter(got, "bad: test")
    assert dead_letters(broker) == [(first.message_id, "bad: test")]
    assert take_one(broker, rabbit.queue).message_id == later.message_id
    sent = envelope(rabbit.queue)
    rabbit().enqueue(sent)  # classic settings meet a quorum queue: used as it is (issue 9)
    assert take_one(broker, rabbit.queue).message_id == sent.message_id


# -- connection loss -------------------------------------------------------------------------

@pytest.fixture
def proxy(amqp_url):
    parts = urlsplit(amqp_url)
    with TcpProxy(parts.port or 5672, parts.hostname or "127.0.0.1") as made:
        yield made


@pytest.mark.parametrize("broker_kind", ["amqp"])
@pytest.mark.parametrize("failure", ["refuse", "hang"])
def test_delay_with_the_broker_unreachable_fails_fast(configured, settings, proxy, failure):
    url = proxy.url(configured) + "?connect_timeout=1"
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": url}
    getattr(proxy, failure)()
    started = time.monotonic()
    with pytest.raises(BrokerConnectionError):
        tasks.add.delay(1, 2)
    assert time.monotonic() - started < 15  # generous: the point is that it does not hang


def test_a_silent_broker_is_an_error_for_producer_and_consumer(rabbit, proxy):
    broker = rabbit(proxy.url(rabbit.url), confirm_timeout=1, heartbeat=1)
    broker.enqueue(envelope(rabbit.queue))
    take_one(broker, rabbit.queue)
    proxy.stall()
    started = time.monotonic()
    with pytest.raises(BrokerConnectionError, match="confirm"):
        broker.enqueue(envelope(rabbit.queue))
    with pytest.raises(BrokerConnectionError, match="heartbeat"):
        for _ in range(20):
            take(broker, rabbit.queue, n=1, timeout=0.5)
    assert time.monotonic() - started < 15


def test_producer_reconnects_after_its_connection_was_cut(rabbit, proxy):
    broker = rabbit(proxy.url(rabbit.url))
    broker.enqueue(envelope(rabbit.queue))
    assert proxy.cut() == 1
    broker.enqueue(envelope(rabbit.queue))  # the stale connection fails, a new one sends it
    assert broker.size(rabbit.queue) == 2


def test_an_idle_producer_connection_dropped_silently_is_replaced(rabbit, proxy, monkeypatch):
    from django_taskq.brokers import amqp_publisher

    broker = rabbit(proxy.url(rabbit.url), confirm_timeout=1)
    broker.enqueue(envelope(rabbit.queue))
    proxy.stall()  # a NAT that forgot the connection: writes vanish, nothing comes back
    monkeypatch.setattr(amqp_publisher, "IDLE", 0.0)  # as if it had been idle for long
    broker.enqueue(envelope(rabbit.queue))  # no confirm: sent again on a new connection
    assert broker.size(rabbit.queue) == 2


class WorkerProcess:
    """``python -m django taskworker`` on ``url``, results in the test SQLite database."""

    def __init__(self, url: str, *args: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT), DJANGO_SETTINGS_MODULE="tests.settings")
        env["TASKQ_TEST_SQLITE"] = str(connections["default"].settings_dict["NAME"])
        env["TASKQ_TEST_OVERRIDES"] = json.dumps({
            "BROKER_URL": url, "RESULT_BACKEND": "db://default", "POLL_INTERVAL": 0.1,
            "LEASE_TIMEOUT": 3.0})
        # A file, not a pipe nobody reads until the end: a full pipe blocks the worker's logging.
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "django", "taskworker", "--loglevel", "INFO", "--pool", "solo",
             *args], cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, text=True)

    def stop(self) -> tuple[int, str]:
        """SIGTERM (warm stop), then its exit code and output."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        self.log.seek(0)
        return self.proc.returncode, self.log.read()

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def succeeded(results) -> bool:
    return all(AsyncResult(r.id).state == states.SUCCESS for r in results)


@pytest.mark.subprocess
@pytest.mark.parametrize("broker_kind", ["amqp"])
def test_worker_reconnects_after_every_connection_is_cut_and_loses_nothing(configured, proxy,
                                                                         tmp_path):
    marker = tmp_path / "runs"
    sent = [tasks.record_and_sleep.delay(str(marker), 0.02) for _ in range(40)]
    with WorkerProcess(proxy.url(configured)) as worker:
        wait_for(lambda: runs(marker) >= 10)
        assert proxy.cut() >= 1
        proxy.refuse()
        time.sleep(1.0)
        proxy.forward()
        wait_for(lambda: succeeded(sent), timeout=60)
        after = [tasks.add.delay(i, i) for i in range(5)]  # consuming goes on after the cut
        assert [r.get(timeout=30) for r in after] == [0, 2, 4, 6, 8]
        code, output = worker.stop()
    assert code == 0, output
    assert runs(marker) >= 40  # each at least once; a few twice (at least once, not lost)
    assert "broker unavailable" in output
    assert get_broker().size("default") == 0


@pytest.mark.subprocess
@pytest.mark.parametrize("broker_kind", ["amqp"])
def test_sigkill_mid_task_loses_nothing_and_reruns_once(configured, tmp_path):
    marker = tmp_path / "runs"
    result = tasks.record_and_sleep.delay(str(marker), 1.5)
    with WorkerProcess(configured) as first:
        wait_for(lambda: runs(marker) == 1)
        first.proc.kill()  # SIGKILL: RabbitMQ takes the unacked message back
        first.proc.wait()
    assert result.state == states.PENDING
    with WorkerProcess(configured) as second:
        assert result.get(timeout=30) == "slept"
        assert runs(marker) == 2  # once killed, once to completion
        code, output = second.stop()
    assert code == 0, output
    assert get_broker().size("default") == 0


# -- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize("broker_kind", ["amqp"])
def test_malformed_messages_are_dead_lettered_and_the_worker_goes_on(configured, make_worker):
    import amqp

    broker = get_broker()
    good = tasks.add.delay(2, 2)  # declares the queue the Celery way
    raw = connect(broker.options, heartbeat=0)
    channel = raw.channel()
    channel.basic_publish(amqp.Message(b"\x00not json", delivery_mode=2), "", "default")
    channel.basic_publish(amqp.Message(b"{oops", application_headers={
        "task": "tests.testapp.tasks.add", "id": "bad-json"}), "", "default")
    raw.close()
    worker = make_worker()
    for _ in range(20):
        worker.step()
    assert good.get(timeout=5) == 4
    reasons = dict(dead_letters(broker))
    assert len(reasons) == 2
    assert "no 'task' header" in reasons[""]
    assert "malformed message" in reasons["bad-json"]
    assert AsyncResult("bad-json").state == states.FAILURE
    assert broker.size("default") == 0


# -- TLS -------------------------------------------------------------------------------------

@pytest.fixture
def tls_server(tmp_path):
    """A loopback TLS server with a self-signed certificate for ``localhost``: it completes
    the handshake, then hangs up (no RabbitMQ behind it)."""
    import shutil
    import socket
    import ssl

    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            with contextlib.suppress(OSError), client:
                client.settimeout(5)
                context.wrap_socket(client, server_side=True).close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], cert
    stop.set()
    thread.join(timeout=5)
    listener.close()


@pytest.mark.parametrize("host, trust, error", [
    ("localhost", False, "CERTIFICATE_VERIFY_FAILED"),  # verified by default: unknown CA
    ("127.0.0.1", True, "mismatch|doesn't match"),  # trusted CA, but not this host name
    ("localhost", True, None),  # trusted and matching: TLS passes (then the server hangs up)
])
def test_amqps_verifies_the_server_certificate(tls_server, host, trust, error):
    port, cert = tls_server
    query = f"?connect_timeout=2&ca_certs={cert}" if trust else "?connect_timeout=2"
    broker = broker_from_url(f"amqps://guest:guest@{host}:{port}//{query}")
    with pytest.raises(BrokerConnectionError) as caught:
        broker.enqueue(envelope("tls"))
    broker.close()
    if error:
        assert caught.match(error)
    else:  # past TLS: the AMQP handshake then meets a server that hangs up
        assert "CERTIFICATE" not in str(caught.value) and "mismatch" not in str(caught.value)
