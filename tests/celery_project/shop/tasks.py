"""The shop's background jobs."""

import time

from celery import Task, current_task, shared_task
from celery.exceptions import Ignore, MaxRetriesExceededError, Reject, SoftTimeLimitExceeded
from celery.utils.log import get_task_logger

from proj.celery import app
from shop import audit
from shop.models import Order

logger = get_task_logger(__name__)


class OutOfStock(Exception):
    """Expected: the warehouse has fewer items than ordered (listed in ``throws``)."""


class AuditedTask(Task):
    """Base class of the order tasks: every handler writes to the audit trail."""

    audit_category = "general"

    def __call__(self, *args, **kwargs):
        audit.record("__call__", task=self.name, args=list(args))
        return super().__call__(*args, **kwargs)

    def before_start(self, task_id, args, kwargs):
        audit.record("before_start", task=self.name, task_id=task_id, args=list(args))

    def on_success(self, retval, task_id, args, kwargs):
        audit.record("on_success", task=self.name, task_id=task_id, retval=retval)

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        audit.record("on_failure", task=self.name, task_id=task_id, exc=type(exc).__name__,
                     traceback="Traceback" in str(einfo.traceback))

    def on_retry(self, exc, task_id, args, kwargs, einfo):
        audit.record("on_retry", task=self.name, task_id=task_id, exc=type(exc).__name__)

    def after_return(self, status, retval, task_id, args, kwargs, einfo):
        audit.record("after_return", task=self.name, task_id=task_id, status=status)


@shared_task
def add(x, y):
    return x + y


@shared_task(bind=True, base=AuditedTask, acks_late=True, reject_on_worker_lost=True,
             throws=(OutOfStock,), max_retries=3, default_retry_delay=0.2,
             audit_category="orders")
def reserve_stock(self, sku, quantity):
    """Reserve items. The warehouse times out on the first try of a "flaky-" SKU."""
    logger.info("reserving %s x %s (try %s)", quantity, sku, self.request.retries + 1)
    if sku.startswith("flaky-") and self.request.retries == 0:
        raise self.retry(countdown=0.5, exc=ConnectionError("warehouse timed out"))
    if sku == "sold-out":
        raise OutOfStock(f"{sku}: nothing left")
    order = Order.objects.create(sku=sku, quantity=quantity, status="reserved")
    return {"order": order.pk, "retries": self.request.retries,
            "tenant": (self.request.headers or {}).get("tenant"),
            "category": self.audit_category}


@shared_task(bind=True, base=AuditedTask)
def checkout(self, order_id, amount):
    """Charge through billing, by name: billing's code runs on its own workers."""
    charge = app.send_task("billing.charge", args=[order_id, amount])
    return charge.id


@shared_task(bind=True, autoretry_for=(ConnectionError,), retry_backoff=True,
             retry_backoff_max=2, retry_jitter=False, retry_kwargs={"max_retries": 3})
def fetch_rates(self, currency):
    """Exchange rates from a service that refuses the first call."""
    if self.request.retries == 0:
        raise ConnectionError("rates service unavailable")
    return {"currency": currency, "rate": "1.08", "retries": self.request.retries}


@shared_task(bind=True, max_retries=1, default_retry_delay=0.2)
def notify_customer(self, email):
    """The mail server refuses every try here; give up quietly after one retry."""
    try:
        self.retry()
    except MaxRetriesExceededError:
        logger.warning("giving up on %s after %s retries", email, self.request.retries)
        return "gave up"


@shared_task(expires=3600, priority=5, serializer="json", typing=True, trail=True,
             send_events=False, ignore_result=True, store_errors_even_if_ignored=True)
def record_visit(page):
    """Fire and forget: only failures are worth keeping."""
    if not page:
        raise ValueError("page is required")
    logger.info("visit %s", page)


@shared_task
def cancel_order(order_id):
    if not Order.objects.filter(pk=order_id).exists():
        raise Reject(f"order {order_id} does not exist", requeue=False)
    Order.objects.filter(pk=order_id).update(status="cancelled")
    return order_id


@shared_task(bind=True)
def refresh_cache(self, key):
    if key == "fresh":
        raise Ignore()
    return f"refreshed {key}"


@shared_task(soft_time_limit=1, time_limit=30)
def build_report(seconds):
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            time.sleep(0.05)
    except SoftTimeLimitExceeded:
        logger.warning("report cut short by its soft time limit")
        return "partial"
    return "complete"


@shared_task
def whoami():
    return {"id": current_task.request.id, "name": current_task.name,
            "queue": current_task.request.delivery_info.get("routing_key")}


@shared_task(bind=True)
def read_tenant(self):
    """The tenant header as Celery also exposes it: an attribute of the request."""
    return self.request.get("tenant")
