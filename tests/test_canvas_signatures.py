"""Canvas, producer side: signatures (``s``/``si``/``signature``, partials, ``set``, ``clone``,
``freeze``, ``link``) and chains (the first message and its reversed ``chain`` embed, frozen ids,
``.parent`` links, options, eager ``apply``), compared with what real Celery 5.7 builds."""

from __future__ import annotations

import copy
import json
import pickle
from datetime import datetime, timedelta, timezone
from unittest import mock

import pytest

import django_taskq
from django_taskq import AsyncResult, Signature, chain, maybe_signature, signature, states
from django_taskq.brokers import get_broker
from django_taskq.canvas.fields import plain
from django_taskq.exceptions import NotRegistered
from django_taskq.outcome import failure
from django_taskq.results.memory import MemoryResultBackend
from tests.testapp import tasks

ADD = "tests.testapp.tasks.add"
memory_only = pytest.mark.parametrize("broker_kind", ["memory"])


def sent(queue="default"):
    """Every message waiting in ``queue``: (envelope, args, kwargs, embed)."""
    deliveries = get_broker().reserve([queue], max_messages=100, lease=30, worker="t")
    found = []
    for delivery in deliveries:
        args, kwargs, embed = json.loads(delivery.envelope.body)
        found.append((delivery.envelope, args, kwargs, embed))
    return found


def one_sent(queue="default"):
    [message] = sent(queue)
    return message


def step_dict(task, args, options, immutable=False, kwargs=None):
    return {"task": task, "args": args, "kwargs": kwargs or {}, "options": options,
            "subtask_type": None, "immutable": immutable}


# -- building signatures ------------------------------------------------------------------------

def test_s_si_and_signature_build_celerys_dict():
    assert tasks.add.s(2, 3) == {"task": ADD, "args": (2, 3), "kwargs": {}, "options": {},
                                 "subtask_type": None, "immutable": False}
    assert tasks.add.si(2, 3)["immutable"] is True
    sig = tasks.add.signature((2,), {"y": 3}, countdown=10)
    assert (sig.name, sig.task, sig.args, sig.kwargs, sig.options) == \
        (ADD, ADD, (2,), {"y": 3}, {"countdown": 10})
    assert tasks.add.subtask((1, 2)) == tasks.add.s(1, 2)
    assert sig.type is tasks.add and sig.id is None and sig.subtask_type is None
    assert isinstance(sig, dict) and isinstance(sig, Signature)


def test_signature_factory_takes_a_name_a_task_or_a_dict():
    by_name = signature("elsewhere.report", args=[1], kwargs={"a": 2}, queue="q")
    assert by_name == {"task": "elsewhere.report", "args": (1,), "kwargs": {"a": 2},
                       "options": {"queue": "q"}, "subtask_type": None, "immutable": False}
    assert signature(tasks.add, (1, 2)) == tasks.add.s(1, 2)
    from_dict = signature(dict(by_name))
    assert type(from_dict) is Signature and from_dict == by_name
    copied = signature(by_name)
    assert copied == by_name and copied is not by_name
    with pytest.raises(NotRegistered):
        by_name.type  # noqa: B018


@pytest.mark.parametrize("bad", [{"args": (1,)}, None, 5])
def test_a_signature_needs_a_task_name(bad):
    with pytest.raises(TypeError, match="task"):
        Signature(bad)


@pytest.mark.parametrize(("field", "value"), [("args", "12"), ("args", 5), ("kwargs", [1])])
def test_args_must_be_a_list_or_tuple_and_kwargs_a_dict(field, value):
    with pytest.raises(TypeError, match=field):
        Signature(ADD, **{field: value})


def test_repr_is_the_call_as_celery_shows_it():
    assert repr(tasks.add.s(2, y=3)) == f"{ADD}(2, y=3)"
    assert repr(signature("x.y", kwargs={"a": "b"})) == "x.y(a='b')"
    steps = tasks.add.s(1, 2) | tasks.add.s(3) | tasks.echo.si(4)
    assert repr(steps) == f"{ADD}(1, 2) | add(3) | tests.echo(4)"
    assert repr(chain()).startswith("<chain@") and repr(chain()).endswith(": empty>")


# -- calling: partial application, immutability, options ---------------------------------------

