"""The canvas methods of a task: ``s``, ``si``, ``signature``, ``map``, ``starmap``, ``chunks``
(a mixin of :class:`~django_taskq.task.Task`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from .maps import chunks, xmap, xstarmap
from .signature import Signature, signature


class CanvasMethods:
    """Celery's signature shortcuts on a task."""

    def signature(self, args: Sequence[Any] | None = None, *starargs: Any,
                  **options: Any) -> Signature:
        """A signature of this task: ``(args, kwargs, **options)``, as ``Signature`` takes."""
        return signature(self, args, *starargs, **options)

    subtask = signature  # Celery's old name

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """``add.s(2)``: a signature; arguments given when it is called are prepended."""
        return self.signature(args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """An immutable signature: a chain does not pass it the previous task's value."""
        return self.signature(args, kwargs, immutable=True)

    def map(self, it: Iterable[Any]) -> xmap:
        """One message that runs this task for each item, in order, in one worker:
        ``add_one.map([1, 2, 3])`` → ``[2, 3, 4]``."""
        return xmap(self.s(), it)

    def starmap(self, it: Iterable[Sequence[Any]]) -> xstarmap:
        """As ``map``, each item being the task's arguments: ``add.starmap([(1, 2), (3, 4)])``."""
        return xstarmap(self.s(), it)

    def chunks(self, it: Iterable[Sequence[Any]], n: int) -> chunks:
        """``it`` (argument tuples) cut into parts of ``n``, each part one ``starmap`` message,
        sent as a group: ``add.chunks(zip(xs, ys), 10)``."""
        return chunks(self.s(), it, n)
