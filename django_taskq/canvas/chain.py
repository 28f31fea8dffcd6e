"""Chains: ``a | b | c`` or ``chain(a, b, c)``, each task given the result of the one before.

Sending a chain sends only its first task. The other steps travel in that message's ``chain``
embed as plain signature dicts in REVERSE order (the worker pops the next step off the end),
each with its task id fixed up front, so the caller gets the last task's result at once, with
``.parent`` links back to the first (Celery's ``prepare_steps``; CELERY.md §2.1).

Unlike Celery, whose chain options reach only the first message, a chain's options (``queue``,
``priority``, ``headers``...) are given to every step that does not set its own; ``countdown``
and ``eta`` still delay only the start of the chain.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from ..conf import get_settings
from ..context import current_request
from ..result import AsyncResult, EagerResult, allow_join_result
from .composite import Composite
from .fields import as_list, plain
from .signature import Signature, maybe_signature

__all__ = ["chain"]

#: Options of a chain that its steps do not inherit: each step has its own identity, and the
#: chain's callbacks and place in a workflow are given to the right step by the chain itself.
NOT_INHERITED = frozenset({"task_id", "link", "link_error", "chain", "chord", "group_id",
                           "group_index", "root_id", "parent_id", "replaced_task_nesting"})
#: Options about the start of the chain (or the first call's arguments): first step only.
FIRST_STEP_ONLY = frozenset({"countdown", "eta", "shadow", "argsrepr", "kwargsrepr",
                             "correlation_id",
                             "MessageDeduplicationId"})  # SQS FIFO: else it drops the others


@Signature.register_type(name="chain")
class chain(Composite):  # noqa: N801 - Celery's name
    """Tasks run one after another, each given the previous one's return value as its first
    argument (unless it is immutable): ``chain(add.s(2, 2), add.s(4), add.s(8))``.

    ``chain([a, b])`` and generators work too; nested chains are flattened (their options go to
    their steps). Calling or sending it returns the LAST task's AsyncResult; ``.parent`` leads
    back to the first. Options given here or to ``apply_async`` apply to every step that does
    not set its own; ``link`` callbacks go to the last step, ``link_error`` to every step.
    """

    def __init__(self, *tasks: Any, **options: Any) -> None:
        given: Iterable[Any] = tasks[0] if len(tasks) == 1 and _is_list(tasks[0]) else tasks
        steps = _chords_made([step for task in given for step in _steps_of(task)])
        super().__init__("celery.chain", (), {"tasks": steps}, options, subtask_type="chain")

    def clone(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              **opts: Any) -> chain:
        """A copy of the chain and of each of its steps."""
        made = cast("chain", super().clone(args, kwargs, **opts))
        made.kwargs["tasks"] = [task.clone() for task in made.tasks]
        return made

    def __call__(self, *args: Any, **kwargs: Any) -> AsyncResult:
        """Send the chain (Celery's ``chain(...)()``), ``args`` prepended to the first step's."""
        return self.apply_async(args, kwargs)

    # -- sending ----------------------------------------------------------------------------

    def apply_async(self, args: Sequence[Any] | None = None,
                    kwargs: Mapping[str, Any] | None = None, route_name: str | None = None,
                    **options: Any) -> AsyncResult:
        """Send the first task, carrying the rest; return the last task's result.

        ``args``/``kwargs`` go to the first step; ``task_id`` names the last task. Under
        TASK_ALWAYS_EAGER the chain runs here (``apply``), as in Celery.

        Raises:
            ValueError: the chain is empty.
            TypeError, SerializationError, BrokerError: as ``Task.apply_async``.
        """
        options = {key: value for key, value in options.items() if value is not None}
        if get_settings().TASK_ALWAYS_EAGER:
            with allow_join_result():
                return self.apply(args, kwargs, **options)
        merged = _replying({**self.options, **options})
        steps = self._prepared(args, kwargs, merged)
        results = _freeze_steps(steps, root_id=merged.get("root_id"),
                                parent_id=merged.get("parent_id"), group_id=merged.get("group_id"),
                                chord=merged.get("chord"), group_index=merged.get("group_index"))
        # Reversed: the worker pops the next step off the end. A chain sent as the step of an
        # outer chain carries that chain's rest ("chain" option): ours runs first.
        rest = [*(merged.get("chain") or ()), *(plain(step) for step in reversed(steps[1:]))]
        sent = steps[0].apply_async(chain=rest or None)
        return sent if len(steps) == 1 else results[-1]

    def apply(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              **options: Any) -> EagerResult:
        """Run the steps here, one after the other (``Task.apply``), each given the previous
        value (immutable steps are not); stops at a step that does not succeed. Returns the
        last result run, with ``.parent`` links.

        Raises:
            ValueError: the chain is empty.
            NotRegistered: a step's task is not registered here.
        """
        options = {key: value for key, value in options.items() if value is not None}
        last: EagerResult | None = None
        for step in self._prepared(args, kwargs, {**self.options, **options}):
            result = step.apply((last.get(),) if last is not None else None)
            result.parent = last
            last = result
            if not result.successful():  # a group's result (the last step) has no one state
                break
        assert last is not None  # _prepared refuses an empty chain
        return last

    def freeze(self, _id: str | None = None, group_id: str | None = None,  # noqa: PLR0913
               chord: Mapping[str, Any] | None = None, root_id: str | None = None,
               parent_id: str | None = None, group_index: int | None = None) -> AsyncResult:
        """Fix every step's task id now (``_id`` names the last); return the last task's
        result, with ``.parent`` links. The steps keep their ids when the chain is sent."""
        steps = self.kwargs["tasks"] = [step for task in self.tasks for step in _steps_of(task)]
        if not steps:
            raise ValueError("An empty chain has no tasks to freeze.")
        if _id or self.id:
            steps[-1].freeze(_id or self.id)
        results = _freeze_steps(steps, root_id=root_id, parent_id=parent_id, group_id=group_id,
                                chord=chord, group_index=group_index)
        self.id = results[-1].id
        return results[-1]

    def unchain_tasks(self) -> list[Signature]:
        """Copies of the steps as they run: the chain's options given to each, its ``link``
        callbacks to the last and its ``link_error`` errbacks to all (Celery's method)."""
        return self._prepared(None, None, self.options, allow_empty=True)

    def _prepared(self, args: Sequence[Any] | None, kwargs: Mapping[str, Any] | None,
                  options: Mapping[str, Any], allow_empty: bool = False) -> list[Signature]:
        """Copies of the steps with the call's partial arguments on the first, the options
        inherited, the callbacks placed, ``task_id`` given to the last."""
        steps = [step.clone() for task in self.tasks for step in _steps_of(task)]
        if not steps:
            if allow_empty:
                return steps
            raise ValueError("An empty chain has no tasks to send.")
        partial = tuple(self.args) if self.immutable else (*(args or ()), *self.args)
        steps[0] = steps[0].clone(partial, kwargs)
        for index, step in enumerate(steps):
            _inherit(step, options, first=index == 0)
        for callback in as_list(options.get("link")):
            steps[-1].link(callback)
        for errback in as_list(options.get("link_error")):
            for step in steps:
                step.link_error(errback)
        if options.get("task_id"):
            steps[-1].options.setdefault("task_id", options["task_id"])
        return steps

    def __repr__(self) -> str:
        if not self.tasks:
            return f"<chain@{id(self):#x}: empty>"
        text = " | ".join(repr(task) for task in self.tasks)
        return _without_repeated_module(self.tasks[0].task, text)


def _freeze_steps(steps: list[Signature], *, root_id: str | None, parent_id: str | None,  # noqa: PLR0913
                  group_id: str | None, chord: Any, group_index: int | None
                  ) -> list[AsyncResult]:
    """Freeze every step (the workflow's root id in each; the group and chord on the last, which
    is the one a group waits for) and link each result to the previous one."""
    first_id = steps[0].freeze(parent_id=parent_id).id
    root = root_id or _running_root() or first_id
    results: list[AsyncResult] = []
    for index, step in enumerate(steps):
        last = index == len(steps) - 1
        result = step.freeze(root_id=root, group_id=group_id if last else None,
                             chord=chord if last else None,
                             group_index=group_index if last else None)
        previous = results[-1] if results else None
        if previous is not None:  # a chord's result leads to its header first: link that
            first_result(result).parent = previous
        results.append(result)
    return results


def first_result(result: Any) -> Any:
    """The first of ``result``'s parent links (``result`` itself for a lone task)."""
    while result.parent is not None:
        result = result.parent
    return result


def _running_root() -> str | None:
    """The root id of the task this chain is sent from (Celery's root for sub-workflows)."""
    request = current_request()
    if request is None or not request.id:
        return None
    return request.root_id or request.id


def _inherit(step: Signature, options: Mapping[str, Any], first: bool) -> None:
    for key, value in options.items():
        if key in NOT_INHERITED or (key in FIRST_STEP_ONLY and not first):
            continue
        step.options.setdefault(key, value)


def _chords_made(steps: list[Signature]) -> list[Signature]:
    """A group followed by a step becomes a chord with that step as its body (the step waits
    for every member and gets the list of their results; a group step's members each get
    it), as Celery upgrades it."""
    from .chord import chord
    from .group import group

    made: list[Signature] = []
    for step in steps:
        if made and isinstance(made[-1], group):
            made[-1] = chord(made[-1], step)
        else:
            made.append(step)
    return made


def _steps_of(task: Any) -> list[Signature]:
    sig = maybe_signature(task)
    if isinstance(sig, chain):
        return sig.unchain_tasks()
    return [sig]


def _is_list(value: Any) -> bool:
    """Celery's ``is_list``: an iterable of tasks, not one task (a dict) or a name."""
    return isinstance(value, Iterable) and not isinstance(value, (str, bytes, Mapping))


def _without_repeated_module(first_name: str, text: str) -> str:
    """``proj.add(2, 2) | mul(4)``: the first task's module prefix shown once (Celery's repr)."""
    module = first_name.rpartition(".")[0] + "."
    index = text.find(module)
    if index < 0:
        return text
    cut = index + len(module)
    return text[:cut] + text[cut:].replace(module, "")


def _replying(options: dict[str, Any]) -> dict[str, Any]:
    """With results on rpc://, every step names this process's reply queue (Celery's freeze
    gives each its ``reply_to``): the steps the worker sends on reply here too."""
    if options.get("reply_to"):
        return options
    from ..results import get_backend

    address = get_backend().reply_address()
    return options if address is None else {**options, "reply_to": address}
