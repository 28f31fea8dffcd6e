"""Housekeeping jobs; not an app's tasks.py, so listed in CELERY_IMPORTS."""

from celery import shared_task

from shop.models import Order


@shared_task
def purge_abandoned_carts():
    deleted, _ = Order.objects.filter(status="cart").delete()
    return deleted
