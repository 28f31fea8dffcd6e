"""Chords on every broker with real in-process workers: the body gets the header's results in
header order, once; ``group | task`` and a group followed by steps in a chain make chords;
nesting (a chord in a chain, a chain as the body, a group in the header, a chain of groups); a
failing header task fails the body with a ChordError naming it and calls its errbacks; an empty
header; the database broker's transaction."""

from __future__ import annotations

import json

import pytest
from django.db import transaction

from django_taskq import AsyncResult, ChordError, GroupResult, chord, group, states
from django_taskq.brokers import get_broker
from django_taskq.outcome import Outcome
from django_taskq.results import get_backend
from tests.helpers import drain
from tests.testapp import canvas_tasks as ct

database_brokers = pytest.mark.parametrize("broker_kind", ["sqlite", "postgres", "mariadb"])


def test_the_body_gets_the_header_results_in_header_order(make_worker, sends):
    header = [ct.slow_index.s(i, delay=0.01 * (3 - i)) for i in range(4)]
    result = chord(header)(ct.listed.s("end"))
    [envelopes] = sends  # the header in one send; the body is sent by the worker
    group_id = envelopes[0].headers["group"]
    assert [e.headers["group_index"] for e in envelopes] == [0, 1, 2, 3]
    assert {e.headers["group"] for e in envelopes} == {group_id}
    assert isinstance(result.parent, GroupResult) and result.parent.id == group_id
    assert [r.id for r in result.parent.results] == [e.message_id for e in envelopes]
    drain(make_worker(), result)
    assert result.get(timeout=5) == [[0, 1, 2, 3], "end"]
    assert result.parent.get(timeout=5) == [0, 1, 2, 3]


def test_group_pipe_task_is_a_chord_and_options_reach_every_task(make_worker, sends):
    sig = group(ct.add.s(i, i) for i in range(5)) | ct.tsum.s()
    assert isinstance(sig, chord)
    result = sig.apply_async(priority=3)
    assert {e.priority for e in sends[0]} == {3}
    drain(make_worker(), result)
    assert result.get(timeout=5) == 20
    assert result.parent.completed_count() == 5


def test_chord_header_body_forms_and_partial_args(make_worker):
    first = chord([ct.add.s(1), ct.add.s(2)], ct.tsum.s()).delay(10)  # args go to the header
    second = chord((ct.mul.s(i, 2) for i in range(3)), ct.tsum.s())()
    worker = make_worker()
    drain(worker, first)
    drain(worker, second)
    assert (first.get(timeout=5), second.get(timeout=5)) == (23, 6)


def test_nested_chord_in_chain_body_chain_and_group_in_header(make_worker):
    in_chain = (ct.add.s(1, 1) | group(ct.mul.s(2), ct.mul.s(3)) | ct.tsum.s() | ct.mul.s(10))
    body_chain = chord([ct.add.s(1, 1), ct.add.s(2, 2)], ct.tsum.s() | ct.mul.s(100))
    grouped = chord([group(ct.add.s(1, 1), ct.add.s(2, 2)), ct.add.s(3, 3)], ct.listed.s())
    worker = make_worker()
    results = [in_chain.delay(), body_chain.delay(), grouped.delay()]
    for result in results:
        drain(worker, result)
    assert [r.get(timeout=5) for r in results] == [100, 600, [[2, 4, 6]]]


def test_a_chain_of_groups_gives_each_member_the_list(make_worker):
    result = (group(ct.add.s(1, 1), ct.add.s(2, 2)) | group(ct.tsum.s(), ct.listed.s())).delay()
    assert isinstance(result, GroupResult)
    drain(make_worker(), result)
    assert result.get(timeout=5) == [6, [[2, 4]]]


def test_a_failing_header_task_fails_the_body_naming_it(make_worker):
    ct.ERRBACKS_SEEN.clear()
    body = ct.tsum.s().on_error(ct.on_error.s())
    result = chord([ct.add.s(1, 1), ct.boom.s(7), ct.add.s(2, 2)], body).delay()
    worker = make_worker()
    drain(worker, result)
    failed_id = result.parent.results[1].id
    with pytest.raises(ChordError, match=f"Dependency {failed_id} raised ValueError"):
        result.get(timeout=5, follow_parents=False)
    with pytest.raises(ValueError, match="boom"):  # as Celery's get(), the header's error first
        result.get(timeout=5)
    assert result.state == states.FAILURE
    assert [seen[0] for seen in ct.ERRBACKS_SEEN] == [result.id]
    assert result.parent.results[0].get(timeout=5) == 2  # the others ran


def test_an_empty_header_calls_the_body_with_an_empty_list(make_worker):
    result = chord([], ct.listed.s()).delay()
    drain(make_worker(), result)
    assert result.get(timeout=5) == [[]]


