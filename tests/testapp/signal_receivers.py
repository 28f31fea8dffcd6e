"""Receivers for the worker-level signals, connected the way Celery's docs show.

A ``taskworker`` subprocess imports this module before the command runs (see
tests/test_worker_signals.py). Each receiver appends one JSON line (signal, pid, sender,
arguments) to the file named by TASKQ_TEST_SIGNAL_LOG; without that variable they do nothing,
so importing this module in the test process is harmless.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from django_taskq import signals, task
from django_taskq.log import get_task_logger

SIGNAL_LOG = "TASKQ_TEST_SIGNAL_LOG"
#: The hostname the subprocess worker is given, for a receiver connected with a str sender.
HOSTNAME = "signals@test"

logger = get_task_logger(__name__)


@task
def logged(message: str) -> str:
    logger.info("from a task: %s", message)
    return message


def describe(value: Any) -> Any:
    """A JSON-friendly view: plain values as they are, objects by type (loggers by name)."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, dict):
        return {str(k): describe(v) for k, v in value.items()}
    if isinstance(value, logging.Logger):
        return f"Logger:{value.name}"
    return type(value).__name__


def record(name: str, sender: Any, **kwargs: Any) -> None:
    path = os.environ.get(SIGNAL_LOG)
    if not path:
        return
    kwargs.pop("signal", None)
    line = {"signal": name, "pid": os.getpid(), "sender": describe(sender),
            **{key: describe(value) for key, value in kwargs.items()}}
    with open(path, "a", encoding="utf-8") as log:
        log.write(json.dumps(line) + "\n")


@signals.celeryd_init.connect
def on_celeryd_init(sender, **kwargs):
    record("celeryd_init", sender, **kwargs)


@signals.celeryd_init.connect(sender=HOSTNAME)
def on_celeryd_init_for_this_host(sender, **kwargs):
    record("celeryd_init for this host", sender)


@signals.after_setup_logger.connect
def on_after_setup_logger(sender, **kwargs):
    record("after_setup_logger", sender, **kwargs)


@signals.after_setup_task_logger.connect
def on_after_setup_task_logger(sender, **kwargs):
    record("after_setup_task_logger", sender, **kwargs)


@signals.celeryd_after_setup.connect
def on_celeryd_after_setup(sender, **kwargs):
    record("celeryd_after_setup", sender, **kwargs)


@signals.worker_init.connect
def on_worker_init(sender, **kwargs):
    record("worker_init", sender, **kwargs)


@signals.worker_before_create_process.connect
def on_worker_before_create_process(sender, **kwargs):
    record("worker_before_create_process", sender, **kwargs)


@signals.worker_process_init.connect
def on_worker_process_init(sender, **kwargs):
    record("worker_process_init", sender, **kwargs)


@signals.worker_process_shutdown.connect
def on_worker_process_shutdown(sender, **kwargs):
    record("worker_process_shutdown", sender, **kwargs)


@signals.worker_ready.connect
def on_worker_ready(sender, **kwargs):
    record("worker_ready", sender, **kwargs)


@signals.heartbeat_sent.connect
def on_heartbeat_sent(sender, **kwargs):
    record("heartbeat_sent", sender, **kwargs)


@signals.worker_shutting_down.connect
def on_worker_shutting_down(sender, **kwargs):
    record("worker_shutting_down", sender, **kwargs)


@signals.worker_shutdown.connect
def on_worker_shutdown(sender, **kwargs):
    record("worker_shutdown", sender, **kwargs)
