"""Review of issue 14's async tasks: user paths checked against the real code."""

from __future__ import annotations

import asyncio

import pytest

from tests.testapp import async_tasks as at

pytestmark = pytest.mark.django_db


def test_apply_of_an_async_task_inside_a_running_event_loop_does_not_deadlock():
    async def view() -> object:  # e.g. an async Django view calling apply()
        return at.add.apply((2, 3)).get(timeout=5)

    assert asyncio.run(view()) == 5


def test_eager_delay_of_an_async_task_inside_a_running_event_loop(settings):
    settings.TASKQ = {**settings.TASKQ, "TASK_ALWAYS_EAGER": True}

    async def view() -> object:
        return at.add.delay(4, 5).get(timeout=5)

    assert asyncio.run(view()) == 9
