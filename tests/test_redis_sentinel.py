"""Redis Sentinel (``sentinel://``) for the broker and the result backend, against a real
deployment the module starts: a password-protected master, its replica and a sentinel, plus a
second sentinel that asks for a password of its own; then a failover under a live broker and
result backend."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from django_taskq import chord
from django_taskq.brokers import broker_from_url
from django_taskq.celery_settings import honoured_values
from django_taskq.conf import reset_settings
from django_taskq.control import control_store_from_url
from django_taskq.exceptions import BrokerConnectionError, ConfigurationError
from django_taskq.outcome import Outcome
from django_taskq.results import backend_from_url
from tests.helpers import envelope
from tests.redisserver import RedisServer, free_port, require_redis_server, wait_listening
from tests.test_worker_process import WorkerProcess
from tests.testapp import tasks

pytestmark = [pytest.mark.own_server, pytest.mark.subprocess]

PASSWORD = "m4ster-pw"
SENTINEL_PASSWORD = "s3ntinel-pw"
MASTER = "mymaster"
GUARDED = "guarded"
AUTH = ["--requirepass", PASSWORD, "--masterauth", PASSWORD]


class Deployment:
    """A master, a replica and a sentinel on free loopback ports, in ``directory``."""

    def __init__(self, directory: Path) -> None:
        auth = AUTH
        (directory / "m").mkdir()
        (directory / "r").mkdir()
        self.master = RedisServer(directory / "m", args=auth)
        self.master.start()
        self.replica = RedisServer(directory / "r", args=[
            *auth, "--replicaof", "127.0.0.1", str(self.master.port)])
        self.replica.start()
        self.procs: list[subprocess.Popen[bytes]] = []
        self.dead_port = free_port()  # a sentinel address in the list that nobody answers
        (directory / "g").mkdir()
        self.lone = RedisServer(directory / "g", args=auth)  # the guarded sentinel's master
        self.lone.start()
        self.sentinel_port = self._sentinel(directory, MASTER, self.master.port)
        self.guarded_port = self._sentinel(directory, GUARDED, self.lone.port, SENTINEL_PASSWORD)
        self.admin = redis.Redis(port=self.sentinel_port)
        self._until(self._replicas_known, "the sentinel to see the replica")

    def _sentinel(self, directory: Path, name: str, master: int,
                  password: str | None = None) -> int:
        """Start a sentinel watching the master as ``name``; its port."""
        port = free_port()
        conf = directory / f"sentinel-{port}.conf"
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {directory}\nlogfile sentinel-{port}.log\n"
            + (f"requirepass {password}\n" if password else "")
            + f"sentinel monitor {name} 127.0.0.1 {master} 1\n"
            f"sentinel auth-pass {name} {PASSWORD}\n"
            f"sentinel down-after-milliseconds {name} 1000\n"
            f"sentinel failover-timeout {name} 2000\n")
        self.procs.append(subprocess.Popen([require_redis_server(), str(conf), "--sentinel"],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_listening(port)
        return port

    @property
    def url(self) -> str:
        """The list a user writes: a second (dead) sentinel address is skipped."""
        return (f"sentinel://:{PASSWORD}@127.0.0.1:{self.sentinel_port};"
                f"sentinel://127.0.0.1:{self.dead_port}/0")

    def master_port(self) -> int:
        return int(self.admin.sentinel_get_master_addr_by_name(MASTER)[1])

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(port=port, password=PASSWORD, socket_timeout=10,
                           retry=Retry(NoBackoff(), 0))

    def _replicas_known(self) -> bool:
        return any(replica["is_slave"] for replica in self.admin.sentinel_slaves(MASTER))

    @staticmethod
    def _until(condition, what: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)

    def in_sync(self) -> int:
        """The master's port, once a replica (restarted if a failover killed it) has all of
        the master's writes."""
        master = self.master_port()
        for server in (self.master, self.replica):
            if server.port != master and (server.proc is None or server.proc.poll() is not None):
                self.rejoin(server, master)
        self._until(lambda: self.client(master).wait(1, 500) == 1, "a replica in sync")
        return master

    def failover(self) -> int:
        """Kill the master once its replica has everything (nothing acknowledged may be lost);
        the port of the replica the sentinel promotes."""
        old = self.in_sync()
        next(server for server in (self.master, self.replica) if server.port == old).kill()
        self._until(lambda: self.master_port() != old, "the sentinel to promote the replica")
        new = self.master_port()
        self._until(lambda: self.client(new).info("replication")["role"] == "master",
                    "the new master")
        self._until(lambda: self.admin.sentinel_masters()[MASTER]["flags"] == "master",
                    "the failover to end")
        return new

    def rejoin(self, server: RedisServer, master: int) -> None:
        """Restart a killed master as a replica of the current one."""
        server.args = [*AUTH, "--replicaof", "127.0.0.1", str(master)]
        server.start()
        self._until(lambda: any(not replica["is_sdown"] and replica["port"] == server.port
                                for replica in self.admin.sentinel_slaves(MASTER)),
                    "the sentinel to see the rejoined replica")

    def switch_over(self) -> tuple[int, int]:
        """A planned failover (SENTINEL FAILOVER): the old master stays up and is demoted.
        The test demotes it at once, as the sentinel does some seconds later."""
        old = self.in_sync()
        self.admin.execute_command("SENTINEL", "FAILOVER", MASTER)
        self._until(lambda: self.admin.sentinel_masters()[MASTER]["port"] != old
                    and self.admin.sentinel_masters()[MASTER]["flags"] == "master",
                    "the sentinel to promote the replica")
        new = self.master_port()
        self.client(old).replicaof("127.0.0.1", new)
        self._until(lambda: self.client(old).info("replication")["role"] == "slave",
                    "the old master to follow the new one")
        return old, new

    def stop(self) -> None:
        self.admin.close()
        for proc in self.procs:
            proc.kill()
            proc.wait()
        for server in (self.replica, self.master, self.lone):
            server.kill()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    require_redis_server()
    deployment = Deployment(tmp_path_factory.mktemp("sentinel"))
    yield deployment
    deployment.stop()


