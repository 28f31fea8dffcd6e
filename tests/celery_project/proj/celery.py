"""The project's Celery app, laid out as Celery's "First steps with Django" shows it.

The worker-level signal receivers live here because the worker imports this module first.
"""

import os

from celery import Celery
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    worker_process_init,
    worker_ready,
    worker_shutting_down,
)

from shop import audit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proj.settings")

app = Celery("proj")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Celery 5.3+ asks for this to be said explicitly.
app.conf.broker_connection_retry_on_startup = True
app.autodiscover_tasks()


@app.task(bind=True, ignore_result=True)
def debug_task(self):
    print(f"Request: {self.request!r}")


@app.task
def ping():
    return "pong"


@app.on_after_configure.connect
def setup_periodic_tasks(sender, **kwargs):
    sender.add_periodic_task(300.0, ping, name="ping every 5 minutes")


@worker_process_init.connect
def reset_child_state(**kwargs):
    # Each pool process starts with its own connections; note that it did.
    audit.record("worker_process_init")


@after_setup_logger.connect
def on_logger_ready(logger=None, loglevel=None, **kwargs):
    audit.record("after_setup_logger", loglevel=loglevel)


@after_setup_task_logger.connect
def on_task_logger_ready(logger=None, loglevel=None, **kwargs):
    audit.record("after_setup_task_logger", loglevel=loglevel)


@worker_ready.connect
def on_worker_ready(**kwargs):
    audit.record("worker_ready")


@worker_shutting_down.connect
def on_worker_shutting_down(sig=None, how=None, exitcode=None, **kwargs):
    audit.record("worker_shutting_down", sig=sig, how=how, exitcode=exitcode)
