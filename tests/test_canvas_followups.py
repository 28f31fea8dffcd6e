"""What a worker sends after a task, on every broker: callbacks (link), the next chain step
(the body's ``chain``, stored reversed), errbacks (link_error) inline or as tasks.

Signatures are written here as the plain dicts a message carries (Celery's wire form), so these
tests hold whatever builds them (canvas's ``Signature``, or a Celery client).
"""

from __future__ import annotations

import time

import pytest

from django_taskq import AsyncResult, states
from django_taskq.brokers import get_broker
from tests.testapp import canvas_tasks as ct


def sig(name, *args, immutable=False, **options):
    return {"task": name, "args": list(args), "kwargs": {}, "options": options,
            "subtask_type": None, "immutable": immutable}


def drain(worker, *results, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not all(r.ready() for r in results) and time.monotonic() < deadline:
        worker.step()
    return results


def test_a_link_gets_the_result_prepended(make_worker):
    first = ct.add.apply_async((2, 3), link=[sig("canvas.mul", 10, task_id="cb-1"),
                                             sig("canvas.add", 1, 1, task_id="cb-2",
                                                 immutable=True)])
    callback, immutable = AsyncResult("cb-1"), AsyncResult("cb-2")
    drain(make_worker(), first, callback, immutable)
    assert (first.get(timeout=5), callback.get(timeout=5), immutable.get(timeout=5)) == (5, 50, 2)


def test_a_chain_runs_step_by_step_with_parent_and_root_ids(make_worker):
    steps = [sig("canvas.ids", task_id="step-4", immutable=True),
             sig("canvas.add", 100, task_id="step-3"), sig("canvas.mul", 2, task_id="step-2")]
    first = ct.add.apply_async((1, 2), chain=steps)  # reversed: mul(…, 2) runs next, then add
    second, third, fourth = AsyncResult("step-2"), AsyncResult("step-3"), AsyncResult("step-4")
    drain(make_worker(), first, second, third, fourth)
    assert (second.get(timeout=5), third.get(timeout=5)) == (6, 106)
    assert fourth.get(timeout=5) == {"parent": "step-3", "root": first.id}


def test_a_failing_step_stops_the_chain_and_calls_its_errbacks(make_worker):
    ct.ERRBACKS_SEEN.clear()
    first = ct.boom.apply_async((1,), chain=[sig("canvas.add", 1, task_id="never")],
                                link_error=[sig("canvas.on_error"),
                                            sig("canvas.failed_id", task_id="old-style")])
    old_style = AsyncResult("old-style")
    worker = make_worker()
    drain(worker, first, old_style)
    for _ in range(5):
        worker.step()
    assert first.state == states.FAILURE
    # Never sent; its result says why (Celery's _fail_chain), so nobody waits on it.
    assert AsyncResult("never").state == states.FAILURE
    with pytest.raises(ValueError, match="boom"):
        AsyncResult("never").get(timeout=1)
    assert get_broker().size("default") == 0  # nothing else was sent
    assert ct.ERRBACKS_SEEN == [(first.id, "boom with (1,)")]  # inline, in the worker
    assert old_style.get(timeout=5) == f"failed: {first.id}"


def test_a_next_step_that_cannot_be_sent_fails_the_task(make_worker):
    first = ct.add.apply_async((1, 2), chain=[sig("canvas.mul", 1, 2, 3)])  # too many args
    drain(make_worker(), first)
    assert first.state == states.FAILURE
    with pytest.raises(TypeError, match="canvas.mul"):
        first.get(timeout=5)


@pytest.mark.parametrize("broker_kind", ["memory"])
def test_always_eager_runs_the_follow_ups_here(make_worker, settings):
    settings.TASKQ = {**settings.TASKQ, "TASK_ALWAYS_EAGER": True, "TASK_STORE_EAGER_RESULT": True}
    result = ct.add.apply_async((2, 3), link=sig("canvas.mul", 10, task_id="eager-cb"),
                                chain=[sig("canvas.add", 1, task_id="eager-step")])
    assert result.get() == 5
    assert AsyncResult("eager-cb").get(timeout=1) == 50
    assert AsyncResult("eager-step").get(timeout=1) == 6


def group_sig(*members, group_id):
    return {"task": "celery.group", "args": [], "kwargs": {"tasks": list(members)},
            "options": {"task_id": group_id}, "subtask_type": "group", "immutable": False}


def test_a_group_callback_sends_its_members_with_the_result(make_worker):
    first = ct.add.apply_async((2, 3), link=group_sig(
        sig("canvas.mul", 2, task_id="g-0"), sig("canvas.mul", 3, task_id="g-1"),
        group_id="g"))
    members = [AsyncResult("g-0"), AsyncResult("g-1")]
    drain(make_worker(), first, *members)
    assert [member.get(timeout=5) for member in members] == [10, 15]


@pytest.mark.parametrize("broker_kind", ["memory"])
def test_a_group_followed_by_a_step_in_a_chain_embed_is_a_chord(make_worker):
    """A Celery client's chain may hold a group then a step: the step waits for the group."""
    first = ct.add.apply_async((1, 2), chain=[
        sig("canvas.tsum", task_id="body-1"),
        group_sig(sig("canvas.mul", 2), sig("canvas.mul", 3), group_id="g")])
    body = AsyncResult("body-1")
    drain(make_worker(), first, body)
    assert (first.get(timeout=5), body.get(timeout=5)) == (3, 15)
