"""AsyncResult's Celery surface: every ``get()`` argument, the refusal inside a task, the rest."""

from __future__ import annotations

import pickle
import threading

import pytest
from django.utils import timezone

from django_taskq import AsyncResult, states, task
from django_taskq.context import Request, activate
from django_taskq.exceptions import TimeoutError
from django_taskq.outcome import Outcome, failure
from django_taskq.result import E_WOULDBLOCK, EagerResult, ResultMeta, allow_join_result
from django_taskq.results import base
from django_taskq.results.memory import MemoryResultBackend
from django_taskq.results.redis import RedisResultBackend
from django_taskq.service_url import parse
from tests.testapp import tasks

INSIDE = Request(id="x", task="t")


def outcome(task_id: str, state: str = states.SUCCESS, payload: bytes = b"42") -> Outcome:
    return Outcome(task_id=task_id, task_name="t", state=state, payload=payload,
                   date_done=timezone.now() if state in states.READY_STATES else None)


class FakeSleep:
    """Stands in for ``time.sleep`` in the polling wait: records pauses, runs ``steps`` in turn
    (one per pause), so a test moves a task along without sleeping."""

    def __init__(self, *steps):
        self.pauses, self.steps = [], list(steps)

    def __call__(self, seconds):
        self.pauses.append(seconds)
        if self.steps:
            self.steps.pop(0)()


@pytest.fixture
def memory():
    return MemoryResultBackend()


@pytest.fixture
def sleep(monkeypatch):
    def install(*steps):
        fake = FakeSleep(*steps)
        monkeypatch.setattr(base.time, "sleep", fake)
        return fake
    return install


# -- get() arguments, on a polling backend ------------------------------------------------------

def test_get_takes_celerys_arguments_positionally(memory):
    memory.store(outcome("p"))
    assert AsyncResult("p", backend=memory).get(1.0, True, 0.5, True, True, None, None, None,
                                                 True) == 42


def test_default_interval_polls_fast_first_then_backs_off_to_it(memory, sleep):
    memory.mark_pending([("slow", "t")])
    steps = [lambda: None] * 8 + [lambda: memory.store(outcome("slow"))]
    fake = sleep(*steps)
    assert AsyncResult("slow", backend=memory).get() == 42
    assert fake.pauses[0] == base.FIRST_POLL  # as fast as before Celery's 0.5 default
    assert max(fake.pauses) == 0.5 and fake.pauses == sorted(fake.pauses)


def test_interval_caps_the_pause_between_polls(memory, sleep):
    memory.mark_pending([("i", "t")])
    fake = sleep(*[lambda: None] * 6, lambda: memory.store(outcome("i")))
    AsyncResult("i", backend=memory).get(interval=0.08)
    assert fake.pauses[0] == base.FIRST_POLL and max(fake.pauses) == 0.08
    fake = sleep(lambda: None)
    memory.mark_pending([("j", "t")])
    with pytest.raises(TimeoutError):
        AsyncResult("j", backend=memory).get(timeout=0, interval=0.01)


def test_on_interval_is_called_after_each_poll_that_is_not_ready(memory, sleep):
    memory.mark_pending([("n", "t")])
    sleep(lambda: None, lambda: None, lambda: memory.store(outcome("n")))
    calls = []
    assert AsyncResult("n", backend=memory).get(on_interval=lambda: calls.append(1)) == 42
    assert len(calls) == 3


def test_on_message_sees_each_new_state_then_the_final_meta(memory, sleep):
    memory.mark_pending([("m", "t")])
    sleep(lambda: memory.store(outcome("m", states.STARTED, b'{"pid": 1}')),
          lambda: None,  # nothing new: no second STARTED message
          lambda: memory.store(outcome("m")))
    seen = []
    result = AsyncResult("m", backend=memory)
    assert result.get(on_message=seen.append) == 42
    assert [m["status"] for m in seen] == ["PENDING", "STARTED", "SUCCESS"]
    assert seen[-1]["task_id"] == "m" and seen[-1]["result"] == 42
    assert seen[-1]["date_done"]  # an ISO string, as in Celery's meta
    again = []
    result.get(on_message=again.append)  # from the cache: still told the final meta
    assert [m["status"] for m in again] == ["SUCCESS"]


