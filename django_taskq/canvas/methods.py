"""The canvas methods of a task: ``s``, ``si``, ``signature``, ``map``, ``starmap``, ``chunks``,
``replace`` (a mixin of :class:`~django_taskq.task.Task`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from ..exceptions import Replaced, TaskqError
from .dispatch import envelopes_for, take_place, with_errbacks
from .fields import as_list, plain
from .maps import chunks, xmap, xstarmap
from .signature import Signature, maybe_signature, signature


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

    def replace(self, sig: Any) -> Any:
        """End the running task and put ``sig`` in its place (Celery's ``self.replace``).

        The replacement's result task (a chain's last step, a chord's body; a group is made a
        chord whose body collects the members' results) takes this task's id, its place in a
        group or chord, its callbacks and errbacks, its ``reply_to`` (rpc://: the caller gets the
        replacement's result; Celery's goes to the worker's own reply queue), and the rest of its
        chain; its messages are sent when this run is settled. Raises ``Ignore`` (this run
        stores no result); under eager execution the replacement runs here and its value is
        returned.

        Raises:
            TaskqError: called outside a running task.
        """
        from .chord import chord
        from .group import group

        request = getattr(self, "request", None)
        if request is None or not request.id:
            raise TaskqError("replace() puts a signature in place of the running task: call "
                             "it inside the task (bind=True), as self.replace(sig).")
        replacement = maybe_signature(sig).clone()
        if isinstance(replacement, group):
            replacement = chord(replacement, signature("celery.accumulate", kwargs={"index": 0}))
        if request.is_eager:
            return replacement.apply().get()
        place: dict[str, Any] = {"task_id": request.id}
        if request.group:
            place.update(group_id=request.group, group_index=request.group_index)
        if request.chord:
            place["chord"] = request.chord
        if request.callbacks:
            place["link"] = as_list(request.callbacks)
        if request.reply_to:  # rpc://: its result goes to this task's caller
            place["reply_to"] = request.reply_to
        placed = take_place(plain(replacement), place)
        if request.errbacks:
            placed = with_errbacks(placed, as_list(request.errbacks))
        raise Replaced(envelopes_for(placed, (), request, chain=list(request.chain or ()) or None))