def test_a_body_without_a_task_is_a_clear_error():
    with pytest.raises(TypeError, match=r"chord\(header, body\)"):
        chord([ct.add.s(1, 1)]).delay()


@database_brokers
def test_a_chord_joins_the_callers_transaction(make_worker, configured):
    alias = configured.removeprefix("db://")
    with pytest.raises(RuntimeError), transaction.atomic(using=alias):
        rolled_back = chord([ct.add.s(1, 1), ct.add.s(2, 2)], ct.tsum.s()).delay()
        assert get_broker().size("default") == 2
        raise RuntimeError("roll back")
    assert get_broker().size("default") == 0
    assert get_backend().add_chord_part(rolled_back.parent.id, 0, _outcome("x", 1)) is None
    result = chord([ct.add.s(1, 1)], ct.tsum.s()).delay()
    drain(make_worker(), result)
    assert result.get(timeout=5) == 2


def test_the_body_is_sent_once_when_a_header_result_is_stored_twice(make_worker):
    """A redelivered header task (its worker died after counting) is not counted again."""
    result = chord([ct.add.s(1, 1), ct.add.s(2, 2)], ct.tsum.s()).delay()
    drain(make_worker(), result)
    backend = get_backend()
    done = result.parent.results[0]
    outcome_again = _outcome(done.id, 2)
    assert backend.add_chord_part(result.parent.id, 0, outcome_again) is None


def _outcome(task_id, value):
    return Outcome(task_id, "canvas.add", states.SUCCESS, payload=json.dumps(value).encode())


def test_a_chord_as_a_group_member_and_the_headers_place_in_a_chains_parents(make_worker):
    grouped = group(ct.add.s(1, 1), chord([ct.add.s(2, 2), ct.add.s(3, 3)], ct.tsum.s())).delay()
    in_chain = (ct.add.s(1, 1) | group(ct.mul.s(2), ct.mul.s(3)) | ct.tsum.s()).delay()
    worker = make_worker()
    drain(worker, grouped)
    drain(worker, in_chain)
    assert grouped.get(timeout=5) == [2, 10]
    header = in_chain.parent
    assert isinstance(header, GroupResult) and header.get(timeout=5) == [4, 6]
    assert header.parent.get(timeout=5) == 2 and in_chain.get(timeout=5) == 10
    assert in_chain.as_list() == [in_chain.id, header.id, header.parent.id]


def test_chord_callbacks_and_errbacks_go_to_the_body(make_worker):
    ct.ERRBACKS_SEEN.clear()
    result = chord([ct.add.s(1, 1), ct.boom.s()], ct.tsum.s()).apply_async(
        link=ct.mul.s(10), link_error=ct.on_error.s())
    drain(make_worker(), result)
    assert [seen[0] for seen in ct.ERRBACKS_SEEN] == [result.id]  # once: for the chord
    ok = chord([ct.add.s(1, 1), ct.add.s(2, 2)], ct.tsum.s()).apply_async(
        link=ct.mul.s(10).set(task_id="after-body"))
    after = AsyncResult("after-body")
    drain(make_worker(), after)
    assert (ok.get(timeout=5), after.get(timeout=5)) == (6, 60)


# -- self.replace(sig) ------------------------------------------------------------------------

def test_replace_puts_a_workflow_in_the_tasks_place(make_worker):
    alone = ct.replaced_by_chain.delay(1)
    in_chain = (ct.replaced_by_chain.s(1) | ct.mul.s(2)).delay()
    in_header = chord([ct.replaced_by_chain.s(2), ct.add.s(1, 1)], ct.listed.s()).delay()
    by_group = ct.replaced_by_group.delay(3)
    linked = ct.replaced_by_chain.apply_async((1,), link=ct.mul.s(3).set(task_id="after-r"))
    worker = make_worker()
    for result in (alone, in_chain, in_header, by_group, AsyncResult("after-r")):
        drain(worker, result)
    assert alone.get(timeout=5) == 20 and in_chain.get(timeout=5) == 40
    assert in_header.get(timeout=5) == [[30, 2]]
    assert by_group.get(timeout=5) == [0, 2, 4]
    assert linked.get(timeout=5) == 20 and AsyncResult("after-r").get(timeout=5) == 60


def test_replace_runs_the_replacement_here_when_eager_and_refuses_outside_a_task(settings):
    assert ct.replaced_by_chain.apply((1,)).get() == 20
    with pytest.raises(Exception, match="inside the task"):
        ct.replaced_by_chain.replace(ct.add.s(1, 1))


# -- revoking ---------------------------------------------------------------------------------

