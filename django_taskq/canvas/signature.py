"""Signatures: one task call (name, arguments, options) as a dict that can travel in a message.

Celery's ``Signature`` (celery/canvas.py), with its rules: arguments given when it is called are
prepended to its own (kwargs and options merged, the call's winning) unless it is immutable;
``freeze()`` fixes its task id; ``link``/``link_error`` add callbacks; ``|`` makes a chain. It is a
dict underneath, ``{task, args, kwargs, options, subtask_type, immutable}``, which is how a
signature travels in the body's embed (CELERY.md §2.1) and what ``from_dict`` rebuilds it from.
"""

from __future__ import annotations

import builtins
import copy
from collections.abc import Callable, Mapping, MutableSequence, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast, overload

from .. import producer
from ..calloptions import new_task_id
from ..registry import registry
from ..result import AsyncResult, EagerResult
from .fields import Item, args_tuple, as_list, checked, is_signature_dict, kwargs_dict, plain, reprcall

if TYPE_CHECKING:
    from ..task import Task

__all__ = ["Signature", "maybe_signature", "maybe_subtask", "signature", "subtask"]

#: Options a merge keeps once the signature has them (Celery's rule: a task frozen into a group
#: must stay in it, or the group would wait for it for ever).
KEPT_OPTIONS = frozenset({"group_id", "stamped_headers"})
#: Options whose values are signatures (or lists of them).
SIGNATURE_OPTIONS = ("link", "link_error", "chord")

T = TypeVar("T")
S = TypeVar("S", bound="Signature")


