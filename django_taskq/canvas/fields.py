"""The fields of a signature dict: checked values, attribute access, the repr, the plain form.

A signature is a dict ``{task, args, kwargs, options, subtask_type, immutable}`` (CELERY.md §2.1);
these helpers know its shape without knowing the Signature class, so chain, group and chord
can share them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Generic, TypeVar, overload

__all__ = ["Item", "args_tuple", "as_list", "checked", "is_signature_dict", "kwargs_dict",
           "plain", "reprcall", "steps_of"]

T = TypeVar("T")


class Item(Generic[T]):
    """A key of the signature dict as an attribute; ``options.task_id`` is a key of its options
    (Celery's ``getitem_property``)."""

    def __init__(self, path: str, doc: str) -> None:
        *self.outer, self.key = path.split(".")
        self.__doc__ = doc

    def _mapping(self, sig: dict[str, Any]) -> dict[str, Any]:
        mapping = sig
        for key in self.outer:
            mapping = mapping[key]
        return mapping

    @overload
    def __get__(self, sig: None, owner: Any = None) -> Item[T]: ...
    @overload
    def __get__(self, sig: dict[str, Any], owner: Any = None) -> T: ...

    def __get__(self, sig: dict[str, Any] | None, owner: Any = None) -> T | Item[T]:
        if sig is None:
            return self
        value: T = self._mapping(sig).get(self.key)  # type: ignore[assignment]
        return value

    def __set__(self, sig: dict[str, Any], value: T) -> None:
        self._mapping(sig)[self.key] = value


def reprcall(name: str, args: Iterable[Any], kwargs: Mapping[str, Any]) -> str:
    """``proj.add(2, y=3)``: a call as Python code shows it (Celery's signature repr)."""
    parts = [_safe_repr(arg) for arg in args]
    parts += [f"{key}={_safe_repr(value)}" for key, value in kwargs.items()]
    return f"{name}({', '.join(parts)})"


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not break the signature's
        return f"<{type(value).__name__} object (repr failed)>"


def plain(sig: Mapping[str, Any]) -> dict[str, Any]:
    """The signature as plain, JSON-ready data: what a message's embed carries (signatures
    nested in its args, kwargs and options plain too; other keys, e.g. ``chord_size``, kept)."""
    made = {"task": sig["task"], "args": [_plain_value(arg) for arg in sig.get("args") or ()],
            "kwargs": {key: _plain_value(value) for key, value in (sig.get("kwargs") or {}).items()},
            "options": {key: _plain_value(value)
                        for key, value in (sig.get("options") or {}).items()},
            "subtask_type": sig.get("subtask_type"), "immutable": bool(sig.get("immutable"))}
    for key, value in sig.items():
        made.setdefault(key, value)
    return made


def _plain_value(value: Any) -> Any:
    """Signature objects (they have Celery's ``__json__``) made plain; anything else as is."""
    if isinstance(value, Mapping) and callable(getattr(value, "__json__", None)):
        return plain(value)
    if isinstance(value, (list, tuple)) and any(_plain_value(item) is not item for item in value):
        return [_plain_value(item) for item in value]
    return value


def args_tuple(args: Any) -> tuple[Any, ...]:
    """A signature's args: a list or tuple (kept as a tuple, as Celery does)."""
    if args is None:
        return ()
    if not isinstance(args, (list, tuple)):
        raise TypeError(f"A signature's args must be a list or tuple, not {args!r}.")
    return tuple(args)


def kwargs_dict(kwargs: Any) -> dict[str, Any]:
    """A signature's kwargs: a mapping, copied."""
    if kwargs is None:
        return {}
    if not isinstance(kwargs, Mapping):
        raise TypeError(f"A signature's kwargs must be a dict, not {kwargs!r}.")
    return dict(kwargs)


def as_list(value: Any) -> list[Any]:
    """An option that holds one item or a list of them (``link``), as a list."""
    if not value:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def is_signature_dict(value: Any) -> bool:
    """Whether ``value`` is a signature or a dict shaped like one (it names a task)."""
    return isinstance(value, Mapping) and isinstance(value.get("task"), str)


def checked(sig: Mapping[str, Any], option: str) -> Mapping[str, Any]:
    """``sig``, or a TypeError saying ``option()`` takes a signature."""
    if not is_signature_dict(sig):
        raise TypeError(f"{option}() takes a signature (task.s(...)), not {sig!r}.")
    return sig


def steps_of(chain: Any) -> list[dict[str, Any]]:
    """A message's ``chain`` embed as a list of signature dicts ([] when it is none, or not a
    list of them: what a malformed message carries is not followed)."""
    if not isinstance(chain, list):
        return []
    return [step for step in chain if isinstance(step, dict)]