@pytest.fixture
def sentinel_settings(deployment, settings):
    """TASKQ on the deployment: the master name in the URL for the broker, in the transport
    options (Celery's way) for the result backend."""
    settings.TASKQ = {**settings.TASKQ,
                      "BROKER_URL": f"{deployment.url}?master_name={MASTER}",
                      "RESULT_BACKEND": deployment.url,
                      "RESULT_BACKEND_TRANSPORT_OPTIONS": {"master_name": MASTER}}
    reset_settings()
    yield settings.TASKQ
    reset_settings()


def _outcome(task_id: str, value: int) -> Outcome:
    return Outcome(task_id=task_id, task_name="tests.testapp.tasks.add", state="SUCCESS",
                   payload=str(value).encode())


def test_a_sentinel_password_goes_in_sentinel_kwargs(deployment, settings):
    url = f"sentinel://:{PASSWORD}@127.0.0.1:{deployment.guarded_port}/0"
    settings.TASKQ = {**settings.TASKQ, "BROKER_TRANSPORT_OPTIONS": {"master_name": GUARDED}}
    reset_settings()
    with pytest.raises(BrokerConnectionError, match="named a healthy master.*sentinel_kwargs"):
        broker_from_url(url).enqueue_many([envelope("guarded")])
    settings.TASKQ = {**settings.TASKQ, "BROKER_TRANSPORT_OPTIONS": {
        "master_name": GUARDED, "sentinel_kwargs": {"password": SENTINEL_PASSWORD}}}
    reset_settings()
    broker = broker_from_url(url)
    broker.enqueue_many([envelope("guarded")])
    assert broker.reserve(["guarded"], max_messages=1, lease=5, worker="w")
    broker.close()


