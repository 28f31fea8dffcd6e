"""Canvas groups and GroupResult: one bulk send of every member (group headers, partial args,
options, skew), results in member order on every broker with real in-process workers, the
GroupResult API, revoking a group, saved groups on every result backend (Celery's Redis layout
both ways), and a group followed by a step made a chord (test_canvas_chords.py runs them)."""

from __future__ import annotations

import json
import time
from datetime import datetime

import pytest
from django.db import transaction

import django_taskq
from django_taskq import AsyncResult, GroupResult, chain, group, maybe_signature, states
from django_taskq.brokers import get_broker
from django_taskq.results import get_backend
from tests.celery_peer import make_app
from tests.helpers import drain
from tests.testapp import canvas_tasks as ct

memory_only = pytest.mark.parametrize("broker_kind", ["memory"])
database_brokers = pytest.mark.parametrize("broker_kind", ["sqlite", "postgres", "mariadb"])
saving_backends = pytest.mark.parametrize("broker_kind",
                                          ["memory", "sqlite", "postgres", "mariadb", "redis"])


# -- on every broker, with a real worker ------------------------------------------------------

def test_results_come_back_in_member_order_from_one_send(make_worker, sends):
    members = (ct.in_group.s() if i == 2 else ct.add.s(i, i) for i in range(5))  # a generator
    result = group(members).apply_async()
    [envelopes] = sends
    assert [e.headers["group"] for e in envelopes] == [result.id] * 5
    assert [e.headers["group_index"] for e in envelopes] == [0, 1, 2, 3, 4]
    assert [e.message_id for e in envelopes] == [r.id for r in result.results]
    drain(make_worker(), result)
    assert result.get(timeout=5) == [0, 2, {"group": result.id, "index": 2}, 6, 8]


def test_partial_args_chains_and_nested_groups(make_worker):
    sig = group(ct.mul.s(2), ct.add.si(1, 1), ct.add.s(5) | ct.mul.s(10),
                group(ct.mul.s(3), ct.mul.s(4)), queue="default")
    result = sig.delay(10)
    assert len(result) == 5  # the nested group's members are the group's own
    drain(make_worker(), result)
    assert result.get(timeout=5) == [20, 2, 150, 30, 40]
    assert result[2].parent is not None and result[2].parent.get(timeout=5) == 15


def test_skew_staggers_the_countdowns(make_worker, sends):
    sig = group(ct.add.s(i, 0) for i in range(4)).skew(start=0, stop=0.2, step=0.1)
    assert [task.options["countdown"] for task in sig] == pytest.approx([0, 0.1, 0.2, 0.2])
    result = sig.apply_async()
    etas = [datetime.fromisoformat(e.headers["eta"]) for e in sends[0]]
    gaps = [(later - etas[0]).total_seconds() for later in etas[1:]]
    assert gaps == pytest.approx([0.1, 0.2, 0.2], abs=0.05)
    drain(make_worker(), result)
    assert result.get(timeout=5) == [0, 1, 2, 3]


def test_group_result_states_and_a_failing_member(make_worker):
    result = group(ct.add.s(1, 1), ct.boom.s(7), ct.add.s(2, 2)).delay()
    assert (result.ready(), result.waiting(), result.completed_count()) == (False, True, 0)
    drain(make_worker(), result)
    assert (result.ready(), result.waiting(), result.successful(), result.failed()) == \
        (True, False, False, True)
    assert result.completed_count() == 2
    with pytest.raises(ValueError, match="boom with"):
        result.get(timeout=5)
    first, error, last = result.get(timeout=5, propagate=False)
    assert (first, last) == (2, 4) and isinstance(error, ValueError)
    assert result.join(timeout=5, propagate=False)[0] == 2
    seen = []
    assert result.join(timeout=5, propagate=False, callback=lambda i, v: seen.append(i)) == []
    assert seen == [r.id for r in result]
    assert result.children == result.results and result[1].state == states.FAILURE