def test_callback_gets_the_value_or_the_unpropagated_exception(memory):
    memory.store(outcome("ok"))
    memory.store(failure("bad", "t", KeyError("k")))
    calls = []
    assert AsyncResult("ok", backend=memory).get(callback=lambda *a: calls.append(a)) == 42
    with pytest.raises(KeyError):
        AsyncResult("bad", backend=memory).get(callback=lambda *a: calls.append(a))
    exc = AsyncResult("bad", backend=memory).get(propagate=False,
                                                 callback=lambda *a: calls.append(a))
    assert calls == [("ok", 42), ("bad", exc)] and isinstance(exc, KeyError)


def test_no_ack_and_follow_parents_are_accepted(memory):
    memory.store(outcome("a"))
    assert AsyncResult("a", backend=memory).get(no_ack=False, follow_parents=False) == 42


def test_exception_and_propagate_states_can_be_narrowed(memory):
    memory.store(failure("f", "t", ValueError("v")))
    result = AsyncResult("f", backend=memory)
    assert isinstance(result.get(PROPAGATE_STATES=frozenset()), ValueError)
    raw = result.get(propagate=False, EXCEPTION_STATES=frozenset())
    assert raw["exc_type"] == "ValueError"  # the stored mapping, nothing rebuilt


# -- get() arguments on Redis (pub/sub) ----------------------------------------------------------

def test_redis_on_message_and_on_interval(redis_url):
    backend = RedisResultBackend(parse(redis_url, setting="RESULT_BACKEND"))
    writer = RedisResultBackend(parse(redis_url, setting="RESULT_BACKEND"))
    backend.mark_pending([("r", "t")])
    first_read, started_seen = threading.Event(), threading.Event()
    seen, ticks = [], []

    def on_message(meta):
        seen.append(meta)
        first_read.set()

    def on_interval():
        ticks.append(1)
        started_seen.set()

    def work():
        first_read.wait(10)
        writer.store(outcome("r", states.STARTED, b'{"pid": 1}'))
        started_seen.wait(10)
        writer.store(outcome("r"))

    thread = threading.Thread(target=work)
    thread.start()
    try:
        value = AsyncResult("r", backend=backend).get(timeout=10, on_message=on_message,
                                                      on_interval=on_interval)
    finally:
        thread.join()
        backend.close()
        writer.close()
    assert value == 42
    assert [m["status"] for m in seen] == ["PENDING", "STARTED", "SUCCESS"]
    assert seen[-1]["task_id"] == "r" and seen[-1]["result"] == 42
    assert ticks  # after the STARTED message, which did not finish the task


# -- the refusal inside a task -------------------------------------------------------------------

def test_get_inside_a_task_is_refused_as_celery_does(memory):
    memory.store(outcome("done"))
    result = AsyncResult("done", backend=memory)
    with activate(INSIDE), pytest.raises(RuntimeError) as info:
        result.get(timeout=1)
    assert str(info.value) == E_WOULDBLOCK
    assert str(info.value).startswith("Never call result.get() within a task! See https://")
    with activate(INSIDE):
        assert result.get(timeout=1, disable_sync_subtasks=False) == 42
        with allow_join_result():
            assert result.get(timeout=1) == 42
        with pytest.raises(RuntimeError):
            result.get(timeout=1)  # allowed only inside the with block


def test_refusal_comes_before_any_backend_access():
    class Unreachable:
        def __getattr__(self, name):
            raise AssertionError(f"backend touched: {name}")

    with activate(INSIDE), pytest.raises(RuntimeError, match="Never call result.get"):
        AsyncResult("x", backend=Unreachable()).get()


def test_eager_runs_and_eager_results_never_refuse(memory):
    memory.store(outcome("done"))
    with activate(Request(id="e", task="t", is_eager=True)):
        assert AsyncResult("done", backend=memory).get(timeout=1) == 42
    with activate(INSIDE):
        assert tasks.add.apply((2, 3)).get() == 5


@task
def waits_for(task_id, allow=False):
    return AsyncResult(task_id).get(timeout=5, disable_sync_subtasks=not allow)


@pytest.mark.parametrize("broker_kind", ["memory"])
def test_a_task_calling_get_fails_in_a_real_worker(make_worker):
    added = tasks.add.delay(2, 3)
    worker = make_worker()
    for _ in range(5):
        worker.step()
    refused, allowed = waits_for.delay(added.id), waits_for.delay(added.id, allow=True)
    for _ in range(10):
        worker.step()
    assert refused.failed()
    with pytest.raises(RuntimeError, match="Never call result.get"):
        refused.get(timeout=5)
    assert allowed.get(timeout=5) == 5