def test_broker_and_results_keep_working_across_a_failover(deployment, sentinel_settings):
    broker = broker_from_url(sentinel_settings["BROKER_URL"])
    backend = backend_from_url(sentinel_settings["RESULT_BACKEND"])
    queue = f"sentinel-{uuid.uuid4().hex[:8]}"
    sent = [envelope(queue, args=(n, n)) for n in range(10)]
    broker.enqueue_many(sent)
    first = broker.reserve([queue], max_messages=4, lease=60, worker="w")
    assert len(first) == 4
    broker.ack_many(first)
    backend.store_many([_outcome(d.envelope.message_id, 1) for d in first])
    old = deployment.master_port()
    assert deployment.client(old).llen(queue) == 6  # it is the master that holds them

    new = deployment.failover()
    assert new != old and new in (deployment.master.port, deployment.replica.port)

    # The next commands reach the new master: the rest of the queue, none of the acked ones.
    rest = []
    deadline = time.monotonic() + 20
    while len(rest) < 6 and time.monotonic() < deadline:
        rest += broker.reserve([queue], max_messages=10, lease=60, worker="w", timeout=0.2)
    assert sorted(d.envelope.message_id for d in rest) == sorted(
        e.message_id for e in sent[4:])
    broker.ack_many(rest)
    assert broker.reserve([queue], max_messages=10, lease=60, worker="w") == []
    for delivery in first:  # results stored before the failover are on the new master
        assert backend.get(delivery.envelope.message_id).state == "SUCCESS"
    backend.store(_outcome("after-failover", 2))
    assert deployment.client(new).exists("celery-task-meta-after-failover")
    assert backend.wait("after-failover", timeout=5).result == 2  # pub/sub on the new master
    broker.close()
    backend.close()


def test_a_write_to_a_demoted_master_is_retried_on_the_new_one(deployment, sentinel_settings):
    """After a planned failover the pooled connection to the old master still works, but
    the old master answers READONLY: the write goes again, through the sentinels, to the new
    master (a plain retry-less client would raise)."""
    deployment.in_sync()  # the master the last test killed is back, as a replica
    broker = broker_from_url(sentinel_settings["BROKER_URL"])
    queue = f"switch-{uuid.uuid4().hex[:8]}"
    before = envelope(queue)
    broker.enqueue_many([before])  # a pooled connection to the master of now
    old, new = deployment.switch_over()
    after = envelope(queue)
    broker.enqueue_many([after])  # READONLY from the old master, then the new one
    assert deployment.client(new).llen(queue) == 2
    got = broker.reserve([queue], max_messages=5, lease=60, worker="w")
    assert sorted(d.envelope.message_id for d in got) == sorted(
        [before.message_id, after.message_id])
    broker.close()


def _runs(marker: Path) -> list[int]:
    return sorted(int(n) for n in marker.read_text().split()) if marker.exists() else []


@pytest.mark.django_db(transaction=True)  # the worker's events go to the test database
def test_a_running_worker_carries_on_across_a_failover(deployment, sentinel_settings, tmp_path):
    """The master dies under a busy taskworker: it logs the lost broker, follows the sentinels
    to the new master and runs every task (at least once), and new tasks after."""
    url = sentinel_settings["BROKER_URL"]
    marker = tmp_path / "runs.txt"
    results = f"{deployment.url}?master_name={MASTER}"
    tasks.mark.delay_many([(str(marker), n) for n in range(200)], queue="sentinel-f")
    with WorkerProcess("default", "-Q", "sentinel-f", "--prefetch-multiplier", "2",
                       broker_url=url, result_backend=results) as worker:
        try:
            wait_until = time.monotonic() + 30
            while len(_runs(marker)) < 20:
                assert time.monotonic() < wait_until, worker.output()
                time.sleep(0.02)
            deployment.failover()
            wait_until = time.monotonic() + 40
            while set(_runs(marker)) != set(range(200)):
                assert time.monotonic() < wait_until, worker.output()[-3000:]
                time.sleep(0.05)
            later = tasks.mark.apply_async((str(marker), 1000), queue="sentinel-f")
            assert later.get(timeout=30) == 1000
        finally:
            worker.signal(signal.SIGTERM)
            code, output = worker.wait()
    assert code == 0, output
    runs = _runs(marker)
    assert set(runs) == set(range(200)) | {1000}
    assert len(runs) - len(set(runs)) <= 10  # only tasks caught in flight by the kill ran twice