def test_calling_a_signature_runs_it_here_with_partial_args_prepended():
    assert tasks.add.s(2)(3) == 5
    assert tasks.echo.s(1, a=1)(0, b=2) == {"args": [0, 1], "kwargs": {"a": 1, "b": 2}}
    assert tasks.echo.si(1)(0, b=2) == {"args": [1], "kwargs": {}}


@memory_only
def test_delay_prepends_args_and_merges_kwargs_and_options(configured):
    sig = tasks.echo.s(1, 2, a=1, b=1).set(priority=1, expires=30)
    sig.apply_async((0,), {"b": 2, "c": 3}, priority=7, expires=None)
    envelope, args, kwargs, _ = one_sent()
    assert args == [0, 1, 2] and kwargs == {"a": 1, "b": 2, "c": 3}
    assert envelope.priority == 7 and envelope.headers["expires"]  # call wins; None: not given
    assert sig.args == (1, 2) and sig.options == {"priority": 1, "expires": 30}  # unchanged
    tasks.add.s(2).delay(3)
    assert one_sent()[1] == [3, 2]


@memory_only
def test_an_immutable_signature_ignores_call_arguments_but_takes_options(configured):
    tasks.echo.si(1, a=1).apply_async((0,), {"b": 2}, priority=3)
    envelope, args, kwargs, _ = one_sent()
    assert (args, kwargs, envelope.priority) == ([1], {"a": 1}, 3)
    tasks.echo.s(1).set(immutable=True).delay(2)
    assert one_sent()[1] == [1]


@memory_only
def test_a_task_unknown_here_is_sent_by_name(configured):
    result = signature("billing.tasks.charge", args=(10,), queue="billing").delay(5)
    envelope, args, _, _ = one_sent("billing")
    assert envelope.task_name == "billing.tasks.charge" and args == [5, 10]
    assert result.id == envelope.message_id


def test_apply_runs_eagerly_with_the_merged_arguments():
    result = tasks.add.s(2).apply((3,))
    assert result.get() == 5 and result.state == states.SUCCESS
    assert tasks.add.si(1, 1).apply((100,)).get() == 2


def test_merging_keeps_a_group_id_the_signature_has():
    sig = tasks.add.s(1).set(group_id="g", queue="a")
    assert sig.clone(group_id="h", queue="b").options == {"group_id": "g", "queue": "b"}
    assert tasks.add.s(1).clone(group_id="h").options == {"group_id": "h"}


# -- set, clone, freeze, link ----------------------------------------------------------------

def test_set_updates_options_and_returns_the_signature():
    sig = tasks.add.s(1)
    assert sig.set(queue="q").set(countdown=5, immutable=True) is sig
    assert sig.options == {"queue": "q", "countdown": 5} and sig.immutable
    sig.set_immutable(False)
    assert sig.immutable is False


def test_clone_copies_deeply_and_merges_partials():
    sig = tasks.add.s(2, y=1).set(queue="q")
    sig.link(tasks.echo.s())
    clone = sig.clone()
    assert clone == sig and clone is not sig and clone.type is tasks.add
    clone.options["link"][0].args = (9,)
    clone.kwargs["y"] = 5
    assert sig.options["link"][0].args == () and sig.kwargs == {"y": 1}
    assert sig.clone((1,), {"z": 3}, countdown=4) == {
        "task": ADD, "args": (1, 2), "kwargs": {"y": 1, "z": 3},
        "options": {"queue": "q", "countdown": 4, "link": [tasks.echo.s()]},
        "subtask_type": None, "immutable": False}
    assert tasks.add.si(2).clone((1,)).args == (2,)
    assert copy.deepcopy(sig) == sig
    assert sig.partial((1,)).args == (1, 2)
    assert sig.replace(args=(7,), options={}) == {**sig, "args": (7,), "options": {}}


@memory_only
def test_freeze_fixes_the_task_id_the_message_then_uses(configured):
    sig = tasks.add.s(1, 2)
    frozen = sig.freeze()
    assert isinstance(frozen, AsyncResult) and frozen.id == sig.id == sig.options["task_id"]
    assert sig.freeze("other").id == frozen.id  # an id it has is kept
    assert tasks.add.s().freeze("given").id == "given"
    result = sig.delay()
    assert result.id == frozen.id == one_sent()[0].message_id


