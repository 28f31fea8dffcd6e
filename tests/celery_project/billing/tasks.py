"""Billing jobs, on the "billing" queue (CELERY_TASK_ROUTES)."""

from celery import Task

from proj.celery import app


@app.task(name="billing.charge", bind=True)
def charge(self, order_id, amount):
    return {"order": order_id, "amount": amount,
            "queue": self.request.delivery_info.get("routing_key"),
            "parent_id": self.request.parent_id}


class Refund(Task):
    """A class-based task, registered with the app as Celery 4+ wants it."""

    name = "billing.refund"

    def run(self, order_id, amount):
        return {"order": order_id, "refunded": amount}


refund = app.register_task(Refund())
