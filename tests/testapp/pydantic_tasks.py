"""Tasks with Celery's ``pydantic=True``: model arguments validated, returned models dumped."""

from __future__ import annotations

from pydantic import BaseModel

from django_taskq import shared_task


class Order(BaseModel):
    id: int
    total: float


class Receipt(BaseModel):
    order_id: int
    charged: float


@shared_task(pydantic=True)
def charge_order(order: Order, note: str | None = None) -> Receipt:
    assert isinstance(order, Order)  # the worker gave the task the model, not the dict
    return Receipt(order_id=order.id, charged=order.total)


@shared_task(bind=True, pydantic=True, pydantic_strict=True,
             pydantic_dump_kwargs={"exclude": {"charged"}})
def charge_strictly(self, order: Order | None) -> Receipt | None:
    return None if order is None else Receipt(order_id=order.id, charged=order.total)