def test_freeze_stores_workflow_ids_as_options():
    sig = tasks.add.s(1).set(group_id="kept")
    sig.freeze(root_id="r", parent_id="p", group_id="g", group_index=2,
               chord=tasks.echo.s())
    assert sig.root_id == "r" and sig.parent_id == "p"
    assert sig.options["group_id"] == "kept" and sig.options["group_index"] == 2
    assert sig.options["chord"] == tasks.echo.s()


@memory_only
def test_link_link_error_and_on_error_travel_as_callbacks_and_errbacks(configured):
    sig = tasks.add.s(1, 2)
    callback = tasks.echo.s("done")
    assert sig.link(callback) is callback
    sig.link(tasks.echo.s("done"))  # an equal callback is not added twice
    errback = tasks.echo.si("failed")
    assert sig.link_error(errback) is errback
    assert sig.on_error(tasks.echo.si("again")) is sig
    assert sig.options == {"link": [callback], "link_error": [errback, tasks.echo.si("again")]}
    sig.delay()
    _, _, _, embed = one_sent()
    assert embed == {
        "callbacks": [step_dict("tests.echo", ["done"], {})],
        "errbacks": [step_dict("tests.echo", ["failed"], {}, immutable=True),
                     step_dict("tests.echo", ["again"], {}, immutable=True)],
        "chain": None, "chord": None}


def test_link_takes_only_signatures():
    with pytest.raises(TypeError, match="link"):
        tasks.add.s(1).link(tasks.echo)
    with pytest.raises(TypeError, match="link_error"):
        tasks.add.s(1).link_error("tests.echo")


def test_a_link_given_as_one_signature_becomes_a_list():
    sig = tasks.add.s(1).set(link=tasks.echo.s(1))
    sig.link(tasks.echo.s(2))
    assert sig.options["link"] == [tasks.echo.s(1), tasks.echo.s(2)]
    assert [s.task for s in sig.flatten_links()] == [ADD, "tests.echo", "tests.echo"]


# -- from_dict, maybe_signature, pickling ------------------------------------------------------

def test_from_dict_rebuilds_a_signature_from_its_json():
    sig = tasks.add.s(1, y=2).set(queue="q")
    sig.link(tasks.echo.s(3))
    sig.link_error(tasks.echo.si(4))
    rebuilt = Signature.from_dict(json.loads(json.dumps(sig)))
    assert rebuilt == sig and type(rebuilt) is Signature
    assert isinstance(rebuilt.options["link"][0], Signature)
    assert maybe_signature(json.loads(json.dumps(sig))) == sig
    assert pickle.loads(pickle.dumps(sig)) == sig


def test_from_dict_rebuilds_a_chain_and_refuses_unknown_types():
    steps = chain(tasks.add.s(1, 2), tasks.add.s(3), queue="q")
    rebuilt = Signature.from_dict(json.loads(json.dumps(steps)))
    assert type(rebuilt) is chain and rebuilt == steps
    assert all(type(step) is Signature for step in rebuilt.tasks)
    assert rebuilt.options == {"queue": "q"} and rebuilt.subtask_type == "chain"
    assert type(pickle.loads(pickle.dumps(steps))) is chain
    with pytest.raises(ValueError, match="'nope'"):
        Signature.from_dict({**tasks.add.s(), "subtask_type": "nope"})


def test_register_type_makes_from_dict_build_the_subclass(monkeypatch):
    monkeypatch.setattr(Signature, "TYPES", dict(Signature.TYPES))

    @Signature.register_type(name="special")
    class Special(Signature):
        @classmethod
        def from_dict(cls, d, app=None):
            return cls(dict(d))

    assert type(Signature.from_dict({"task": "t", "subtask_type": "special"})) is Special
    assert Signature.register_type()(Special) is Special and Signature.TYPES["Special"] is Special


def test_maybe_signature():
    sig = tasks.add.s(1)
    assert maybe_signature(None) is None
    assert maybe_signature(sig) is sig
    assert maybe_signature(sig, clone=True) == sig and maybe_signature(sig, clone=True) is not sig
    with pytest.raises(TypeError):
        maybe_signature(5)  # type: ignore[call-overload]


# -- chains: the first message and its embed ----------------------------------------------------