class Signature(dict[str, Any]):
    """A task call to make later: ``add.s(2, 3)``, ``signature("proj.add", args=(2, 3))``.

    Args:
        task: a Task, a task name (a task this process does not know is sent by name), or a
            signature dict (copied; the other arguments are then ignored).
        args: positional arguments (a list or tuple); call-time ones are prepended.
        kwargs: keyword arguments; call-time ones are merged over them.
        options: ``apply_async`` options; ``**ex`` are more of them.
        subtask_type: the kind of signature (None for a task; ``"chain"``...).
        immutable: call-time arguments (a parent's result) are ignored.
        type, app: accepted for Celery compatibility (there is one app).
    """

    #: Signature classes by ``subtask_type``, for ``from_dict`` (see ``register_type``).
    TYPES: ClassVar[dict[str, builtins.type[Signature]]] = {}

    task = Item[str]("task", "The task name.")
    args = Item[tuple[Any, ...]]("args", "Positional arguments.")
    kwargs = Item[dict[str, Any]]("kwargs", "Keyword arguments.")
    options = Item[dict[str, Any]]("options", "apply_async options.")
    subtask_type = Item[str | None]("subtask_type", "The kind of signature (None: a task).")
    immutable = Item[bool]("immutable", "Whether call-time arguments are ignored.")
    id = Item[str | None]("options.task_id", "The task id, once frozen.")
    root_id = Item[str | None]("options.root_id", "The workflow's first task id.")
    parent_id = Item[str | None]("options.parent_id", "The id of the task that sent it.")

    def __init__(self, task: Any = None, args: Sequence[Any] | None = None,  # noqa: PLR0913
                 kwargs: Mapping[str, Any] | None = None, options: Mapping[str, Any] | None = None,
                 type: Any = None, subtask_type: str | None = None,  # noqa: A002
                 immutable: bool = False, app: Any = None, **ex: Any) -> None:
        self._type: Task[Any, Any] | None = None
        if isinstance(task, Mapping):
            super().__init__(_normalised(task))
            return
        name = getattr(task, "name", task)
        if not isinstance(name, str) or not name:
            raise TypeError(f"A signature needs a task or a task name, not {task!r}.")
        if name is not task:
            self._type = task
        super().__init__(task=name, args=args_tuple(args), kwargs=kwargs_dict(kwargs),
                         options=_signature_options({**(options or {}), **ex}),
                         subtask_type=subtask_type, immutable=bool(immutable))

    @classmethod
    def register_type(cls, name: str | None = None
                      ) -> Callable[[builtins.type[S]], builtins.type[S]]:
        """Class decorator: ``from_dict`` builds this class for dicts whose ``subtask_type`` is
        ``name`` (default: the class name), as ``@Signature.register_type(name="chain")``."""
        def register(subclass: builtins.type[S]) -> builtins.type[S]:
            cls.TYPES[name or subclass.__name__] = subclass
            return subclass
        return register

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], app: Any = None) -> Signature:
        """The signature a plain dict describes (a chain for ``subtask_type: "chain"``...).

        Raises:
            ValueError: a ``subtask_type`` nobody registered.
            TypeError: ``d`` has no task name or malformed args/kwargs.
        """
        kind = d.get("subtask_type")
        if kind:
            target = cls.TYPES.get(kind)
            if target is None:
                raise ValueError(f"Unknown signature type {kind!r} (known: "
                                 f"{', '.join(sorted(cls.TYPES)) or 'none'}).")
            if target is not cls:
                return target.from_dict(d, app=app)
        return Signature(d)

    # -- calling ----------------------------------------------------------------------------

    def __call__(self, *partial_args: Any, **partial_kwargs: Any) -> Any:
        """Run the task here, now, as a plain function call (no message, no result)."""
        args, kwargs, _ = self._merge(partial_args, partial_kwargs, None)
        return self.type(*args, **kwargs)

    def delay(self, *partial_args: Any, **partial_kwargs: Any) -> AsyncResult:
        """``apply_async`` with star arguments (prepended to the signature's own)."""
        return self.apply_async(partial_args, partial_kwargs)

    def apply_async(self, args: Sequence[Any] | None = None,
                    kwargs: Mapping[str, Any] | None = None, route_name: str | None = None,
                    **options: Any) -> AsyncResult:
        """Send the task: ``args`` prepended to the signature's (unless it is immutable),
        ``kwargs`` and ``options`` merged over its own. A task this process does not know is
        sent by name (``send_task``).

        Raises:
            TypeError, ValueError, SerializationError, BrokerError: as ``Task.apply_async``.
        """
        options = {key: value for key, value in options.items() if value is not None}
        if args or kwargs or options:
            args, kwargs, options = self._merge(args, kwargs, options)
        else:
            args, kwargs, options = self.args, self.kwargs, self.options
        task = self._task_here()
        if task is None:
            return producer.send_task(self.task, args, dict(kwargs), **options)
        return task.apply_async(args, dict(kwargs), **options)

    def apply(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              **options: Any) -> EagerResult:
        """Run the task here through a worker's steps (``Task.apply``), arguments merged as
        ``apply_async`` merges them.

        Raises:
            NotRegistered: the task is not registered in this process.
        """
        options = {key: value for key, value in options.items() if value is not None}
        args, kwargs, options = self._merge(args, kwargs, options)
        return self.type.apply(args, dict(kwargs), **options)

    def __invert__(self) -> Any:
        """``~sig``: send and wait for the value (Celery's shortcut)."""
        return self.apply_async().get()

    def _task_here(self) -> Task[Any, Any] | None:
        if self._type is not None:
            return self._type
        return registry.get(self.task) if self.task in registry else None

    def _merge(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
               options: Mapping[str, Any] | None = None, force: bool = False
               ) -> tuple[tuple[Any, ...], dict[str, Any], dict[str, Any]]:
        """Partial args prepended, kwargs and options merged (the given ones win, but for
        KEPT_OPTIONS); an immutable signature keeps its args and kwargs unless ``force``."""
        own = self.options
        merged = own if options is None else {
            **own, **{key: value for key, value in options.items()
                      if key not in KEPT_OPTIONS or key not in own}}
        if self.immutable and not force:
            return tuple(self.args), self.kwargs, merged
        return ((*args, *self.args) if args else tuple(self.args),
                {**self.kwargs, **kwargs} if kwargs else self.kwargs, merged)

    # -- building ---------------------------------------------------------------------------

    def clone(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              **opts: Any) -> Signature:
        """A copy (options deep-copied), with partial ``args``/``kwargs``/options merged in as
        a call would merge them."""
        if args or kwargs or opts:
            args, kwargs, opts = self._merge(args, kwargs, opts)
        else:
            args, kwargs, opts = self.args, self.kwargs, self.options
        made = Signature.from_dict({
            "task": self.task, "args": tuple(args), "kwargs": dict(kwargs),
            "options": copy.deepcopy(opts), "subtask_type": self.subtask_type,
            "immutable": self.immutable})
        made._type = self._type
        return made

    partial = clone

    def __deepcopy__(self, memo: dict[int, Any]) -> Signature:
        made = memo[id(self)] = self.clone()
        return made

    def freeze(self, _id: str | None = None, group_id: str | None = None,  # noqa: PLR0913
               chord: Mapping[str, Any] | None = None, root_id: str | None = None,
               parent_id: str | None = None, group_index: int | None = None) -> AsyncResult:
        """Fix the task id now (``_id``, else a new one; an id it has already is kept) and
        return its result handle. Sending the signature twice then sends one id twice.

        The other arguments are stored as options (``group_id`` only if it has none).
        """
        options = self.options
        if not options.get("task_id"):
            options["task_id"] = _id or new_task_id()
        if root_id:
            options["root_id"] = root_id
        if parent_id:
            options["parent_id"] = parent_id
        if group_id and "group_id" not in options:
            options["group_id"] = group_id
        if chord:
            options["chord"] = chord
        if group_index is not None:
            options["group_index"] = group_index
        return AsyncResult(options["task_id"], task_name=self.task)

    _freeze = freeze

    def replace(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
                options: Mapping[str, Any] | None = None) -> Signature:
        """A copy whose args, kwargs or options (those given) are replaced, not merged."""
        made = self.clone()
        if args is not None:
            made["args"] = args_tuple(args)
        if kwargs is not None:
            made["kwargs"] = kwargs_dict(kwargs)
        if options is not None:
            made["options"] = _signature_options(options)
        return made

    def set(self, immutable: bool | None = None, **options: Any) -> Signature:  # noqa: A003
        """Set options (``sig.set(queue="q", countdown=10)``); returns the signature itself."""
        if immutable is not None:
            self.set_immutable(immutable)
        self.options.update(options)
        return self

    def set_immutable(self, immutable: bool) -> None:
        """Make the signature ignore (or take) call-time arguments."""
        self.immutable = bool(immutable)

    # -- callbacks --------------------------------------------------------------------------

    def _with_list_option(self, key: str) -> MutableSequence[Any]:
        items: Any = self.options.setdefault(key, [])
        if not isinstance(items, MutableSequence):
            items = self.options[key] = [items]
        return cast("MutableSequence[Any]", items)

    def append_to_list_option(self, key: str, value: T) -> T:
        """Add ``value`` to the list option ``key`` unless it is there already."""
        items = self._with_list_option(key)
        if value not in items:
            items.append(value)
        return value

    def extend_list_option(self, key: str, value: Any) -> None:
        """Add ``value`` (one item or a list of them) to the list option ``key``."""
        self._with_list_option(key).extend(as_list(value))

    def link(self, callback: Mapping[str, Any]) -> Mapping[str, Any]:
        """Send ``callback`` with this task's return value after it succeeds.

        Returns:
            ``callback`` (Celery's, for chaining ``reduce``).
        """
        return self.append_to_list_option("link", checked(callback, "link"))

    def link_error(self, errback: Mapping[str, Any]) -> Mapping[str, Any]:
        """Call ``errback`` when this task fails; returns ``errback``."""
        return self.append_to_list_option("link_error", checked(errback, "link_error"))

    def on_error(self, errback: Mapping[str, Any]) -> Signature:
        """``link_error`` that returns this signature: ``add.s(2).on_error(log.s()).delay(3)``."""
        self.link_error(errback)
        return self

    def flatten_links(self) -> list[Signature]:
        """This signature and, recursively, its callbacks."""
        found: list[Signature] = [self]
        for callback in as_list(self.options.get("link")):
            found.extend(maybe_signature(callback).flatten_links())
        return found

    def __or__(self, other: Any) -> Signature:  # type: ignore[override]
        """``a | b``: the chain of ``a`` then ``b`` (chains are flattened)."""
        if not is_signature_dict(other):
            return NotImplemented
        from .chain import chain

        return chain(self, other)

    __ior__ = __or__  # not dict's in-place merge: a new chain

    # -- views ------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The task name (as ``Task.name``)."""
        return self.task

    @property
    def type(self) -> Task[Any, Any]:
        """The Task this signature calls.

        Raises:
            NotRegistered: no such task in this process.
        """
        return self._type or registry.get(self.task)

    def AsyncResult(self, task_id: str) -> AsyncResult:  # noqa: N802
        """A result handle for ``task_id`` (Celery's ``sig.AsyncResult``)."""
        return AsyncResult(task_id, task_name=self.task)

    def __repr__(self) -> str:
        return reprcall(self.task, self.args, self.kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        return signature, (dict(self),)

    def __json__(self) -> dict[str, Any]:
        return plain(self)


def signature(varies: Any, *args: Any, **kwargs: Any) -> Signature:
    """A signature: a copy of one, the one a dict describes, or ``Signature(varies, ...)``
    for a task or a task name (``signature("proj.add", args=(2, 3), countdown=10)``)."""
    if isinstance(varies, Signature):
        return varies.clone()
    if isinstance(varies, Mapping):
        return Signature.from_dict(varies)
    return Signature(varies, *args, **kwargs)


subtask = signature  # Celery's old name


@overload
def maybe_signature(d: None, app: Any = None, clone: bool = False) -> None: ...
@overload
def maybe_signature(d: Mapping[str, Any], app: Any = None, clone: bool = False) -> Signature: ...


def maybe_signature(d: Mapping[str, Any] | None, app: Any = None,
                    clone: bool = False) -> Signature | None:
    """``d`` as a Signature (a dict from a message is rebuilt; a signature is returned as is,
    or a copy with ``clone``), None for None.

    Raises:
        TypeError: ``d`` is neither a signature nor a signature dict.
    """
    if d is None:
        return None
    if isinstance(d, Signature):
        return d.clone() if clone else d
    if isinstance(d, Mapping):
        return Signature.from_dict(d)
    raise TypeError(f"Expected a signature or a signature dict, not {d!r}.")


maybe_subtask = maybe_signature


def _normalised(d: Mapping[str, Any]) -> dict[str, Any]:
    """A signature dict (from a message, say) with Celery's types: args a tuple, kwargs and
    options dicts, nested signatures in the options rebuilt."""
    if not isinstance(d.get("task"), str) or not d["task"]:
        raise TypeError(f"A signature dict needs a 'task' name, not {d!r}.")
    made = {"task": d["task"], "args": args_tuple(d.get("args")), "kwargs": kwargs_dict(d.get("kwargs")),
            "options": _signature_options(d.get("options") or {}),
            "subtask_type": d.get("subtask_type"), "immutable": bool(d.get("immutable"))}
    for key, value in d.items():
        made.setdefault(key, value)
    return made


def _signature_options(options: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(options, Mapping):
        raise TypeError(f"A signature's options must be a dict, not {options!r}.")
    made = dict(options)
    for key in SIGNATURE_OPTIONS:
        value = made.get(key)
        if isinstance(value, Mapping):
            made[key] = maybe_signature(value)
        elif isinstance(value, (list, tuple)):
            made[key] = [maybe_signature(item) if isinstance(item, Mapping) else item
                         for item in value]
    return made
