"""Turn a signature dict and the arguments it is given into the messages that start it.

This is how a workflow carried in a message goes on where a task finished (callbacks, the next
chain step, a chord's body) and how a chord is started: it works on the plain dicts of the wire
format (CELERY.md §2.1), so signatures a Celery client built are run the same way as ours.

- a task: one message, ``given`` prepended to its arguments unless it is immutable;
- a chain: its first step, carrying the rest (reversed) before whatever chain followed it;
- a group: one message per member, each with the group id and its index; a group followed by
  more steps is a chord whose body is the next step;
- a chord: its header members, each carrying the body; the chord's size is registered with the
  result backend first, and an empty header starts the body at once with ``[]``.

Messages are returned, not sent: the caller sends them together (the worker when it settles the
run, in the settle transaction on the database broker).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..calloptions import ACCEPTED, arguments, new_task_id, resolve
from ..exceptions import TaskqError
from ..message import Envelope
from ..producer import envelope_for
from ..registry import registry
from .fields import as_list

#: Options that hold a list of signatures: placing a workflow adds to them.
LISTS = frozenset({"link", "link_error"})
#: Nesting deeper than this is refused (a signature that contains itself, by mistake).
MAX_DEPTH = 32


def envelopes_for(sig: Mapping[str, Any], given: Sequence[Any], parent: Any = None,
                  chain: list[dict[str, Any]] | None = None, depth: int = 0) -> list[Envelope]:
    """The messages that start ``sig`` given ``given``; ``parent`` is the request of the task
    it follows (None from a client); ``chain`` the steps to run after it, reversed.

    Raises:
        TaskqError: the signature's shape is not a task, chain, group or chord.
        TypeError, SerializationError: arguments that do not fit or do not encode.
    """
    if depth > MAX_DEPTH:
        raise TaskqError(f"a workflow nested more than {MAX_DEPTH} deep (does it contain itself?)")
    kind = sig.get("subtask_type")
    options = dict(sig.get("options") or {})
    # Reversed lists: the signature's own next steps run first, then those given.
    chain = [*(chain or ()), *(options.pop("chain", None) or ())] or None
    if kind == "chain":
        return _chain(sig, given, parent, chain, depth)
    if kind == "group":
        if chain:  # a group followed by a step: the step waits for every member (a chord)
            body, rest = chain[-1], chain[:-1]
            header = {**sig, "options": options}
            return _chord(header, _with_chain(body, rest), given, parent, options, depth)
        return _group(sig, given, parent, options, depth)
    if kind == "chord":
        chord_kwargs = sig.get("kwargs") or {}
        body = _with_chain(chord_kwargs["body"], chain or [])
        # A chord's own (partial) arguments go to its header tasks after the given ones.
        given = () if sig.get("immutable") else (*given, *(sig.get("args") or ()))
        return _chord(chord_kwargs["header"], body, given, parent, options, depth)
    if kind not in (None, "", "task"):
        raise TaskqError(f"cannot run a signature of type {kind!r} (not a task, chain, group or "
                         "chord)")
    return [_task(sig, given, parent, chain)]


def _chain(sig: Mapping[str, Any], given: Sequence[Any], parent: Any,
           chain: list[dict[str, Any]] | None, depth: int) -> list[Envelope]:
    steps = list((sig.get("kwargs") or {}).get("tasks") or ())
    if not steps:
        raise TaskqError("an empty chain has no task to run")
    partial = tuple(sig.get("args") or ())
    first = dict(steps[0])
    if partial:
        first["args"] = [*partial, *(first.get("args") or ())]
    if sig.get("immutable"):
        given = ()
    rest = [*(chain or ()), *reversed(steps[1:])]
    return envelopes_for(first, given, parent, rest or None, depth + 1)


def _group(sig: Mapping[str, Any], given: Sequence[Any], parent: Any,
           options: Mapping[str, Any], depth: int, chord: Mapping[str, Any] | None = None,
           ) -> list[Envelope]:
    """Every member, each with the group id and its index (and the chord's body)."""
    group_id = options.get("task_id") or options.get("group_id") or new_task_id()
    members = flat_members(sig)
    sent = []
    for index, member in enumerate(members):
        placed = in_group(member, group_id, index, chord)
        sent.extend(envelopes_for(placed, () if sig.get("immutable") else given, parent,
                                  depth=depth + 1))
    return sent


def _chord(header: Any, body: Mapping[str, Any], given: Sequence[Any], parent: Any,
           options: Mapping[str, Any], depth: int) -> list[Envelope]:
    """The header members, each carrying ``body`` (its task id fixed); the size registered."""
    from ..results import get_backend

    header_sig = header if isinstance(header, Mapping) else \
        {"task": "celery.group", "kwargs": {"tasks": list(header)}, "subtask_type": "group"}
    header_options = dict(header_sig.get("options") or {})
    group_id = header_options.get("task_id") or options.get("group_id") or new_task_id()
    body = frozen(body)
    members = flat_members(header_sig)
    if not members:  # Celery calls the body at once with an empty list
        return envelopes_for(body, ([],), parent, depth=depth + 1)
    get_backend().set_chord_size(group_id, len(members))
    return _group({**header_sig, "options": {**header_options, "task_id": group_id}}, given,
                  parent, {"task_id": group_id}, depth, chord=body)


def flat_members(sig: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A group's members, nested groups replaced by their own (Celery unrolls them too)."""
    members: list[dict[str, Any]] = []
    for member in (sig.get("kwargs") or {}).get("tasks") or ():
        if member.get("subtask_type") == "group":
            members.extend(flat_members(member))
        else:
            members.append(dict(member))
    return members


def in_group(member: Mapping[str, Any], group_id: str, index: int,
             chord: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of ``member`` placed in a group: its last task (a chain's last step) is the one
    the group waits for, so it gets the group id, the index and the chord."""
    placed: dict[str, Any] = {"group_id": group_id, "group_index": index}
    if chord is not None:
        placed["chord"] = dict(chord)
    return take_place(member, placed)


def take_place(sig: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``sig`` whose result task (a chain's last step, a chord's body) has
    ``options`` set over its own: what a workflow needs to stand where one task stood."""
    kind = sig.get("subtask_type")
    if kind == "chain":
        steps = list((sig.get("kwargs") or {}).get("tasks") or ())
        if not steps:
            raise TaskqError("an empty chain has no task to run")
        steps[-1] = take_place(steps[-1], options)
        return {**sig, "kwargs": {**(sig.get("kwargs") or {}), "tasks": steps}}
    if kind == "chord":
        kwargs = dict(sig.get("kwargs") or {})
        kwargs["body"] = take_place(frozen(kwargs["body"]), options)
        return {**sig, "kwargs": kwargs}
    if kind == "group":
        raise TaskqError("a group has no one result task: make it a chord first")
    own = dict(sig.get("options") or {})
    for key, value in options.items():  # callbacks are added to the task's own
        own[key] = [*as_list(own.get(key)), *as_list(value)] if key in LISTS else value
    return {**sig, "options": own}


def with_errbacks(sig: Mapping[str, Any], errbacks: list[Any]) -> dict[str, Any]:
    """A copy of ``sig`` with ``errbacks`` added to every task that may fail in its place:
    each step of a chain, a chord's body, each member of a group (Celery links a chain's
    errbacks to every step)."""
    kind = sig.get("subtask_type")
    kwargs = dict(sig.get("kwargs") or {})
    if kind in ("chain", "group"):
        kwargs["tasks"] = [with_errbacks(task, errbacks) for task in kwargs.get("tasks") or ()]
        return {**sig, "kwargs": kwargs}
    if kind == "chord":
        kwargs["body"] = with_errbacks(kwargs["body"], errbacks)
        return {**sig, "kwargs": kwargs}
    options = dict(sig.get("options") or {})
    options["link_error"] = [*as_list(options.get("link_error")), *errbacks]
    return {**sig, "options": options}


def frozen(sig: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``sig`` whose task id is fixed (the id its result will be read under)."""
    copy = dict(sig)
    if copy.get("subtask_type") == "chain":
        steps = list((copy.get("kwargs") or {}).get("tasks") or ())
        if steps:
            steps[-1] = frozen(steps[-1])
            copy["kwargs"] = {**(copy.get("kwargs") or {}), "tasks": steps}
        return copy
    if copy.get("subtask_type") == "chord":
        kwargs = dict(copy.get("kwargs") or {})
        kwargs["body"] = frozen(kwargs["body"])
        copy["kwargs"] = kwargs
        return copy
    options = dict(copy.get("options") or {})
    options.setdefault("task_id", new_task_id())
    copy["options"] = options
    return copy


def _with_chain(sig: Mapping[str, Any], chain: list[dict[str, Any]]) -> dict[str, Any]:
    """``sig`` to run before the (reversed) steps ``chain``: they travel in its options."""
    copy = dict(sig)
    if chain:
        options = dict(copy.get("options") or {})
        options["chain"] = [*chain, *(options.get("chain") or ())]
        copy["options"] = options
    return copy


def _task(sig: Mapping[str, Any], given: Sequence[Any], parent: Any,
          chain: list[dict[str, Any]] | None) -> Envelope:
    """The message for one task: ``given`` prepended to its arguments unless it is immutable,
    its options (its frozen task id among them), the parent's ids."""
    name = sig["task"]
    args = list(sig.get("args") or ())
    if not sig.get("immutable"):
        args = [*given, *args]
    kwargs = dict(sig.get("kwargs") or {})
    options = dict(sig.get("options") or {})
    task_id = options.pop("task_id", None) or new_task_id()
    if parent is not None:
        options.setdefault("parent_id", parent.id)
        options.setdefault("root_id", parent.root_id or parent.id)
    if chain:
        options["chain"] = chain
    else:
        options.pop("chain", None)
    task = registry.get(name) if name in registry else None
    # A Celery client may keep other things in a signature's options: only apply_async's go on.
    options = {key: value for key, value in options.items() if key in ACCEPTED}
    checked, kwargs = arguments(task, args, kwargs)  # they must fit, as delay() checks
    send_options = resolve(name, task, checked, kwargs, options)
    return envelope_for(name, task_id, list(checked), kwargs, send_options)