@memory_only
def test_a_three_step_chain_sends_the_first_task_with_the_rest_reversed(configured):
    result = (tasks.add.s(1, 2) | tasks.add.s(3) | tasks.echo.si(4)).apply_async()
    envelope, args, kwargs, embed = one_sent()
    first, second = result.parent.parent, result.parent
    assert result.parent.parent.parent is None
    assert len({first.id, second.id, result.id}) == 3
    assert (envelope.task_name, envelope.message_id, args, kwargs) == (ADD, first.id, [1, 2], {})
    assert envelope.headers["root_id"] == first.id and envelope.headers["parent_id"] is None
    assert embed == {"callbacks": None, "errbacks": None, "chord": None, "chain": [
        step_dict("tests.echo", [4], {"task_id": result.id, "root_id": first.id}, immutable=True),
        step_dict(ADD, [3], {"task_id": second.id, "root_id": first.id}),
    ]}
    assert [r.task_name for r in (first, second, result)] == [ADD, ADD, "tests.echo"]


@memory_only
def test_chain_partial_args_go_to_the_first_step(configured):
    steps = chain(tasks.add.s(2), tasks.add.s(3))
    steps.apply_async((1,))
    steps(10)
    steps.delay(20)
    assert [message[1] for message in sent()] == [[1, 2], [10, 2], [20, 2]]
    chain(tasks.echo.si(1), tasks.add.s(3)).apply_async((5,), {"k": 1})
    assert one_sent()[1:3] == ([1], {})


@memory_only
def test_a_chains_options_apply_to_every_step_that_has_none(configured):
    steps = chain(tasks.add.s(1, 2), tasks.add.s(3).set(queue="b", priority=1), tasks.add.s(4),
                  queue="a", priority=5)
    started = datetime.now(timezone.utc) - timedelta(seconds=1)
    result = steps.apply_async(eta=started, headers={"trace": "t1"})
    envelope, _, _, embed = one_sent("a")
    assert envelope.priority == 5 and envelope.eta == started  # eta: the first step only
    assert envelope.headers["trace"] == "t1"
    last, middle = embed["chain"]
    assert last["options"] == {"queue": "a", "priority": 5, "headers": {"trace": "t1"},
                               "task_id": result.id, "root_id": envelope.message_id}
    assert middle["options"] == {"queue": "b", "priority": 1, "headers": {"trace": "t1"},
                                 "task_id": result.parent.id, "root_id": envelope.message_id}
    assert steps.options == {"queue": "a", "priority": 5}  # the chain itself is unchanged
    assert all("task_id" not in step.options for step in steps.tasks)


@memory_only
def test_chain_links_go_to_the_last_step_and_errbacks_to_every_step(configured):
    done, failed, also = tasks.echo.s("done"), tasks.echo.si("failed"), tasks.echo.s("also")
    steps = tasks.add.s(1, 2) | tasks.add.s(3)
    steps.link(done)
    steps.link_error(failed)
    steps.apply_async()
    steps.apply_async(link=also)  # a call's option replaces the chain's, as Celery merges them
    (_, _, _, embed), (_, _, _, called) = sent()
    assert embed["callbacks"] is None and embed["errbacks"] == [plain(failed)]
    [last] = embed["chain"]
    assert last["options"]["link"] == [plain(done)]
    assert last["options"]["link_error"] == [plain(failed)]
    assert called["chain"][0]["options"]["link"] == [plain(also)]
    assert steps.options == {"link": [done], "link_error": [failed]}


@memory_only
def test_task_id_names_the_last_task_and_freeze_fixes_every_id(configured):
    result = (tasks.add.s(1, 2) | tasks.add.s(3)).apply_async(task_id="the-end")
    assert result.id == "the-end" and one_sent()[3]["chain"][0]["options"]["task_id"] == "the-end"
    steps = tasks.add.s(1, 2) | tasks.add.s(3) | tasks.add.s(4)
    frozen = steps.freeze()
    assert steps.id == frozen.id and [t.id for t in steps.tasks] == frozen.as_list()[::-1]
    sent_result = steps.apply_async()
    assert sent_result.as_list() == frozen.as_list()
    envelope, _, _, embed = one_sent()
    assert envelope.message_id == frozen.parent.parent.id
    assert [step["options"]["task_id"] for step in embed["chain"]] == frozen.as_list()[:2]


@memory_only
def test_sending_a_chain_twice_sends_new_ids(configured):
    steps = tasks.add.s(1, 2) | tasks.add.s(3)
    assert steps.apply_async().id != steps.apply_async().id  # Celery reuses the last id here


@memory_only
def test_a_chain_of_one_step_is_that_step(configured):
    result = chain(tasks.add.s(1, 2)).apply_async(queue="q")
    envelope, args, _, embed = one_sent("q")
    assert result.id == envelope.message_id and result.parent is None
    assert args == [1, 2] and embed["chain"] is None


