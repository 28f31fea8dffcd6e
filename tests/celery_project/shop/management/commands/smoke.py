"""``manage.py smoke``: send one of each of the shop's jobs to the workers, wait for them, and
print what came back as JSON (the deploy pipeline runs it against fresh workers)."""

import json
import time
from datetime import timedelta

from celery import states
from celery.result import AsyncResult
from django.core.management.base import BaseCommand
from django.utils import timezone

from billing.tasks import refund
from proj.celery import app, debug_task, ping
from shop import tasks
from shop.maintenance import purge_abandoned_carts


class Command(BaseCommand):
    help = "Send one of each job and report how each ended."

    def add_arguments(self, parser):
        parser.add_argument("--timeout", type=float, default=30.0)
        parser.add_argument("--states", nargs="+", metavar="TASK_ID", default=(), dest="lookup",
                            help="only print the state of these tasks")

    def handle(self, *args, timeout, lookup, **options):
        if lookup:
            self.stdout.write(json.dumps({task_id: AsyncResult(task_id).state
                                          for task_id in lookup}))
            return
        later = tasks.add.apply_async((2, 2), countdown=1)
        app.control.revoke(later.id)
        waited = {
            "add": tasks.add.delay(2, 3),
            "reserve_flaky": tasks.reserve_stock.apply_async(("flaky-lamp", 2), priority=7,
                                                             countdown=0.1),
            "reserve_sold_out": tasks.reserve_stock.delay("sold-out", 1),
            "fetch_rates": tasks.fetch_rates.delay("EUR"),
            "notify": tasks.notify_customer.delay("ada@example.com"),
            "charge": app.send_task("billing.charge", args=[7, "9.99"]),
            "checkout": tasks.checkout.delay(8, "19.99"),
            "refund": refund.delay(7, "9.99"),
            "whoami": tasks.whoami.apply_async(queue="billing"),
            "report": tasks.build_report.delay(10),
            "purge": purge_abandoned_carts.delay(),
            "ping": ping.delay(),
            "tenant": tasks.read_tenant.apply_async(headers={"tenant": "acme"}),
            "revoked": later,
            "expired": tasks.add.apply_async((1, 1),
                                             expires=timezone.now() - timedelta(seconds=1)),
        }
        unwaited = {
            "debug": debug_task.delay(),
            "visit": tasks.record_visit.delay("/home"),
            "cancel_unknown": tasks.cancel_order.delay(999999),
            "refresh_fresh": tasks.refresh_cache.delay("fresh"),
        }
        visit_failed = tasks.record_visit.delay("")
        report = {name: self.outcome(result, timeout) for name, result in waited.items()}
        report["checkout_charge"] = self.outcome(AsyncResult(report["checkout"]["value"]),
                                                 timeout)
        report["visit_failed"] = self.settled(visit_failed.id, timeout)
        stored = AsyncResult(waited["reserve_flaky"].id)  # CELERY_RESULT_EXTENDED keeps these
        report["extended"] = {"name": stored.name, "args": stored.args, "kwargs": stored.kwargs,
                              "queue": stored.queue, "retries": stored.retries,
                              "worker": stored.worker}
        report.update({name: {"id": result.id} for name, result in unwaited.items()})
        self.stdout.write(json.dumps(report, default=repr))

    def outcome(self, result, timeout):
        value = result.get(timeout=timeout, propagate=False)
        got = {"id": result.id, "state": result.state, "value": value}
        if result.failed():
            got.update(value=str(value), traceback=bool(result.traceback))
        return got

    def settled(self, task_id, timeout):
        """For a task whose result is ignored unless it fails: wait for the stored failure."""
        deadline = time.monotonic() + timeout
        result = AsyncResult(task_id)
        while result.state not in states.READY_STATES and time.monotonic() < deadline:
            time.sleep(0.1)
            result = AsyncResult(task_id)
        return {"id": task_id, "state": result.state, "value": str(result.result)}