@pytest.mark.django_db(transaction=True)
def test_a_worker_process_runs_tasks_and_a_chord_through_sentinel(deployment, sentinel_settings):
    # The worker reads the same TASKQ: master name and sentinel password from the settings.
    url = sentinel_settings["BROKER_URL"]
    with WorkerProcess("default", "-Q", "sentinel-w", broker_url=url,
                       result_backend=f"{deployment.url}?master_name={MASTER}") as worker:
        try:
            assert tasks.add.apply_async((2, 3), queue="sentinel-w").get(timeout=30) == 5
            body = tasks.tsum.s().set(queue="sentinel-w")
            header = [tasks.add.s(n, n).set(queue="sentinel-w") for n in range(3)]
            assert chord(header)(body).get(timeout=30) == 6
        finally:
            worker.signal(signal.SIGTERM)
            code, output = worker.wait()
    assert code == 0, output
    assert "Traceback" not in output


def test_a_missing_master_name_names_both_ways_to_give_it(deployment, settings):
    reset_settings()
    with pytest.raises(ConfigurationError) as caught:
        broker_from_url(deployment.url)
    message = str(caught.value)
    assert "?master_name=" in message and "BROKER_TRANSPORT_OPTIONS" in message
    assert PASSWORD not in message and "****" in message
    with pytest.raises(ConfigurationError, match="RESULT_BACKEND_TRANSPORT_OPTIONS"):
        backend_from_url(deployment.url)
    with pytest.raises(ConfigurationError) as caught:  # a control store on a URL of its own
        control_store_from_url(deployment.url)
    assert "CONTROL_URL" in str(caught.value) and "?master_name=" in str(caught.value)
    assert "TRANSPORT_OPTIONS" not in str(caught.value)


@pytest.mark.parametrize(("url", "says"), [
    (f"sentinel://:{PASSWORD}@h1:26379;redis://h2:6379", "must be sentinel://host:port"),
    ("sentinel://h1:notaport?master_name=m", "needs a host"),
    ("sentinel://?master_name=m", "needs a host"),
    ("sentinel://h1:26379?master_name=m;sentinel://h2", "after the last sentinel"),
    ("sentinel://h1:26379/zero?master_name=m", "must be a number"),
    ("sentinel://h1:26379;sentinel://h2:26379/3?master_name=m", "write /3 after the first"),
    ("sentinel://h1:26379?master_name=m&ssl_ca_cert=/ca.pem", "unknown option ssl_ca_cert"),
    ("sentinel://h1:26379?master_name=m&ssl_cert_reqs=always", "ssl_cert_reqs must be"),
])
def test_a_bad_sentinel_list_is_a_clear_configuration_error(url, says, settings):
    reset_settings()
    with pytest.raises(ConfigurationError, match=says) as caught:
        broker_from_url(url)
    assert PASSWORD not in str(caught.value)


def test_no_reachable_sentinel_is_a_connection_error_naming_the_fix(settings):
    reset_settings()
    url = (f"sentinel://:{PASSWORD}@127.0.0.1:{free_port()};sentinel://127.0.0.1:{free_port()}"
           f"?master_name={MASTER}&socket_connect_timeout=0.5")
    broker = broker_from_url(url)
    started = time.monotonic()
    with pytest.raises(BrokerConnectionError) as caught:
        broker.enqueue_many([envelope("nowhere")])
    assert time.monotonic() - started < 30
    message = str(caught.value)
    assert "No sentinel of the sentinel:// URL named a healthy master" in message
    assert "master_name" in message and PASSWORD not in message


