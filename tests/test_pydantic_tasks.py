"""Celery's ``pydantic=True`` tasks, in a worker and eagerly."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from django_taskq import states
from django_taskq.options import TaskOptionError
from django_taskq.task import build_task
from tests.testapp import pydantic_tasks as pt


def drain(worker, result, rounds=50):
    for _ in range(rounds):
        worker.step()
        if result.ready():
            return


@pytest.mark.parametrize("broker_kind", ["memory", "sqlite"])
def test_a_worker_validates_model_arguments_and_dumps_the_returned_model(make_worker):
    result = pt.charge_order.delay({"id": 7, "total": "12.5"})
    drain(make_worker(), result)
    assert result.get(timeout=5) == {"order_id": 7, "charged": 12.5}


def test_an_invalid_argument_fails_the_task_with_the_validation_error(make_worker):
    result = pt.charge_order.delay({"id": "not a number", "total": 1})
    drain(make_worker(), result)
    assert result.state == states.FAILURE
    assert "validation error" in str(result.result).lower()


def test_eager_runs_validate_too_with_strict_and_dump_options():
    assert pt.charge_strictly.apply(({"id": 3, "total": 2.0},)).get() == {"order_id": 3}
    assert pt.charge_strictly.apply((None,)).get() is None  # Optional: None passes through
    with pytest.raises(ValidationError):
        pt.charge_strictly.apply(({"id": "3", "total": 2.0},), throw=True)  # strict: no coercion


def test_pydantic_without_the_package_is_a_clear_error(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pydantic(name, *args, **kwargs):
        if name == "pydantic":
            raise ImportError("No module named 'pydantic'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pydantic)

    def plain(x):
        return x

    with pytest.raises(TaskOptionError, match=r"pydantic=True needs pydantic 2: pip install"):
        build_task(plain, pydantic=True)
