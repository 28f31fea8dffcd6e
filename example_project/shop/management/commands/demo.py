"""``manage.py demo``: enqueue example tasks, wait for a worker to run them, print the results."""

import time
import uuid

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand
from django.db import transaction

from django_taskq import AsyncResult, chord, send_task
from django_taskq.brokers import get_broker
from django_taskq.message import SendOptions, build_envelope
from django_taskq.models import PeriodicTask, TaskResult
from shop.tasks import add, charge, count_customers, order_total, refund, save_card, slow_square, welcome


class Command(BaseCommand):
    help = "Enqueue example tasks and show their states and results (needs a running worker)."

    def handle(self, *args, **options):
        started = time.monotonic()
        with transaction.atomic():  # the user and the message commit together (database broker)
            user, _ = User.objects.get_or_create(username="ada",
                                                 defaults={"email": "ada@example.com"})
            mail = welcome.delay(user.pk)
        # A chord: the three header tasks run side by side; the worker that settles the last
        # one sends the body, order_total([12, 30, 7], shipping=5), once.
        order = chord([add.s(5, 7), add.s(10, 20), add.s(3, 4)], order_total.s(shipping=5)).delay()
        results = {
            "add.delay(2, 3)": add.delay(2, 3),
            "slow_square.delay(7)": slow_square.delay(7),
            "count_customers.delay()  (async def)": count_customers.delay(),
            "welcome.delay(ada)": mail,
            "refund.delay(42)": refund.delay(42),
            "charge.delay(42)  (retries twice)": charge.delay(42),
            "add.apply_async((1, 1), countdown=1)": add.apply_async((1, 1), countdown=1),
            'send_task("shop.tasks.add", (20, 22))': send_task("shop.tasks.add", (20, 22)),
            "chord([add.s() x3], order_total.s())": order,
        }
        bulk = add.delay_many([(i, i) for i in range(100)])
        sent = len(results) - 1 + len(order.parent) + len(bulk)  # the chord: its header tasks
        self.stdout.write(f"enqueued {sent} tasks; states right now:")
        for label, result in results.items():
            self.stdout.write(f"  {label:42} {result.state}")
        self.stdout.write("waiting for the worker...")
        for label, result in results.items():
            value = result.get(timeout=60, propagate=False)
            shown = f"{type(value).__name__}: {value}" if isinstance(value, Exception) else value
            self.stdout.write(f"  {label:42} {result.state:8} {shown!r}")
        self.stdout.write(f"  {'  its header: .parent.get()':42} {'':8} "
                          f"{order.parent.get(timeout=60)!r}")
        total = sum(r.get(timeout=60) for r in bulk)
        self.stdout.write(f"  {'add.delay_many(100 pairs)':42} SUCCESS  sum={total}")
        unknown = AsyncResult("no-such-task-id")
        self.stdout.write(f"  {'AsyncResult(unknown id)':42} {unknown.state:8} "
                          f"known={unknown.known}")
        self.show_periodic_tasks()
        self.show_security()
        self.stdout.write(f"done in {time.monotonic() - started:.1f}s")

    def show_periodic_tasks(self, runs=2, timeout=30):
        """Beat runs inside the worker (taskworker --beat): wait for stock-check to run twice."""
        self.stdout.write("periodic tasks (beat runs inside the worker: taskworker --beat):")
        deadline = time.monotonic() + timeout
        stock = PeriodicTask.objects.filter(name="stock-check")
        while time.monotonic() < deadline and not stock.filter(total_run_count__gte=runs).exists():
            time.sleep(0.2)
        for row in PeriodicTask.objects.exclude(source=PeriodicTask.SETTINGS,
                                                name__startswith="taskq."):
            line = f"  {row.name:15} {str(row.schedule_row()):48}"
            if row.last_task_id:
                result = AsyncResult(row.last_task_id)
                value = result.get(timeout=10, propagate=False)
                line += f" runs {row.total_run_count}, last {result.state} {value!r}"
            else:
                line += f" next run {row.next_run_at:%Y-%m-%d %H:%M} UTC"
            self.stdout.write(line)

    def show_security(self, timeout=30):
        """A sensitive task's stored arguments, and a message nobody signed (TASKQ["SIGNING_KEYS"])."""
        self.stdout.write("security (docs/security.md):")
        card = save_card.delay("4242 4242 4242 4242")
        value = card.get(timeout=timeout)
        stored = TaskResult.objects.get(task_id=card.id).task_args
        self.stdout.write(f"  {'save_card.delay(card)  (sensitive=True)':42} {card.state:8} "
                          f"{value!r}, stored args {stored!r}")
        # What an intruder with write access to the broker would send: a real task, unsigned.
        forged = build_envelope("shop.tasks.refund", (1,), {}, f"forged-{uuid.uuid4()}",
                                SendOptions(queue="default"))
        broker = get_broker()
        broker.enqueue(forged)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            letters = [d for d in broker.dead_letter_list(1000) if d.envelope.message_id ==
                       forged.message_id]
            if letters:
                self.stdout.write(f"  {'an unsigned refund put on the broker':42} dead letter: "
                                  f"{letters[0].reason}")
                return
            time.sleep(0.2)
        self.stdout.write("  the unsigned message was not dead-lettered in time")