# -- the rest of the surface ---------------------------------------------------------------------

def test_exists_is_true_for_any_record_pending_included(memory):
    result = AsyncResult("q", backend=memory)
    assert not result.exists() and result.state == states.PENDING
    memory.mark_pending([("q", "t")])  # what the producer does at send time (Celery does not)
    assert result.exists() and result.known
    result.forget()
    assert not result.exists()


def test_identity_and_celery_shapes(memory):
    result = AsyncResult("id1", backend=memory, task_name="t")
    assert str(result) == "id1" and result == "id1" and result == AsyncResult("id1")
    assert hash(result) == hash("id1") and repr(result) == "<AsyncResult: id1>"
    assert result.as_tuple() == (("id1", None), None) and result.as_list() == ["id1"]
    assert result.children == [] and result.parent is None
    copy = pickle.loads(pickle.dumps(result))  # the backend (a connection) is not pickled
    assert copy == result and copy.task_name == "t"
    with pytest.raises(ValueError, match="needs a task id"):
        AsyncResult("")


def test_maybe_throw_and_throw(memory):
    memory.store(failure("f", "t", ValueError("v")))
    memory.store(outcome("ok"))
    failed, ok = AsyncResult("f", backend=memory), AsyncResult("ok", backend=memory)
    with pytest.raises(ValueError, match="v"):
        failed.maybe_throw()
    assert isinstance(failed.maybe_throw(propagate=False), ValueError)
    calls = []
    assert ok.maybe_throw(callback=lambda *a: calls.append(a)) == 42 and calls == [("ok", 42)]
    assert AsyncResult("unknown", backend=memory).maybe_throw() is None
    with pytest.raises(ValueError, match="v"):
        failed.throw()
    with pytest.raises(KeyError):
        ok.throw(KeyError("given"))
    with pytest.raises(ValueError, match="no exception to throw"):
        ok.throw()


def test_state_result_and_dates(memory):
    memory.store(outcome("p", "PROGRESS", b'{"done": 3}'))
    result = AsyncResult("p", backend=memory)
    assert (result.state, result.status, result.info, result.ready()) == \
        ("PROGRESS", "PROGRESS", {"done": 3}, False)
    memory.store(outcome("p"))
    assert result.successful() and not result.failed() and result.date_done is not None


def test_eager_result_pickles_with_its_value():
    eager = EagerResult("e", ResultMeta("e", states.SUCCESS, result=7, task_name="t"))
    copy = pickle.loads(pickle.dumps(eager))
    assert copy.get() == 7 and copy.name == "t"


# -- admin ----------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_admin_shows_extended_columns_only_when_present(admin_client):
    from django_taskq.models import TaskResult
    from django_taskq.results.database import DatabaseResultBackend

    backend = DatabaseResultBackend()
    backend.store(Outcome(task_id="ext", task_name="t", state=states.SUCCESS, payload=b"1",
                          args=(1, 2), kwargs={"k": "v"}, queue="high"))
    backend.store(outcome("plain"))
    for task_id, shown in (("ext", True), ("plain", False)):
        pk = TaskResult.objects.get(task_id=task_id).pk
        page = admin_client.get(f"/admin/django_taskq/taskresult/{pk}/change/")
        assert page.status_code == 200
        html = page.content.decode()
        assert ("Task args" in html and "high" in html) is shown
        assert ("Task kwargs" in html) is shown


@pytest.mark.parametrize("broker_kind", ["memory", "sqlite", "redis"])
@pytest.mark.parametrize("extended", [True, False])
def test_a_worker_stores_extended_results_when_asked(make_worker, settings, extended):
    settings.TASKQ = {**settings.TASKQ, "RESULT_EXTENDED": extended}
    result = tasks.add.delay(2, y=3)
    worker = make_worker()
    for _ in range(5):
        worker.step()
    assert result.get(timeout=5) == 5
    assert (result.name, result.worker) == ("tests.testapp.tasks.add", worker.options.hostname)
    stored = (result.args, result.kwargs, result.queue)
    assert stored == (([2], {"y": 3}, "default") if extended else (None, None, None))


