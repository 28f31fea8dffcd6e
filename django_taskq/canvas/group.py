"""Groups: ``group(add.s(1, 1), add.s(2, 2))``, tasks run in parallel, read as one GroupResult.

Sending a group sends every member at once, in ONE producer send (one bulk enqueue; one
transaction on the database broker, the caller's if one is open), each member's id fixed up
front with the group id and its position in the headers ``group``/``group_index`` (CELERY.md
§2.1). Nested groups are flattened; a chain member is sent as a chain whose last step belongs
to the group. Like Celery's ``group``, but:

- options given to the group reach every member that does not set its own (Celery's override
  the members'); ``link_error`` is added to every member; ``link=`` (a callback after the whole
  group) is refused with a pointer to ``chord``, which ``group | task`` makes (chord.py);
- a group may end a chain (``a | group(...)``: each member is given ``a``'s result, as in
  Celery); a group followed by more steps is a chord whose body is the next step;
- iterating a group yields its tasks (a Celery group, a dict, yields its keys).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, cast

from .. import producer
from ..calloptions import arguments, new_task_id, resolve
from ..conf import get_settings
from ..context import current_request
from ..message import Envelope, SendOptions
from ..result import AsyncResult, allow_join_result
from ..result_group import GroupResult
from .chain import _without_repeated_module, chain
from .composite import Composite
from .fields import as_list, is_signature_dict, plain
from .signature import Signature, maybe_signature

__all__ = ["group"]

#: Options of a group that its members do not inherit: their identity and place in the group
#: are set by the group; callbacks are added to each member, not set over theirs.
NOT_INHERITED = frozenset({"task_id", "group_id", "group_index", "chain", "chord", "link",
                           "link_error"})
TIMING = frozenset({"countdown", "eta"})


@Signature.register_type(name="group")
class group(Composite):  # noqa: N801 - Celery's name
    """Tasks sent together to run in parallel: ``group(add.s(2, 2), add.s(4, 4))``.

    ``group([a, b])`` and generators work too. Sending it returns a GroupResult whose
    ``get()`` is the list of the members' values, in member order. Arguments given when it is
    sent are prepended to every member's (immutable ones excepted); options reach every
    member that does not set its own.
    """

    def __init__(self, *tasks: Any, **options: Any) -> None:
        options.pop("app", None)
        given: Iterable[Any] = tasks
        if len(tasks) == 1:
            only = tasks[0]
            if isinstance(only, group):
                given = only.tasks
            elif _is_list(only):
                given = only
        members = [maybe_signature(task) for task in given]
        super().__init__("celery.group", (), {"tasks": members}, options, subtask_type="group")

    def clone(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              **opts: Any) -> group:
        """A copy of the group and of each member; ``args`` become partial args of all."""
        made = cast("group", super().clone(args, None, **opts))
        made.kwargs["tasks"] = [_with_arguments(task, (), kwargs) for task in made.tasks]
        return made

    def set_immutable(self, immutable: bool) -> None:
        """Make every member (and the group) ignore call-time arguments."""
        super().set_immutable(immutable)
        for task in self.tasks:
            task.set_immutable(immutable)

    def skew(self, start: float = 1.0, stop: float | None = None, step: float = 1.0) -> group:
        """Stagger the members: countdowns ``start``, ``start + step``... up to ``stop`` (then
        ``stop`` again for the rest). Returns the group."""
        countdowns = _stepped(start, stop, step)
        for task in self.tasks:
            task.set(countdown=next(countdowns))
        return self

    # -- sending ----------------------------------------------------------------------------

    def __call__(self, *partial_args: Any, **options: Any) -> GroupResult:
        """Send the group (Celery's ``group(...)(*args)``)."""
        return self.apply_async(partial_args, **options)

    def delay(self, *partial_args: Any, **partial_kwargs: Any) -> GroupResult:  # type: ignore[override]
        """``apply_async`` with star arguments (prepended to every member's)."""
        return self.apply_async(partial_args, partial_kwargs)

    def apply_async(self, args: Sequence[Any] | None = None,  # type: ignore[override]
                    kwargs: Mapping[str, Any] | None = None, route_name: str | None = None,
                    **options: Any) -> GroupResult:
        """Send every member in one producer send; return their GroupResult.

        ``task_id`` (or ``group_id``) names the group. Under TASK_ALWAYS_EAGER the members run
        here (``apply``), as in Celery.

        Raises:
            TypeError: ``link=`` given (a callback after the whole group is a chord), or a
                member's arguments or options do not fit.
            TaskqError: the group is sent as a chain step.
            ValueError, SerializationError, BrokerError: as ``Task.apply_async``.
        """
        options = _given(options)
        if get_settings().TASK_ALWAYS_EAGER:
            with allow_join_result():
                return self.apply(args, kwargs, **options)
        merged = {**self.options, **options}
        if merged.get("chain"):  # the first step of a chain: the next step waits for all (chord)
            from .chord import chord

            rest = list(merged.pop("chain"))
            body = maybe_signature(rest.pop())
            merged.pop("task_id", None)
            header = self.clone(None, kwargs) if kwargs else self
            made = chord(header, body.set(chain=rest) if rest else body)
            return cast(GroupResult, made.apply_async(args, None, **merged).parent)
        group_id = _group_id(merged)
        members = self._prepared(args, kwargs, merged, group_id)
        if not members:
            return GroupResult(group_id, [])
        messages = [_messages(member) for member, _ in members]
        envelopes = [envelope for sent, _ in messages for envelope in sent]
        # One send: every member's PENDING record is written unless all ignore results.
        recorded = any(send_options is None or not send_options.ignore_result
                       for _, send_options in messages)
        producer.send(envelopes, record_results=recorded, options=messages[0][1])
        return GroupResult(group_id, [result for _, result in members])

    def apply(self, args: Sequence[Any] | None = None,  # type: ignore[override]
              kwargs: Mapping[str, Any] | None = None, **options: Any) -> GroupResult:
        """Run every member here, one after another (``Task.apply``); return a GroupResult of
        their EagerResults.

        Raises:
            NotRegistered: a member's task is not registered here.
        """
        options = _given(options)
        merged = {**self.options, **options}
        group_id = _group_id(merged)
        members = self._prepared(args, kwargs, merged, group_id)
        return GroupResult(group_id, [member.apply() for member, _ in members])

    def freeze(self, _id: str | None = None, group_id: str | None = None,  # type: ignore[override]  # noqa: PLR0913
               chord: Mapping[str, Any] | None = None, root_id: str | None = None,
               parent_id: str | None = None, group_index: int | None = None) -> GroupResult:
        """Fix the group id (``_id``, else ``group_id``, else a new one; an id it has already
        is kept) and every member's task id now; nested groups are flattened into this one.
        Returns the GroupResult the group will have when it is sent."""
        options = self.options
        gid = options.get("task_id") or _id or group_id or new_task_id()
        options["task_id"] = gid
        members = self.kwargs["tasks"] = [member.clone() for member in _flattened(self.tasks)]
        results = [member.freeze(group_id=gid, chord=chord, root_id=root_id,
                                 parent_id=parent_id, group_index=index)
                   for index, member in enumerate(members)]
        return GroupResult(gid, results)

    _freeze = freeze  # type: ignore[assignment]

    def _prepared(self, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None,
                  options: Mapping[str, Any], group_id: str
                  ) -> list[tuple[Signature, AsyncResult]]:
        """Frozen copies of the members: partial arguments added, options inherited, callbacks
        added, each with the group id and its index; with their results."""
        if options.get("link"):
            raise TypeError("A group takes no link= callback: a task called after the whole "
                            "group is a chord: chord(group, callback) or group | callback.")
        partial = () if self.immutable else (*(args or ()), *self.args)
        prepared = []
        for index, member in enumerate(_flattened(self.tasks)):
            copy = _with_arguments(member, partial, kwargs)
            _inherit(copy, options)
            result = copy.freeze(group_id=group_id, root_id=options.get("root_id"),
                                 parent_id=options.get("parent_id"), group_index=index)
            prepared.append((copy, result))
        return prepared

    # -- building ---------------------------------------------------------------------------

    def link(self, callback: Mapping[str, Any]) -> Mapping[str, Any]:
        """Link ``callback`` (made immutable) to the FIRST member, as Celery does: it runs when
        that one succeeds, not after the whole group (that is a chord). Returns it.

        Raises:
            ValueError: the group is empty.
        """
        if not self.tasks:
            raise ValueError("An empty group has no task to link a callback to.")
        sig = maybe_signature(callback).clone().set(immutable=True)
        return self.tasks[0].link(sig)

    def link_error(self, errback: Mapping[str, Any]) -> tuple[Mapping[str, Any], ...]:  # type: ignore[override]
        """Give every member a copy of ``errback`` (it may then be called more than once).
        Returns the copies."""
        sig = maybe_signature(errback)
        return tuple(task.link_error(sig.clone()) for task in self.tasks)

    def __or__(self, other: Any) -> Signature:  # type: ignore[override]
        """``group | task`` is a chord (the task gets the list of the members' results; each
        member of a group after it does), as in Celery; ``group | group()`` is the group."""
        if not is_signature_dict(other):
            return NotImplemented
        if isinstance(other, group) and not other.tasks:
            return self
        from .chord import chord

        return chord(self, other)

    __ior__ = __or__  # type: ignore[assignment]

    def __ror__(self, other: Any) -> Signature:  # type: ignore[override]
        """``task | group``: a chain that ends in this group (each member is given the task's
        result), as in Celery."""
        if not is_signature_dict(other):
            return NotImplemented
        from .chain import chain

        return chain(other, self)

    # -- views ------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self) -> Iterator[Signature]:  # type: ignore[override]
        return iter(self.tasks)

    def __repr__(self) -> str:
        if not self.tasks:
            return "group(<empty>)"
        return _without_repeated_module(self.tasks[0].task, f"group({self.tasks!r})")


def _flattened(tasks: Iterable[Any]) -> list[Signature]:
    """The members, nested groups replaced by their own members (Celery's unrolling)."""
    flat: list[Signature] = []
    for task in tasks:
        sig = maybe_signature(task)
        flat.extend(_flattened(sig.tasks) if isinstance(sig, group) else [sig])
    return flat


def _with_arguments(member: Signature, partial: Sequence[Any],
                    kwargs: Mapping[str, Any] | None) -> Signature:
    """A copy of ``member`` given the call's arguments (a chain's first step takes them)."""
    if not isinstance(member, chain):
        return member.clone(partial, kwargs)
    copy = member.clone(partial)
    if kwargs and copy.tasks:
        copy.tasks[0] = copy.tasks[0].clone(None, kwargs)
    return copy


def _inherit(member: Signature, options: Mapping[str, Any]) -> None:
    own_timing = TIMING.intersection(member.options)
    for key, value in options.items():
        if key in NOT_INHERITED or (own_timing and key in TIMING):
            continue
        member.options.setdefault(key, value)
    for errback in as_list(options.get("link_error")):
        member.link_error(maybe_signature(errback).clone())


def _messages(member: Signature) -> tuple[list[Envelope], SendOptions | None]:
    """The checked, encoded messages of one frozen member: one (a chain: its first step,
    carrying the rest, the last of which is in the group), or a chord's header tasks."""
    if member.subtask_type == "chord":
        from .dispatch import envelopes_for

        return envelopes_for(plain(member), (), current_request()), None
    if isinstance(member, chain):
        steps = member.unchain_tasks()
        if not steps:
            raise ValueError("An empty chain has no tasks to send.")
        rest = [plain(step) for step in reversed(steps[1:])]
        member = steps[0]
        if rest:
            member.options["chain"] = rest
    options = dict(member.options)
    task_id = options.pop("task_id")
    task = member._task_here()
    args, kwargs = arguments(task, member.args, member.kwargs)
    send_options = resolve(member.task, task, args, kwargs, options)
    return [producer.envelope_for(member.task, task_id, args, kwargs, send_options)], send_options


def _group_id(options: dict[str, Any]) -> str:
    """The group's id: its frozen id (``task_id``), else a ``group_id`` option, else new."""
    return str(options.pop("task_id", None) or options.get("group_id") or new_task_id())


def _given(options: dict[str, Any]) -> dict[str, Any]:
    """The call's options, without unset ones and Celery's producer arguments."""
    for ignored in ("add_to_parent", "producer"):
        options.pop(ignored, None)
    return {key: value for key, value in options.items() if value is not None}


def _stepped(start: float, stop: float | None, step: float) -> Iterator[float]:
    """``start``, ``start + step``... while not past ``stop``, then the last one for ever
    (Celery's ``fxrange(..., repeatlast=True)``)."""
    current = float(start)
    while True:
        if not stop or current <= stop:
            yield current
            current += step
        else:
            yield current - step


def _is_list(value: Any) -> bool:
    """An iterable of tasks, not one task (a dict) or a name."""
    return isinstance(value, Iterable) and not isinstance(value, (str, bytes, Mapping))