def test_revoking_a_group_before_it_runs(make_worker):
    result = group(ct.add.s(1, 1), ct.add.s(2, 2)).delay()
    result.revoke()
    drain(make_worker(), result)
    assert [r.state for r in result] == [states.REVOKED, states.REVOKED]
    assert result.get(timeout=5, propagate=False)[0].__class__.__name__ == "TaskRevokedError"


# -- one send: nothing is enqueued unless everything is ----------------------------------------

@database_brokers
def test_a_rolled_back_transaction_enqueues_no_member(configured, sends):
    alias = configured.removeprefix("db://")
    with pytest.raises(RuntimeError), transaction.atomic(using=alias):
        result = group(ct.add.s(1, 1), ct.add.s(2, 2), ct.add.s(3, 3)).delay()
        assert get_broker().size("default") == 3
        raise RuntimeError("roll back")
    assert len(sends) == 1 and get_broker().size("default") == 0
    assert not any(r.exists() for r in result)


@memory_only
def test_a_member_that_does_not_fit_sends_nothing(configured):
    with pytest.raises(TypeError, match="canvas.mul"):
        group(ct.add.s(1, 1), ct.mul.s(1, 2, 3)).delay()
    assert get_broker().size("default") == 0


# -- saved groups, on every result backend --------------------------------------------------------

@saving_backends
def test_save_restore_delete(configured):
    saved = GroupResult("g-1", [AsyncResult("t-1"), AsyncResult("t-2")]).save()
    restored = GroupResult.restore("g-1")
    assert restored == saved and [r.id for r in restored] == ["t-1", "t-2"]
    GroupResult("g-1", [AsyncResult("t-3")]).save()
    assert [r.id for r in GroupResult.restore("g-1")] == ["t-3"]
    assert GroupResult.restore("unknown") is None
    restored.delete()
    assert GroupResult.restore("g-1") is None
    assert get_backend().restore_group("g-1") is None


@pytest.mark.parametrize("broker_kind", ["redis"])
def test_celery_reads_our_saved_group_and_we_read_celerys(make_worker, configured):
    from celery.result import GroupResult as CeleryGroupResult

    app = make_app(configured, configured)
    try:
        ours = group(ct.add.s(1, 2), ct.add.s(3, 4)).delay()
        ours.save()
        theirs = CeleryGroupResult.restore(ours.id, app=app)
        assert [r.id for r in theirs.results] == [r.id for r in ours.results]
        drain(make_worker(), ours)
        assert theirs.get(timeout=5) == [3, 7]  # Celery reads the results we stored

        celery_saved = app.GroupResult("celery-g", [
            app.AsyncResult("c-1"), app.GroupResult("inner", [app.AsyncResult("c-2")])])
        celery_saved.save()
        assert [r.id for r in GroupResult.restore("celery-g")] == ["c-1", "c-2"]
    finally:
        app.close()


# -- eager runs ---------------------------------------------------------------------------------

@memory_only
def test_apply_and_always_eager_return_eager_group_results(configured, settings):
    result = group(ct.add.s(1), ct.mul.s(3)).apply((2,))
    assert result.get() == [3, 6] and all(r.ready() for r in result)
    settings.TASKQ = {**settings.TASKQ, "TASK_ALWAYS_EAGER": True}
    assert group(ct.add.s(1, 1), ct.add.s(2, 2)).delay().get() == [2, 4]
    assert get_broker().size("default") == 0


# -- building -------------------------------------------------------------------------------------

@memory_only
def test_freeze_fixes_the_ids_a_send_uses(configured):
    sig = group(ct.add.s(1, 1), ct.add.s(2, 2))
    frozen = sig.freeze()
    assert [task.options["group_id"] for task in sig] == [frozen.id] * 2
    assert [task.options["group_index"] for task in sig] == [0, 1]
    sent = sig.apply_async()
    assert sent == frozen and sent.results == frozen.results
    other = group(ct.add.s(1, 1)).apply_async(task_id="my-group")
    assert other.id == "my-group" and other.results[0].id != "my-group"
    assert group(ct.add.s(1, 1)).apply_async().id != group(ct.add.s(1, 1)).apply_async().id


