"""Worker-level signals with their senders and arguments, and task loggers.

In-process: a solo worker on the memory broker, a prefork pool forked from the test process.
Then a real ``taskworker`` process whose receivers (tests/testapp/signal_receivers.py) write
what they got to a file.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import connections

from django_taskq import signals
from django_taskq.brokers import get_broker
from django_taskq.conf import TaskqSettings
from django_taskq.context import Request, activate
from django_taskq.exceptions import BadMessage, NotRegistered
from django_taskq.log import (
    DEFAULT_PROCESS_LOG_FORMAT,
    DEFAULT_TASK_LOG_FORMAT,
    TaskFormatter,
    get_task_logger,
    setup_worker_logging,
    task_logger,
)
from django_taskq.management.commands.taskworker import install_signal_handlers
from django_taskq.message import Envelope
from django_taskq.worker import Worker
from django_taskq.worker.pools import PreforkPool
from django_taskq.worker.timelimits import Limits
from tests.test_time_limits import make_job, run_one, value
from tests.test_worker_process import wait_for
from tests.testapp import limit_tasks
from tests.testapp import signal_receivers as receivers

ROOT = Path(__file__).resolve().parent.parent
# Not setup_logging: a receiver connected there takes logging over (tested on its own).
WORKER_SIGNALS = ["celeryd_init", "after_setup_logger", "after_setup_task_logger",
                  "celeryd_after_setup", "worker_init", "worker_process_init", "worker_ready",
                  "heartbeat_sent", "worker_shutting_down", "worker_shutdown", "task_unknown",
                  "task_rejected", "import_modules"]
memory_only = pytest.mark.parametrize("broker_kind", ["memory"])


@pytest.fixture
def seen():
    """Records (signal name, sender, kwargs) for the worker-level signals, in order."""
    got: list[tuple[str, object, dict]] = []
    connected = {}
    for name in WORKER_SIGNALS:
        def on(sender, _name=name, **kwargs):
            kwargs.pop("signal")
            got.append((_name, sender, kwargs))
        connected[name] = on
        getattr(signals, name).connect(on, weak=False)
    yield got
    for name, on in connected.items():
        getattr(signals, name).disconnect(on)


def first(seen, name):
    return next((sender, kwargs) for n, sender, kwargs in seen if n == name)


def order(seen):
    names = []
    for name, _, _ in seen:
        if name not in names:
            names.append(name)
    return names


@pytest.fixture
def saved_handlers():
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@memory_only
def test_start_heartbeat_and_shutdown_send_their_signals(make_worker, seen):
    worker = make_worker()
    worker.start()
    worker.heartbeat.beat()
    worker.shutdown()
    assert order(seen) == ["worker_init", "worker_process_init", "worker_ready", "heartbeat_sent",
                           "worker_shutdown"]
    for name in ("worker_init", "worker_ready", "heartbeat_sent", "worker_shutdown"):
        assert first(seen, name) == (worker, {})
    assert first(seen, "worker_process_init") == (None, {})  # the solo pool, as in Celery


def _raw(task_name: str, body: bytes) -> Envelope:
    return Envelope(queue="default", body=body,
                    headers={"lang": "py", "task": task_name, "id": str(uuid.uuid4())})


@memory_only
def test_unknown_task_sends_task_unknown(make_worker, seen):
    envelope = _raw("no.such.task", b"[[], {}, {}]")
    get_broker().enqueue(envelope)
    worker = make_worker()
    worker.step()
    sender, kwargs = first(seen, "task_unknown")
    assert sender is worker
    assert kwargs["name"] == "no.such.task" and kwargs["id"] == envelope.message_id
    assert kwargs["message"].headers == envelope.headers
    assert isinstance(kwargs["exc"], NotRegistered)
    assert "task_rejected" not in order(seen)


@memory_only
def test_bad_message_sends_task_rejected(make_worker, seen):
    envelope = _raw("tests.testapp.tasks.add", b"{not json")
    get_broker().enqueue(envelope)
    worker = make_worker()
    worker.step()
    sender, kwargs = first(seen, "task_rejected")
    assert sender is worker and kwargs["message"].body == b"{not json"
    assert isinstance(kwargs["exc"], BadMessage) and "malformed" in str(kwargs["exc"])
    assert "task_unknown" not in order(seen)


@memory_only
def test_stop_signals_send_worker_shutting_down(make_worker, seen, saved_handlers):
    worker = make_worker(hostname="stopping@test")
    install_signal_handlers(worker)
    signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
    signal.getsignal(signal.SIGINT)(signal.SIGINT, None)
    assert [(s, k) for n, s, k in seen if n == "worker_shutting_down"] == [
        ("stopping@test", {"sig": "SIGTERM", "how": "Warm", "exitcode": 0}),
        ("stopping@test", {"sig": "SIGINT", "how": "Cold", "exitcode": 0})]
    assert worker.stopping and worker.cold


@memory_only
def test_taskworker_command_sends_its_signals_in_celerys_order(configured, seen, saved_handlers):
    call_command("taskworker", "--pool", "solo", "--burst", "-n", "cmd@test", stdout=io.StringIO())
    assert order(seen)[:6] == ["celeryd_init", "after_setup_logger", "after_setup_task_logger",
                               "celeryd_after_setup", "worker_init", "worker_process_init"]
    sender, kwargs = first(seen, "celeryd_init")
    assert sender == "cmd@test" and isinstance(kwargs["instance"], Worker)
    assert isinstance(kwargs["conf"], TaskqSettings)
    assert kwargs["options"]["pool"] == "solo" and kwargs["options"]["burst"] is True
    sender, kwargs = first(seen, "celeryd_after_setup")
    assert sender == "cmd@test" and kwargs["instance"].options.hostname == "cmd@test"


def test_import_modules_is_sent_by_the_app(seen):
    config = apps.get_app_config("django_taskq")
    config.ready()  # again: what it registers is idempotent
    assert first(seen, "import_modules") == (config, {})


# -- logging ------------------------------------------------------------------------------


def test_a_setup_logging_receiver_takes_logging_over(seen):
    package, got = logging.getLogger("django_taskq"), []

    @signals.setup_logging.connect
    def take_over(sender, **kwargs):
        kwargs.pop("signal")
        got.append((sender, kwargs))

    handlers = package.handlers[:]
    try:
        assert setup_worker_logging("INFO") is False
    finally:
        signals.setup_logging.disconnect(take_over)
    assert got == [(None, {"loglevel": logging.INFO, "logfile": None,
                           "format": DEFAULT_PROCESS_LOG_FORMAT, "colorize": False})]
    assert seen == [] and package.handlers == handlers  # nothing configured, nothing more sent


def test_default_logging_set_up_then_announced(seen, tmp_path):
    root, package = logging.getLogger(), logging.getLogger("django_taskq")
    saved = (root.handlers[:], package.level, task_logger.level, task_logger.propagate)
    logfile = tmp_path / "worker.log"
    root.handlers = []  # a project without logging configuration
    try:
        assert setup_worker_logging("DEBUG", str(logfile)) is True
        handler = task_logger.handlers[-1]
        assert isinstance(handler.formatter, TaskFormatter) and task_logger.propagate is False
        logging.getLogger("django_taskq.worker").debug("worker line")
        with activate(Request(id="abc-123", task="proj.tasks.add")):
            get_task_logger("proj.tasks").info("task line")
    finally:
        for logger in (package, task_logger):
            for added in logger.handlers[:]:
                logger.removeHandler(added)
                added.close()
        root.handlers = saved[0]
        package.setLevel(saved[1])
        task_logger.setLevel(saved[2])
        task_logger.propagate = saved[3]
    text = logfile.read_text()
    assert "DEBUG/MainProcess] worker line" in text
    assert "INFO/MainProcess] proj.tasks.add[abc-123]: task line" in text
    assert first(seen, "after_setup_logger") == (None, {
        "logger": package, "loglevel": logging.DEBUG, "logfile": str(logfile),
        "format": DEFAULT_PROCESS_LOG_FORMAT, "colorize": False})
    assert first(seen, "after_setup_task_logger")[1]["logger"] is task_logger
    assert first(seen, "after_setup_task_logger")[1]["format"] == DEFAULT_TASK_LOG_FORMAT


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def collected():
    handler, logger = Collect(), receivers.logger
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)


@memory_only
def test_task_logger_records_carry_the_running_task(make_worker, collected):
    result = receivers.logged.delay("inside")
    worker = make_worker()
    worker.step()
    assert result.get(timeout=5) == "inside"
    receivers.logger.info("outside")
    inside, outside = collected
    assert (inside.task_name, inside.task_id) == (receivers.logged.name, result.id)
    assert (outside.task_name, outside.task_id) == ("???", "???")
    assert TaskFormatter().format(inside).endswith(
        f"{receivers.logged.name}[{result.id}]: from a task: inside")


def test_task_loggers_are_children_of_the_task_logger():
    logger = get_task_logger("some.module.tasks")
    assert logger is logging.getLogger("some.module.tasks")
    assert logger.parent is task_logger and task_logger.parent is logging.getLogger("django_taskq")
    assert get_task_logger("django_taskq.task.sub").parent is task_logger
    for reserved in ("django_taskq", "django_taskq.task"):
        with pytest.raises(RuntimeError, match="reserved"):
            get_task_logger(reserved)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "plain", None, None)
    assert TaskFormatter().format(record).endswith("] ???[???]: plain")


# -- prefork children ------------------------------------------------------------------------


def _append(path: Path, line: str) -> None:
    with open(path, "a", encoding="utf-8") as file:
        file.write(line + "\n")


@pytest.fixture
def child_log(tmp_path):
    """Receivers the forked children inherit; yields (lines they wrote, pools created for)."""
    log, created = tmp_path / "children", []

    def before(sender, **kwargs):
        created.append(sender)

    def init(sender, **kwargs):
        _append(log, f"init {os.getpid()} {sender}")

    def shutdown(sender, pid, exitcode, **kwargs):
        _append(log, f"shutdown {pid} {exitcode} {sender} {pid == os.getpid()}")

    pairs = [(signals.worker_before_create_process, before),
             (signals.worker_process_init, init), (signals.worker_process_shutdown, shutdown)]
    for sig, on in pairs:
        sig.connect(on, weak=False)
    yield (lambda: log.read_text().splitlines() if log.exists() else []), created
    for sig, on in pairs:
        sig.disconnect(on)


def test_prefork_children_send_init_and_shutdown(child_log):
    lines, created = child_log
    pool = PreforkPool(1, Limits(max_tasks_per_child=1))
    try:
        pool.start()
        first_pid = value(run_one(pool, make_job(limit_tasks.pid)))  # then the child retires
        second_pid = value(run_one(pool, make_job(limit_tasks.pid)))
        pool.stop()
    finally:
        pool.terminate()
    assert first_pid != second_pid and created == [pool, pool, pool]  # each child retired
    third_pid = lines()[4].split()[1]  # the spare child, stopped by stop() without a task
    assert lines() == [f"init {first_pid} None", f"shutdown {first_pid} 0 None True",
                       f"init {second_pid} None", f"shutdown {second_pid} 0 None True",
                       f"init {third_pid} None", f"shutdown {third_pid} 0 None True"]


def test_a_killed_child_sends_no_shutdown(child_log):
    lines, _ = child_log
    pool = PreforkPool(1)
    pool.start()
    wait_for(lambda: len(lines()) == 1, timeout=10)
    pool.terminate()
    assert [line.split()[0] for line in lines()] == ["init"]


# -- a real worker process ----------------------------------------------------------------


BOOT = ("import sys, django; django.setup(); import tests.testapp.signal_receivers; "
        "from django.core.management import call_command; call_command('taskworker', *sys.argv[1:])")


def start_worker(log: Path, *args: str) -> subprocess.Popen:
    """``taskworker`` in a new process that imported the test receivers first."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), DJANGO_SETTINGS_MODULE="tests.settings")
    env[receivers.SIGNAL_LOG] = str(log)
    env["TASKQ_TEST_SQLITE"] = str(connections["default"].settings_dict["NAME"])
    env["TASKQ_TEST_OVERRIDES"] = json.dumps({
        "BROKER_URL": "db://default", "RESULT_BACKEND": "db://default", "LEASE_TIMEOUT": 2.0,
        "HEARTBEAT_INTERVAL": 0.2, "POLL_INTERVAL": 0.1})
    return subprocess.Popen([sys.executable, "-c", BOOT, "--loglevel", "INFO", *args], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def events(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.mark.subprocess
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_sends_every_worker_signal(settings, tmp_path):
    settings.TASKQ = {**settings.TASKQ, "BROKER_URL": "db://default",
                      "RESULT_BACKEND": "db://default"}
    log = tmp_path / "signals.jsonl"
    result = receivers.logged.delay("hello")
    proc = start_worker(log, "--pool", "prefork", "--concurrency", "1", "-n", receivers.HOSTNAME)
    try:
        assert result.get(timeout=30) == "hello"
        wait_for(lambda: any(e["signal"] == "heartbeat_sent" for e in events(log)))
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            print(proc.communicate()[0])  # shown when the test fails
    assert proc.returncode == 0, output
    got = events(log)
    main = [e for e in got if e["pid"] == proc.pid]
    assert order([(e["signal"], None, None) for e in main]) == [
        "celeryd_init", "celeryd_init for this host", "after_setup_logger",
        "after_setup_task_logger", "celeryd_after_setup", "worker_init",
        "worker_before_create_process", "worker_ready", "heartbeat_sent", "worker_shutting_down",
        "worker_shutdown"]
    by_name = {e["signal"]: e for e in main}
    assert by_name["celeryd_init"]["sender"] == receivers.HOSTNAME
    assert by_name["celeryd_init"]["instance"] == "Worker"
    assert by_name["celeryd_init"]["options"]["pool"] == "prefork"
    assert by_name["after_setup_logger"]["logger"] == "Logger:django_taskq"
    assert by_name["after_setup_task_logger"]["logger"] == "Logger:django_taskq.task"
    assert by_name["worker_before_create_process"]["sender"] == "PreforkPool"
    assert by_name["worker_shutting_down"] == {
        "signal": "worker_shutting_down", "pid": proc.pid, "sender": receivers.HOSTNAME,
        "sig": "SIGTERM", "how": "Warm", "exitcode": 0}
    child = [e for e in got if e["pid"] != proc.pid]
    assert [e["signal"] for e in child] == ["worker_process_init", "worker_process_shutdown"]
    assert child[1] == {"signal": "worker_process_shutdown", "pid": child[0]["pid"],
                        "sender": None, "exitcode": 0}
    assert f"INFO/taskq-child] {receivers.logged.name}[{result.id}]: from a task: hello" in output
