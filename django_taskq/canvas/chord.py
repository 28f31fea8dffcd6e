"""Chords: ``chord(header, body)``, a group whose results, in header order, go to one callback.

``chord([add.s(i, i) for i in range(10)])(tsum.s())`` sends the ten header tasks at once (one
producer send) after registering the chord's size with the result backend; each header message
carries the body (``embed.chord``) and its place (``group``/``group_index``), as Celery's do. The
worker that settles the last header task starts the body, exactly once: the count is atomic in
the result store (worker/chords.py). A failing header task fails the body with a ChordError that
names it, and the body's errbacks run. ``group(...) | task`` makes a chord too.

Sending returns the body's AsyncResult; its ``.parent`` is the header's GroupResult.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

from .. import producer
from ..conf import get_settings
from ..context import current_request
from ..result import AsyncResult, EagerResult, allow_join_result
from .chain import first_result
from .dispatch import envelopes_for
from .fields import as_list, is_signature_dict, plain
from .group import _inherit, group
from .signature import Signature, maybe_signature

__all__ = ["chord"]


@Signature.register_type(name="chord")
class chord(Signature):  # noqa: N801 - Celery's name
    """A header group and a body called with the list of the header's results.

    ``chord(header, body)`` or ``chord(header)(body)``; the header may be a group, a list or a
    generator of signatures. Options given to the chord reach the header tasks and the body
    when they do not set their own.
    """

    def __init__(self, header: Any, body: Any = None, task: str = "celery.chord",
                 args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
                 app: Any = None, **options: Any) -> None:
        header_group = header if isinstance(header, group) else group(
            maybe_signature(header) if is_signature_dict(header) else header)
        body_sig = maybe_signature(body) if body is not None else None
        super().__init__(task, tuple(args or ()), {"header": header_group, "body": body_sig,
                                                   "kwargs": dict(kwargs or {})},
                         options, subtask_type="chord")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], app: Any = None) -> chord:
        """The chord a ``{"task": "celery.chord", "kwargs": {"header", "body"}}`` describes."""
        kwargs = d.get("kwargs") or {}
        made = cls(maybe_signature(kwargs.get("header")), kwargs.get("body"),
                   args=d.get("args"), kwargs=kwargs.get("kwargs"), **(d.get("options") or {}))
        made.immutable = bool(d.get("immutable"))
        return made

    @property
    def header(self) -> group:
        """The header group."""
        return cast(group, self.kwargs["header"])

    @property
    def body(self) -> Signature | None:
        """The callback (None until given)."""
        return cast("Signature | None", self.kwargs["body"])

    @property
    def tasks(self) -> list[Signature]:
        """The header's tasks (Celery's ``chord.tasks``)."""
        return self.header.tasks

    def clone(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              **opts: Any) -> chord:
        """A copy of the chord, its header and its body."""
        made = cast(chord, super().clone(args, None, **opts))
        made.kwargs["header"] = self.header.clone()
        made.kwargs["body"] = self.body.clone() if self.body is not None else None
        return made

    # -- sending ----------------------------------------------------------------------------

    def __call__(self, body: Any = None, **options: Any) -> AsyncResult:
        """Send the chord: ``chord(header)(body)``."""
        return self.apply_async((), {"body": body} if body is not None else None, **options)

    def apply_async(self, args: Sequence[Any] | None = None,
                    kwargs: Mapping[str, Any] | None = None, route_name: str | None = None,
                    **options: Any) -> AsyncResult:
        """Register the chord's size, send the header tasks in one send; return the body's
        result (``.parent``: the header's GroupResult). ``args`` go to every header task;
        ``task_id`` names the body. Under TASK_ALWAYS_EAGER it runs here (``apply``).

        Raises:
            TypeError: no body was given, or arguments or options do not fit.
            SerializationError, BrokerError, ResultBackendError: as ``Task.apply_async``.
        """
        options = {key: value for key, value in options.items() if value is not None}
        made = self._with_body(kwargs)
        if get_settings().TASK_ALWAYS_EAGER:
            with allow_join_result():
                return made.apply(args, **options)
        chain_rest = options.pop("chain", None)
        merged = {**made.options, **options}
        if merged.get("group_id"):  # Celery's chord(group_id=): the header's id
            made.header.options.setdefault("task_id", merged.pop("group_id"))
        result = made.freeze(merged.pop("task_id", None))
        made._inherit(merged)
        envelopes = envelopes_for(plain(made), tuple(args or ()), current_request(),
                                  chain=chain_rest)
        if envelopes:
            producer.send(envelopes, record_results=True)
        return result

    def apply(self, args: Sequence[Any] | None = None, kwargs: Mapping[str, Any] | None = None,
              **options: Any) -> EagerResult:
        """Run the header here, then the body with its values (a failing header task raises,
        as Celery's eager chord does)."""
        made = self._with_body(kwargs)
        if not made.immutable:  # its own partial arguments follow the given ones
            args = (*(args or ()), *made.args)
        values = made.header.apply(args, **options).get()
        assert made.body is not None  # _with_body checked it
        return made.body.apply((values,))

    def freeze(self, _id: str | None = None, group_id: str | None = None,  # noqa: PLR0913
               chord: Mapping[str, Any] | None = None, root_id: str | None = None,
               parent_id: str | None = None, group_index: int | None = None) -> AsyncResult:
        """Fix the header's and the body's task ids (``_id`` names the body); return the
        body's result, whose ``.parent`` is the header's GroupResult."""
        if self.body is None:
            raise TypeError(_NO_BODY)
        # ``group_id`` is an outer group's (this chord is its member): the header has its own.
        header_result = self.header.freeze(self.header.options.get("task_id"), root_id=root_id,
                                           parent_id=parent_id)
        result = self.body.freeze(_id or self.options.get("task_id"), group_id=None,
                                  chord=chord, root_id=root_id, group_index=group_index)
        if group_id and group_index is not None:  # the body is what an outer group waits for
            self.body.options["group_id"] = group_id
        first_result(result).parent = header_result
        self.options["task_id"] = result.id
        return result

    _freeze = freeze

    def _with_body(self, kwargs: Mapping[str, Any] | None) -> chord:
        body = (kwargs or {}).get("body") or self.body
        if body is None:
            raise TypeError(_NO_BODY)
        made = self.clone()
        made.kwargs["body"] = maybe_signature(body).clone()
        return made

    def _inherit(self, options: Mapping[str, Any]) -> None:
        """The chord's options to the header tasks and the body (their own options win); its
        callbacks and errbacks to the body only, as Celery links them: an errback runs once,
        for the chord's failure (a header task's included)."""
        shared = {key: value for key, value in options.items()
                  if key not in ("link", "link_error")}
        for member in self.header.tasks:
            _inherit(member, shared)
        assert self.body is not None  # _with_body checked it
        # countdown/eta delay the header; the body starts when the header is done.
        _inherit(self.body, {key: value for key, value in shared.items()
                             if key not in ("countdown", "eta")})
        for callback in as_list(options.get("link")):
            self.body.link(callback)
        for errback in as_list(options.get("link_error")):
            self.body.link_error(errback)

    # -- building ---------------------------------------------------------------------------

    def link(self, callback: Mapping[str, Any]) -> Mapping[str, Any]:
        """Link ``callback`` to the body (it runs after the body)."""
        if self.body is None:
            raise TypeError(_NO_BODY)
        return self.body.link(callback)

    def link_error(self, errback: Mapping[str, Any]) -> Mapping[str, Any]:
        """Link ``errback`` to the body: it runs when the chord fails (a header task's failure
        included) or the body does."""
        if self.body is None:
            raise TypeError(_NO_BODY)
        return self.body.link_error(errback)

    def __len__(self) -> int:
        return len(self.header)

    def __repr__(self) -> str:
        return f"chord({self.header.tasks!r}, {self.body!r})"


_NO_BODY = ("A chord needs a body (the callback given the header's results): "
            "chord(header, body) or chord(header)(body).")

