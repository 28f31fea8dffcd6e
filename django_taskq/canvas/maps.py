"""``task.map(items)``, ``task.starmap(items)``, ``task.chunks(items, n)``: Celery's ``xmap``,
``xstarmap`` and ``chunks``.

A map is ONE message (task ``celery.map`` / ``celery.starmap``, kwargs ``{"task": <signature>,
"it": [...]}``) whose worker runs the task for each item in turn, in its own process (not in
parallel): the built-in tasks of ``django_taskq/tasks.py``, named as Celery's so that a Celery
client's maps run on our workers too. ``chunks`` cuts the items into parts of ``n``, each a
``starmap``, and sends them as a group (Celery's ``celery.chunks`` message does the same).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from ..producer import send_task
from ..registry import registry
from ..result import AsyncResult
from .signature import Signature, maybe_signature


def _inner(sig: Any) -> Signature:
    inner = maybe_signature(sig)
    if not isinstance(inner, Signature):
        raise TypeError(f"a map needs a task signature (task.s()), not {sig!r}")
    return inner


def _queue_of(inner: Signature) -> dict[str, Any]:
    """The map message goes where its task would (Celery routes it by the task's name)."""
    options = dict(inner.options)
    if "queue" not in options and inner.task in registry:
        queue = registry.get(inner.task).options.queue
        if queue:
            options["queue"] = queue
    return {key: options[key] for key in ("queue", "priority") if options.get(key) is not None}


class _BaseMap(Signature):
    map_task = ""

    def __init__(self, task: Any, it: Iterable[Any], **options: Any) -> None:
        super().__init__(self.map_task, (), {"task": dict(_inner(task)), "it": list(it)},
                         options, immutable=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], app: Any = None) -> Any:
        kwargs = d.get("kwargs") or {}
        return cls(kwargs["task"], kwargs.get("it") or (), **(d.get("options") or {}))

    def apply_async(self, args: Sequence[Any] | None = None,
                    kwargs: Mapping[str, Any] | None = None, route_name: str | None = None,
                    **options: Any) -> AsyncResult:
        """Send the one message (call-time arguments are not taken: a map is immutable)."""
        inner = _inner(self.kwargs["task"])
        given = {**_queue_of(inner), **self.options, **options}
        return send_task(self.map_task, (), {"task": dict(inner), "it": list(self.kwargs["it"])},
                         **given)


@Signature.register_type(name="xmap")
class xmap(_BaseMap):  # noqa: N801 - Celery's name
    """``[task(x) for x in it]`` in one worker, as one message."""

    map_task = "celery.map"

    def __repr__(self) -> str:
        return f"[{self.kwargs['task']['task']}(x) for x in {self.kwargs['it']!r:.100}]"


@Signature.register_type(name="xstarmap")
class xstarmap(_BaseMap):  # noqa: N801 - Celery's name
    """``[task(*x) for x in it]`` in one worker, as one message."""

    map_task = "celery.starmap"

    def __repr__(self) -> str:
        return f"[{self.kwargs['task']['task']}(*x) for x in {self.kwargs['it']!r:.100}]"


@Signature.register_type(name="chunks")
class chunks(Signature):  # noqa: N801 - Celery's name
    """The items cut into parts of ``n``, each part one ``starmap`` message, sent as a group."""

    def __init__(self, task: Any, it: Iterable[Any], n: int, **options: Any) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"chunks needs a part size n of at least 1, not {n!r}")
        super().__init__("celery.chunks", (), {"task": dict(_inner(task)), "it": list(it),
                                               "n": n}, options, immutable=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], app: Any = None) -> Any:
        kwargs = d.get("kwargs") or {}
        return cls(kwargs["task"], kwargs.get("it") or (), kwargs["n"],
                   **(d.get("options") or {}))

    def group(self) -> Any:
        """The group of ``starmap`` signatures, one per part."""
        from .group import group

        inner = self.kwargs["task"]
        return group([xstarmap(inner, part) for part in parts(self.kwargs["it"],
                                                               self.kwargs["n"])])

    def __call__(self, **options: Any) -> Any:
        return self.apply_async(**options)

    def apply_async(self, args: Sequence[Any] | None = None,
                    kwargs: Mapping[str, Any] | None = None, route_name: str | None = None,
                    **options: Any) -> Any:
        """Send the parts as a group; returns its GroupResult."""
        return self.group().apply_async(None, None, **{**self.options, **options})

    def apply(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              **options: Any) -> Any:
        return self.group().apply(None, None, **{**self.options, **options})


def parts(items: Iterable[Any], n: int) -> Iterator[list[Any]]:
    """``items`` in lists of ``n`` (the last may be shorter)."""
    iterator = iter(items)
    while part := list(itertools.islice(iterator, n)):
        yield part