def test_an_empty_chain_is_an_error():
    with pytest.raises(ValueError, match="empty"):
        chain().apply_async()
    with pytest.raises(ValueError, match="empty"):
        chain().apply()


@memory_only
def test_a_chain_sent_as_a_step_of_another_runs_before_the_rest(configured):
    outer_rest = [plain(tasks.echo.s("after"))]
    (tasks.add.s(1, 2) | tasks.add.s(3)).apply_async(chain=outer_rest)
    [after, ours] = one_sent()[3]["chain"]
    assert after["args"] == ["after"] and ours["args"] == [3]


@memory_only
def test_a_chain_sent_from_a_running_task_keeps_its_root(configured):
    from django_taskq.context import Request, activate

    with activate(Request(id="running", root_id="root", task="t")):
        result = (tasks.add.s(1, 2) | tasks.add.s(3)).apply_async()
    envelope, _, _, embed = one_sent()
    assert envelope.headers["root_id"] == "root" and envelope.headers["parent_id"] == "running"
    assert embed["chain"][0]["options"] == {"task_id": result.id, "root_id": "root"}


# -- | and flattening ----------------------------------------------------------------------------

def test_pipe_builds_flat_chains():
    a, b, c, d = (tasks.add.s(i) for i in range(4))
    assert type(a | b) is chain and (a | b).tasks == [a, b]
    assert (a | (b | c)).tasks == [a, b, c]
    assert ((a | b) | c).tasks == [a, b, c]
    assert ((a | b) | (c | d)).tasks == [a, b, c, d]
    assert chain(a, chain(b, c), d).tasks == [a, b, c, d]
    assert chain([a, b]).tasks == chain(a, b).tasks == chain(s for s in (a, b)).tasks
    step = a
    step |= b
    assert type(step) is chain and step.tasks == [a, b] and type(a) is Signature
    assert (a | dict(b)).tasks == [a, b]  # a signature dict from a message chains too
    with pytest.raises(TypeError):
        a | 5  # noqa: B018


def test_flattening_gives_a_nested_chains_options_and_callbacks_to_its_steps():
    inner = chain(tasks.add.s(1), tasks.add.s(2), queue="inner")
    inner.link(tasks.echo.s("inner done"))
    inner.link_error(tasks.echo.si("inner failed"))
    outer = chain(tasks.add.s(0), inner, tasks.add.s(3).set(queue="own"))
    first, one, two, three = outer.tasks
    assert first.options == {} and three.options == {"queue": "own"}
    assert one.options == {"queue": "inner", "link_error": [tasks.echo.si("inner failed")]}
    assert two.options == {"queue": "inner", "link": [tasks.echo.s("inner done")],
                           "link_error": [tasks.echo.si("inner failed")]}


# -- eager: chain.apply() and TASK_ALWAYS_EAGER -----------------------------------------------

def test_chain_apply_runs_each_step_with_the_previous_value():
    result = (tasks.add.s(1, 2) | tasks.add.s(3) | tasks.add.si(10, 20)).apply()
    assert result.get() == 30 and result.parent.get() == 6 and result.parent.parent.get() == 3
    assert result.parent.parent.parent is None
    assert chain(tasks.add.s(2), tasks.add.s(3)).apply((1,)).get() == 6


def test_chain_apply_stops_at_a_failing_step():
    result = chain(tasks.add.s(1, 2), tasks.fail.si("no"), tasks.add.s(1)).apply(throw=False)
    assert result.state == states.FAILURE and result.parent.get() == 3
    with pytest.raises(ValueError, match="no"):
        result.get()


@memory_only
def test_with_task_always_eager_a_chain_runs_here(configured, settings):
    settings.TASKQ = {**settings.TASKQ, "TASK_ALWAYS_EAGER": True}
    result = (tasks.add.s(1, 2) | tasks.add.s(3)).delay()
    assert result.get() == 6 and result.parent.get() == 3
    assert sent() == []


# -- AsyncResult.parent ---------------------------------------------------------------------------

