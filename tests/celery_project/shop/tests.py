"""The shop's task tests, run eagerly (CELERY_TASK_ALWAYS_EAGER): no broker, no worker."""

from celery import states
from celery.exceptions import Retry
from django.test import TestCase, override_settings, tag

from billing.tasks import charge, refund
from proj.celery import ping
from shop import audit
from shop.maintenance import purge_abandoned_carts
from shop.models import Order
from shop.tasks import (
    OutOfStock,
    add,
    build_report,
    fetch_rates,
    notify_customer,
    reserve_stock,
    whoami,
)


@override_settings(CELERY_TASK_ALWAYS_EAGER=True, CELERY_TASK_EAGER_PROPAGATES=True)
class EagerTaskTests(TestCase):
    def setUp(self):
        audit.events.clear()

    def events(self, *names):
        return [e for e in audit.events if e["event"] in names]

    def test_delay_returns_the_value(self):
        result = add.delay(2, 3)
        self.assertEqual(result.get(), 5)
        self.assertEqual(result.state, states.SUCCESS)
        self.assertIn(result.state, states.READY_STATES)

    def test_apply_runs_the_task_here(self):
        result = add.apply((1, 2))
        self.assertTrue(result.successful())
        self.assertEqual(result.get(), 3)

    def test_arguments_are_checked_when_sent(self):
        with self.assertRaises(TypeError):
            add.delay(1)

    def test_a_task_writes_to_the_database(self):
        value = reserve_stock.delay("lamp", 2).get()
        order = Order.objects.get(pk=value["order"])
        self.assertEqual((order.sku, order.quantity, order.status), ("lamp", 2, "reserved"))
        self.assertEqual(value["category"], "orders")  # an option of our own on the task
        self.assertIsNone(value["tenant"])  # an eager run is not published: no header added

    def test_the_base_class_handlers_and_signals_run_in_order(self):
        result = reserve_stock.apply(("lamp", 1))
        self.assertEqual([e["event"] for e in audit.events], [
            "task_prerun", "before_start", "__call__", "on_success", "after_return",
            "task_postrun"])
        self.assertEqual({e["task"] for e in audit.events}, {"shop.tasks.reserve_stock"})
        self.assertEqual({e["task_id"] for e in audit.events if "task_id" in e}, {result.id})
        self.assertEqual(self.events("after_return")[0]["status"], states.SUCCESS)
        self.assertEqual(self.events("task_postrun")[0]["state"], states.SUCCESS)

    def test_an_expected_failure_propagates(self):
        with self.assertRaises(OutOfStock):
            reserve_stock.delay("sold-out", 1)

    @override_settings(CELERY_TASK_EAGER_PROPAGATES=False)
    def test_a_failure_is_kept_in_the_result_without_propagation(self):
        result = reserve_stock.delay("sold-out", 1)
        self.assertTrue(result.failed())
        self.assertEqual(result.state, states.FAILURE)
        self.assertIsInstance(result.result, OutOfStock)
        with self.assertRaises(OutOfStock):
            result.get()
        self.assertIsInstance(result.get(propagate=False), OutOfStock)
        self.assertIn("OutOfStock", result.traceback)
        (failure,) = self.events("task_failure")
        self.assertEqual((failure["exception"], failure["message"]),
                         ("OutOfStock", "sold-out: nothing left"))
        (handler,) = self.events("on_failure")
        self.assertTrue(handler["traceback"])
        self.assertEqual(self.events("after_return")[0]["status"], states.FAILURE)

    @override_settings(CELERY_TASK_EAGER_PROPAGATES=False)
    def test_a_retry_runs_again_at_once(self):
        result = reserve_stock.delay("flaky-lamp", 1)
        self.assertEqual(result.get()["retries"], 1)
        self.assertEqual([e["event"] for e in self.events("on_retry", "task_retry",
                                                          "on_success")],
                         ["on_retry", "task_retry", "on_success"])
        self.assertEqual(self.events("on_retry")[0]["exc"], "ConnectionError")

    @override_settings(CELERY_TASK_EAGER_PROPAGATES=False)
    def test_autoretry_for_retries_with_backoff(self):
        self.assertEqual(fetch_rates.delay("EUR").get(),
                         {"currency": "EUR", "rate": "1.08", "retries": 1})

    @override_settings(CELERY_TASK_EAGER_PROPAGATES=False)
    def test_max_retries_exceeded_is_caught_by_the_task(self):
        with self.assertLogs("shop.tasks", "WARNING") as logs:
            self.assertEqual(notify_customer.delay("ada@example.com").get(), "gave up")
        self.assertIn("giving up on ada@example.com after 1 retries", logs.output[0])

    def test_current_task_is_the_running_one(self):
        result = whoami.delay()
        self.assertEqual(result.get()["id"], result.id)
        self.assertEqual(result.get()["name"], "shop.tasks.whoami")

    def test_task_logger_lines(self):
        with self.assertLogs("shop.tasks", "INFO") as logs:
            reserve_stock.delay("lamp", 3)
        self.assertIn("reserving 3 x lamp (try 1)", logs.output[0])

    def test_time_limits_do_not_apply_to_eager_runs(self):
        self.assertEqual(build_report.delay(0.1).get(), "complete")

    def test_tasks_from_other_modules(self):
        Order.objects.create(sku="old", quantity=1)
        self.assertEqual(purge_abandoned_carts.delay().get(), 1)
        self.assertEqual(ping.delay().get(), "pong")
        self.assertEqual(charge.delay(1, "2.50").get()["amount"], "2.50")
        self.assertEqual(refund.delay(1, "2.50").get(), {"order": 1, "refunded": "2.50"})


@tag("celery-eager-retry")
@override_settings(CELERY_TASK_ALWAYS_EAGER=True, CELERY_TASK_EAGER_PROPAGATES=True)
class EagerRetryPropagationTests(TestCase):
    def test_a_retry_propagates_as_retry(self):
        # Celery: with eager propagation a self.retry() reaches the caller as Retry.
        with self.assertRaises(Retry):
            reserve_stock.delay("flaky-lamp", 1)