def test_an_unknown_master_name_is_a_connection_error_naming_master_name(deployment,
                                                                          sentinel_settings):
    broker = broker_from_url(f"{deployment.url}?master_name=nosuchmaster")
    with pytest.raises(BrokerConnectionError, match="master_name"):
        broker.enqueue_many([envelope("nowhere")])


def test_celery_sentinel_settings_are_honoured(deployment, settings):
    settings.CELERY_BROKER_URL = deployment.url
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"master_name": MASTER, "visibility_timeout": 3600}
    settings.CELERY_RESULT_BACKEND = deployment.url
    settings.CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"master_name": MASTER}
    values = honoured_values({})
    assert values["BROKER_URL"] == deployment.url
    assert values["BROKER_TRANSPORT_OPTIONS"]["master_name"] == MASTER
    assert values["RESULT_BACKEND_TRANSPORT_OPTIONS"] == {"master_name": MASTER}
    settings.TASKQ = {}
    reset_settings()
    broker = broker_from_url(deployment.url)
    broker.enqueue_many([envelope("celery-sentinel")])
    assert broker.reserve(["celery-sentinel"], max_messages=1, lease=5, worker="w")
    broker.close()


def test_celery_transport_options_without_sentinel_keys_still_have_no_effect(settings):
    from django_taskq.celery_settings import NO_EFFECT, translate

    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
    translation = translate({})
    assert "BROKER_TRANSPORT_OPTIONS" not in translation.values
    [note] = [n for n in translation.notes if n.setting == "CELERY_BROKER_TRANSPORT_OPTIONS"]
    assert note.kind == NO_EFFECT and "sentinel://" in note.hint
    # SQS's keys are read by the sqs:// broker: such a dict is honoured whole.
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"region": "eu-west-1", "visibility_timeout": 60}
    assert honoured_values({})["BROKER_TRANSPORT_OPTIONS"] == {
        "region": "eu-west-1", "visibility_timeout": 60}


@pytest.mark.parametrize("value", ["mymaster", {"master_name": ""},
                                   {"sentinel_kwargs": "pw"}, {"min_other_sentinels": -1}])
def test_bad_transport_options_are_setting_errors(settings, value):
    from django_taskq.conf import get_settings

    settings.TASKQ = {**settings.TASKQ, "BROKER_TRANSPORT_OPTIONS": value}
    reset_settings()
    with pytest.raises(ConfigurationError, match="BROKER_TRANSPORT_OPTIONS"):
        get_settings()
    reset_settings()


@pytest.mark.django_db(transaction=True)
def test_a_celery_client_on_the_same_sentinel_url_talks_to_our_worker(deployment,
                                                                     sentinel_settings):
    """The URL and transport options a Celery project already has: its client sends through
    kombu's Sentinel transport and reads the result through Celery's SentinelBackend."""
    pytest.importorskip("celery")
    from tests.celery_peer import make_app

    app = make_app(deployment.url, deployment.url)
    app.conf.broker_transport_options = {"master_name": MASTER}
    app.conf.result_backend_transport_options = {"master_name": MASTER}
    with WorkerProcess("default", "-Q", "sentinel-c", broker_url=sentinel_settings["BROKER_URL"],
                       result_backend=f"{deployment.url}?master_name={MASTER}") as worker:
        try:
            sent = app.send_task("tests.testapp.tasks.add", (4, 5), queue="sentinel-c")
            assert sent.get(timeout=30) == 9
        finally:
            worker.signal(signal.SIGTERM)
            code, output = worker.wait()
            app.close()
    assert code == 0, output
    assert "Traceback" not in output


def test_manage_py_check_reports_a_sentinel_url_without_master_name(settings):
    from django_taskq.checks import check_settings

    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": f"sentinel://:{PASSWORD}@h1;sentinel://h2/0"}
    reset_settings()
    found = [m for m in check_settings() if m.id == "django_taskq.E003"]
    assert found and "master_name" in found[0].msg and PASSWORD not in found[0].msg
    reset_settings()