@memory_only
def test_options_reach_members_that_set_none(configured, sends):
    sig = group(ct.add.s(1, 1), ct.add.s(2, 2).set(priority=9), priority=3)
    sig.apply_async(headers={"x": "y"})
    assert [e.priority for e in sends[0]] == [3, 9]
    assert all(e.headers["x"] == "y" for e in sends[0])


def test_a_group_is_a_signature_celery_rebuilds():
    celery_app = make_app("memory://", "cache+memory://")
    from celery import group as celery_group

    theirs = celery_group(celery_app.signature("canvas.add", (1, 2)),
                          celery_app.signature("canvas.mul", (3,)))
    ours = group(ct.add.s(1, 2), ct.mul.s(3))
    assert json.loads(json.dumps(theirs)) == json.loads(json.dumps(ours))
    rebuilt = maybe_signature(json.loads(json.dumps(theirs)))
    assert isinstance(rebuilt, group) and [t.task for t in rebuilt] == ["canvas.add", "canvas.mul"]
    assert len(rebuilt) == 2 and rebuilt.clone() == ours
    assert group([ct.add.s(1, 2)]) == group(ct.add.s(1, 2)) == group(group(ct.add.s(1, 2)))


def test_link_and_link_error_follow_celery():
    sig = group(ct.add.s(1, 1), ct.add.s(2, 2))
    sig.link(ct.mul.s(2))
    assert sig.tasks[0].options["link"] == [ct.mul.si(2)] and "link" not in sig.tasks[1].options
    sig.link_error(ct.failed_id.s())
    assert all(task.options["link_error"] == [ct.failed_id.s()] for task in sig)
    with pytest.raises(TypeError, match="chord"):
        sig.apply_async(link=ct.mul.s(2))


def test_a_group_followed_by_a_step_is_a_chord():
    from django_taskq import chord

    sig = group(ct.add.s(1, 1), ct.add.s(2, 2))
    made = sig | ct.mul.s(2)
    assert isinstance(made, chord) and made.body == ct.mul.s(2) and made.tasks == sig.tasks
    ended = ct.mul.s(2) | sig  # not a chord: a chain that ends in the group (as in Celery)
    assert isinstance(ended, chain) and ended.tasks[-1] == sig
    in_chain = chain(ct.add.s(1, 2), sig, ct.add.s(3))
    assert [type(step).__name__ for step in in_chain.tasks] == ["Signature", "chord"]
    assert (sig | group()) is sig


def test_exports():
    from django_taskq.result import GroupResult as FromResult

    assert django_taskq.group is group and FromResult is GroupResult


def test_a_group_may_end_a_chain(make_worker):
    result = (ct.add.s(1, 2) | group(ct.mul.s(2), ct.mul.s(3))).delay()
    worker = make_worker()
    deadline = time.monotonic() + 15
    while not (isinstance(result, GroupResult) and result.ready()) and time.monotonic() < deadline:
        worker.step()
    assert isinstance(result, GroupResult)
    assert result.get(timeout=5) == [6, 9]


@pytest.mark.parametrize("broker_kind", ["memory"])
def test_a_chain_that_ends_in_a_group_runs_eagerly(configured):
    result = (ct.add.s(1, 2) | group(ct.mul.s(2), ct.mul.s(3))).apply()
    assert isinstance(result, GroupResult)
    assert result.get() == [6, 9] and result.parent.get() == 3


def test_map_starmap_and_chunks(make_worker):
    mapped = ct.ids.map([1, 2])
    starred = ct.add.starmap([(1, 2), (3, 4)])
    parts = ct.add.chunks([(1, 1), (2, 2), (3, 3)], 2)
    sent = [mapped.delay(), starred.delay()]
    group_result = parts.apply_async()
    worker = make_worker()
    deadline = time.monotonic() + 15
    while not (all(r.ready() for r in sent) and group_result.ready()) \
            and time.monotonic() < deadline:
        worker.step()
    assert len(sent[0].get(timeout=5)) == 2
    assert sent[1].get(timeout=5) == [3, 7]
    assert group_result.get(timeout=5) == [[2, 4], [6]]
    assert repr(starred).startswith("[canvas.add(*x) for x in")