def test_revoking_a_chain_step_stops_the_chain_and_its_later_steps_say_so(make_worker):
    from django_taskq.exceptions import TaskRevokedError

    last = (ct.add.s(1, 1) | ct.mul.s(2) | ct.mul.s(3)).delay()
    last.parent.parent.revoke()  # the first step: nothing of the chain has run
    worker = make_worker()
    drain(worker, last)
    assert [r.state for r in (last.parent.parent, last.parent, last)] == [states.REVOKED] * 3
    with pytest.raises(TaskRevokedError, match="revoked"):  # the first step's error, as Celery
        last.get(timeout=5, follow_parents=False)


def test_a_revoked_header_task_fails_the_chord_instead_of_leaving_it_waiting(make_worker):
    result = chord([ct.add.s(1, 1), ct.add.s(2, 2)], ct.tsum.s()).delay()
    result.parent.results[1].revoke()
    drain(make_worker(), result)
    with pytest.raises(ChordError, match="TaskRevokedError"):
        result.get(timeout=5, follow_parents=False)


def test_a_group_after_a_failed_step_raises_that_error_instead_of_waiting(make_worker):
    result = (ct.boom.s() | group(ct.mul.s(2), ct.mul.s(3))).delay()
    drain(make_worker(), result.parent)
    with pytest.raises(ValueError, match="boom"):
        result.get(timeout=10)  # its members will never be sent


# -- nothing waits for ever: failures inside nested workflows --------------------------------

def test_a_failed_early_step_of_a_chain_in_a_header_fails_the_chord(make_worker):
    result = chord([ct.boom.s() | ct.mul.s(2), ct.add.s(3, 3)], ct.tsum.s()).delay()
    drain(make_worker(), result)
    with pytest.raises(ChordError, match="Dependency .* raised ValueError"):
        result.get(timeout=5, follow_parents=False)


def test_a_failed_inner_chord_fails_the_outer_chord_and_the_bodys_chain(make_worker):
    inner = chord([ct.boom.s(), ct.add.s(1, 1)], ct.tsum.s())
    outer = chord([inner, ct.add.s(2, 2)], ct.listed.s()).delay()
    after = (chord([ct.boom.s()], ct.tsum.s()) | ct.mul.s(2)).delay()
    worker = make_worker()
    drain(worker, outer)
    drain(worker, after)
    with pytest.raises(ChordError, match="ChordError"):  # the inner chord's failure, named
        outer.get(timeout=5, follow_parents=False)
    with pytest.raises(ChordError):  # the step after the failed body: failed too
        after.get(timeout=5, follow_parents=False)


def test_partial_arguments_reach_a_chord_in_a_group(make_worker):
    result = group(ct.mul.s(2), chord([ct.add.s(1), ct.add.s(2)], ct.tsum.s())).delay(10)
    drain(make_worker(), result)
    assert result.get(timeout=5) == [20, 23]


def test_a_chord_body_chain_keeps_its_parent_links(make_worker):
    result = chord([ct.add.s(1, 1)], ct.tsum.s() | ct.mul.s(10)).delay()
    drain(make_worker(), result)
    assert result.get(timeout=5) == 20
    assert result.parent.get(timeout=5) == 2  # tsum, then the header
    assert isinstance(result.parent.parent, GroupResult)


def test_a_header_task_no_worker_knows_fails_the_chord(make_worker):
    from django_taskq import signature

    result = chord([ct.add.s(1, 1), signature("canvas.no_such_task")], ct.tsum.s()).delay()
    drain(make_worker(), result)
    unknown = result.parent.results[1].id
    with pytest.raises(ChordError, match=f"Dependency {unknown} raised"):
        result.get(timeout=5, follow_parents=False)


def test_a_chord_in_a_group_run_here_gets_the_partial_arguments():
    sig = group(ct.mul.s(2), chord([ct.add.s(1), ct.add.s(2)], ct.tsum.s()))
    assert sig.apply((10,)).get() == [20, 23]


def test_revoking_a_workflows_result_revokes_what_has_not_run(make_worker):
    chained = (ct.add.s(1, 1) | ct.mul.s(2) | ct.mul.s(3)).delay()
    chorded = chord([ct.add.s(1, 1), ct.add.s(2, 2)], ct.tsum.s()).delay()
    alone = AsyncResult(chained.id)  # from an id alone: that one task only
    chained.revoke()
    chorded.revoke()
    worker = make_worker()
    drain(worker, chained)
    drain(worker, chorded)
    assert [r.state for r in (chained.parent.parent, chained.parent, chained)] \
        == [states.REVOKED] * 3
    assert [r.state for r in chorded.parent.results] == [states.REVOKED] * 2
    with pytest.raises(ChordError, match="TaskRevokedError"):  # the body never ran
        chorded.get(timeout=5, follow_parents=False)
    from django_taskq.revoking import workflow_ids

    assert workflow_ids(alone) == [chained.id]
