"""Example tasks: autodiscovered because this is the app's tasks.py.

Written the way Celery code is written (``shared_task``, a base class with handlers,
``get_task_logger``): a Celery project's tasks look the same, only their imports change.
"""

import asyncio
import time

from django.contrib.auth.models import User
from django.core.mail import send_mail

from django_taskq import Task, get_task_logger, shared_task, task

logger = get_task_logger(__name__)


class AuditedTask(Task):
    """A base class for tasks that touch money: every failure is logged for the books."""

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        logger.warning("audit: %s%r failed: %s", self.name, args, exc)


@task
def add(x, y):
    return x + y


@task(bind=True, queue="default", priority=5)
def slow_square(self, n, seconds=0.5):
    time.sleep(seconds)
    return {"n": n, "square": n * n, "ran_as": self.request.id}


@task
def order_total(lines, shipping=0):
    """A chord's body: called once, with the header tasks' results in header order."""
    return sum(lines) + shipping


@shared_task  # routed to the "mail" queue by TASKQ["TASK_ROUTES"] in settings.py
def welcome(user_id):
    user = User.objects.get(pk=user_id)
    send_mail("Welcome", f"Hello {user.username}!", "shop@example.com", [user.email])
    return f"sent to {user.email}"


@task(base=AuditedTask, throws=(ValueError,))  # expected: logged without a traceback
def refund(order_id):
    logger.info("refunding order %s", order_id)  # the log line carries the task name and id
    raise ValueError(f"order {order_id} was never paid")


class PaymentGatewayBusy(Exception):
    """A temporary failure: worth trying again."""


@task(bind=True, autoretry_for=(PaymentGatewayBusy,), retry_kwargs={"countdown": 0.2},
      max_retries=3, rate_limit="20/s")
def charge(self, order_id):
    """Fails twice (the gateway is busy), then succeeds on the second retry."""
    if self.request.retries < 2:
        raise PaymentGatewayBusy(f"try {self.request.retries + 1} for order {order_id}")
    return {"order": order_id, "charged": True, "retries": self.request.retries}


@task(sensitive=True)
def save_card(card_number):
    """Its argument stays out of logs, events, the admin and the stored result ("<sensitive>")."""
    return f"card ending {card_number[-4:]} saved"


@task
def stock_check():
    """Sent by beat every 2 seconds (TASKQ["BEAT_SCHEDULE"] in settings.py)."""
    from django.utils import timezone

    return {"checked_at": timezone.now().isoformat(timespec="seconds"), "low_stock": 0}


@task
def nightly_report(kind="sales"):
    """Sent by beat at 02:00 on weekdays, Berlin time."""
    return f"{kind} report written"


@shared_task
async def count_customers(pause=0.2):
    """An ``async def`` task: runs on every pool (here prefork, on a loop of the child's thread),
    and many at once on ``--pool asyncio`` or gevent/eventlet (docs/pools.md)."""
    await asyncio.sleep(pause)  # stands for an HTTP call made with an async client
    return await User.objects.acount()  # Django's async ORM