def test_parent_is_a_settable_attribute_that_get_follows():
    memory = MemoryResultBackend()
    memory.store(failure("first", ADD, ValueError("first failed")))
    result = AsyncResult("last", backend=memory, parent=AsyncResult("first", backend=memory))
    assert result.parent.id == "first" and result.as_list() == ["last", "first"]
    with pytest.raises(ValueError, match="first failed"):
        result.get(timeout=5)  # would wait for a task that never runs
    result.parent = None
    with pytest.raises(django_taskq.exceptions.TimeoutError):
        result.get(timeout=0.05)


# -- the same chain built by real Celery ----------------------------------------------------------

@pytest.fixture
def celery_app():
    from tests.celery_peer import make_app

    app = make_app("memory://", "cache+memory://")
    app.conf.task_always_eager = False
    return app


def celery_sent(app, build):
    """The messages real Celery publishes for ``build(app)`` (its producer never connects)."""
    published = []
    with mock.patch.object(app.amqp, "send_task_message",
                           lambda producer, name, message, **kw: published.append(message)):
        result = build(app)
    return result, [(m.headers, m.body) for m in published]


def _without_ids(sig_dict):
    options = {k: v for k, v in sig_dict["options"].items()
               if k not in {"task_id", "reply_to", "root_id"}}
    return {**sig_dict, "options": options}


@memory_only
def test_our_chain_message_has_celerys_shape(configured, celery_app):
    def build(add, echo_immutable):
        steps = add.s(1, 2) | add.s(3) | echo_immutable
        steps.link(add.s(100))
        steps.link_error(add.si(0, 0))
        return steps.apply_async()

    theirs, [(headers, body)] = celery_sent(
        celery_app, lambda app: build(app.tasks[ADD], app.tasks[ADD].si(4, 5)))
    ours = build(tasks.add, tasks.add.si(4, 5))
    envelope, args, kwargs, embed = one_sent()
    their_args, their_kwargs, their_embed = json.loads(json.dumps(body))
    assert (args, kwargs) == (their_args, their_kwargs)
    assert embed.keys() == their_embed.keys()
    assert embed["errbacks"] == their_embed["errbacks"] and embed["callbacks"] is None
    assert [_without_ids(step) for step in embed["chain"]] == \
        [_without_ids(step) for step in their_embed["chain"]]
    for mine, celerys in zip(embed["chain"], their_embed["chain"], strict=True):
        assert list(mine) == list(celerys)  # same keys, same order
        assert set(celerys["options"]) - set(mine["options"]) == {"reply_to"}
    # Both return the last task's frozen result, with parents back to the first message.
    for result, message_id, chain_dicts in ((theirs, headers["id"], their_embed["chain"]),
                                            (ours, envelope.message_id, embed["chain"])):
        assert result.parent.parent.id == message_id
        assert [step["options"]["task_id"] for step in chain_dicts] == \
            [result.id, result.parent.id]


def test_our_signature_dicts_and_reprs_are_celerys(celery_app):
    theirs, ours = celery_app.tasks[ADD], tasks.add
    for build in (lambda t: t.s(1, y=2), lambda t: t.si(1, 2),
                  lambda t: t.signature((1,), {"y": 2}, countdown=3),
                  lambda t: t.s(2).clone((1,), {"z": 3}, queue="q"),
                  lambda t: t.si(2).clone((1,)), lambda t: t.s(1).set(priority=3, immutable=True)):
        assert json.loads(json.dumps(build(ours))) == json.loads(json.dumps(build(theirs)))
        assert repr(build(ours)) == repr(build(theirs))
    their_chain = theirs.s(1, 2) | theirs.s(3) | theirs.si(4, 5)
    our_chain = ours.s(1, 2) | ours.s(3) | ours.si(4, 5)
    assert repr(our_chain) == repr(their_chain)
    assert json.loads(json.dumps(our_chain)) == json.loads(json.dumps(their_chain))


def test_a_chain_dict_from_celery_is_rebuilt_as_our_chain(celery_app):
    add = celery_app.tasks[ADD]
    their_chain = (add.s(1, 2) | add.s(3)).set(queue="q")
    ours = maybe_signature(json.loads(json.dumps(their_chain)))
    assert type(ours) is chain and ours.options == {"queue": "q"}
    assert ours.tasks == [tasks.add.s(1, 2), tasks.add.s(3)]


def test_the_package_exports_canvas():
    from django_taskq import canvas

    assert django_taskq.signature is canvas.signature is signature
    assert django_taskq.chain is canvas.chain and django_taskq.Signature is canvas.Signature
    assert django_taskq.maybe_signature is canvas.maybe_signature
