"""Example tasks: autodiscovered because this is the app's tasks.py."""

import time

from django.contrib.auth.models import User
from django.core.mail import send_mail

from django_taskq import task


@task
def add(x, y):
    return x + y


@task(bind=True, queue="default", priority=5)
def slow_square(self, n, seconds=0.5):
    time.sleep(seconds)
    return {"n": n, "square": n * n, "ran_as": self.request.id}


@task
def welcome(user_id):
    user = User.objects.get(pk=user_id)
    send_mail("Welcome", f"Hello {user.username}!", "shop@example.com", [user.email])
    return f"sent to {user.email}"


@task
def refund(order_id):
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
