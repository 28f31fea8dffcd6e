"""What a finished task sends on: its callbacks and the next step of its chain (after a success),
its errbacks (after a failure), as Celery's tracer does with the body's embedded fields.

The messages are built where the task ran and travel on its Outcome (``follow_ups``); the worker
sends them when it settles the run, with the result and the ack — in one transaction on the
database broker — so a redelivered run never sends them twice there, and a lost worker never
sends them at all before its result is stored.

Errbacks, as in Celery: one whose task takes more than one argument is called here, inline, with
``(request, exc, traceback)``; any other is sent as a task with the failed task's id as its
argument (an immutable one with its own arguments).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from ..calloptions import ACCEPTED, arguments, resolve
from ..exceptions import TaskqError
from ..message import Envelope
from ..producer import envelope_for, new_task_id
from ..registry import registry

logger = logging.getLogger(__name__)


def after_success(request: Any, value: Any) -> tuple[Envelope, ...]:
    """The callbacks (each given ``value``), then the next chain step (given ``value``, and
    the rest of the chain)."""
    sent = [envelope for sig in request.callbacks or ()
            for envelope in _envelopes(sig, (value,), request)]
    chain = list(request.chain or ())
    if chain:
        step = chain.pop()  # stored reversed: the next step is the last
        sent.extend(_envelopes(step, (value,), request, chain=chain or None))
    return tuple(sent)


def _envelopes(sig: Mapping[str, Any], given: Sequence[Any], request: Any,
               chain: list[dict[str, Any]] | None = None) -> list[Envelope]:
    """One message, or one per member of a group (each given ``given``, in its group)."""
    kind = sig.get("subtask_type")
    if kind == "group" and not chain:
        options = sig.get("options") or {}
        group_id = options.get("group_id") or options.get("task_id") or new_task_id()
        members = (sig.get("kwargs") or {}).get("tasks") or ()
        if any(member.get("subtask_type") for member in members):
            raise TaskqError("a group after a task may hold plain task signatures only (nested "
                             "workflows there arrive with the rest of canvas)")
        return [_envelope({**member, "options": {**(member.get("options") or {}),
                                                  "group_id": group_id, "group_index": index}},
                          given, request) for index, member in enumerate(members)]
    if kind in ("group", "chord"):
        raise TaskqError(f"a {kind} followed by more steps makes a chord: chords are not built "
                         "yet (they arrive with the rest of canvas)")
    return [_envelope(sig, given, request, chain=chain)]


def after_failure(request: Any, exc: BaseException, traceback: Any) -> tuple[Envelope, ...]:
    """Inline errbacks are called now; the others become messages (returned)."""
    sent = []
    for sig in request.errbacks or ():
        task = registry.get(sig["task"]) if sig["task"] in registry else None
        if task is not None and _takes_request(task):
            _call_inline(task, sig, request, exc, traceback)
        else:
            sent.append(_envelope(sig, (request.id,), request))
    return tuple(sent)


def _envelope(sig: Mapping[str, Any], given: Sequence[Any], request: Any,
              chain: list[dict[str, Any]] | None = None) -> Envelope:
    """The message for signature dict ``sig``: ``given`` prepended to its arguments unless it
    is immutable, its options (its frozen task id among them), the parent's ids."""
    name = sig["task"]
    args = list(sig.get("args") or ())
    if not sig.get("immutable"):
        args = [*given, *args]
    kwargs = dict(sig.get("kwargs") or {})
    options = dict(sig.get("options") or {})
    task_id = options.pop("task_id", None) or new_task_id()
    options.setdefault("parent_id", request.id)
    options.setdefault("root_id", request.root_id or request.id)
    if chain:
        options["chain"] = chain
    task = registry.get(name) if name in registry else None
    # A Celery client may keep other things in a signature's options: only apply_async's go on.
    options = {key: value for key, value in options.items() if key in ACCEPTED}
    checked, kwargs = arguments(task, args, kwargs)  # they must fit, as delay() checks
    send_options = resolve(name, task, checked, kwargs, options)
    args = list(checked)
    return envelope_for(name, task_id, args, kwargs, send_options)


def _takes_request(task: Any) -> bool:
    """Celery's test for a new-style errback: its function takes more than one argument."""
    try:
        parameters = inspect.signature(task.run).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) > 1 or any(p.kind == p.VAR_POSITIONAL for p in parameters)


def _call_inline(task: Any, sig: Mapping[str, Any], request: Any, exc: BaseException,
                 traceback: Any) -> None:
    try:
        task(request, exc, traceback, *(sig.get("args") or ()), **(sig.get("kwargs") or {}))
    except Exception:  # noqa: BLE001 - a failing errback is logged; the task's failure stands
        logger.exception("errback %s of %s[%s] failed", sig["task"], request.task, request.id)
