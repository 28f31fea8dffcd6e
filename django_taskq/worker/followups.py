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
from collections.abc import Mapping
from typing import Any

from ..canvas.dispatch import envelopes_for
from ..message import Envelope
from ..registry import registry

logger = logging.getLogger(__name__)


def after_success(request: Any, value: Any) -> tuple[Envelope, ...]:
    """The callbacks (each given ``value``), then the next chain step (given ``value``, and
    the rest of the chain)."""
    sent = [envelope for sig in request.callbacks or ()
            for envelope in envelopes_for(sig, (value,), request)]
    chain = list(request.chain or ())
    if chain:
        step = chain.pop()  # stored reversed: the next step is the last
        sent.extend(envelopes_for(step, (value,), request, chain=chain or None))
    return tuple(sent)


def after_failure(request: Any, exc: BaseException, traceback: Any) -> tuple[Envelope, ...]:
    """Inline errbacks are called now; the others become messages (returned)."""
    sent = []
    for sig in request.errbacks or ():
        task = registry.get(sig["task"]) if sig["task"] in registry else None
        if task is not None and _takes_request(task):
            _call_inline(task, sig, request, exc, traceback)
        else:
            sent.extend(envelopes_for(sig, (request.id,), request))
    return tuple(sent)


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
