"""Celery's task event fields, built from what the worker holds (a Job, an Outcome).

Field names and meanings are Celery's (``celery.events`` and the worker's request), so Flower and
``celery events`` read ours: arguments travel as their repr (``argsrepr``/``kwargsrepr`` when the
caller gave them, ``<sensitive>`` for a sensitive task: sensitive.py), results and exceptions as
short reprs, times as Unix seconds or ISO text.
Every task event also carries ``name``, which Celery sends only with ``task-received``: the stored
history is searchable by name without a join.
"""

from __future__ import annotations

import reprlib
from typing import TYPE_CHECKING, Any

from .. import states

if TYPE_CHECKING:
    from ..message import Envelope
    from ..outcome import Outcome
    from ..worker.job import Job

#: Celery's ``resultrepr_maxsize``: longer reprs are cut.
REPR_MAXSIZE = 1024

_repr = reprlib.Repr()
_repr.maxstring = REPR_MAXSIZE
_repr.maxother = REPR_MAXSIZE
_repr.maxlist = _repr.maxtuple = _repr.maxdict = 50
_repr.maxlevel = 4


def short_repr(value: Any) -> str:
    """A repr cut to ``REPR_MAXSIZE`` characters (never raises)."""
    try:
        text = _repr.repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not stop the event
        text = f"<unrepresentable {type(value).__name__}>"
    return text if len(text) <= REPR_MAXSIZE else text[:REPR_MAXSIZE - 3] + "..."


def received(job: Job) -> dict[str, Any]:
    """``task-received``: the request as the worker accepted it (its arguments as
    sensitive.reprs shows them: an empty argsrepr stays empty)."""
    from ..sensitive import request_reprs

    request = job.request
    argsrepr, kwargsrepr = request_reprs(request)
    return {
        "uuid": request.id, "name": job.task_name, "args": argsrepr, "kwargs": kwargsrepr,
        "root_id": request.root_id, "parent_id": request.parent_id,
        "retries": request.retries,
        "eta": request.eta.isoformat() if request.eta else None,
        "expires": request.expires.isoformat() if request.expires else None,
        "queue": request.delivery_info.get("routing_key"),
    }


def started(job: Job, pid: int | None = None) -> dict[str, Any]:
    """``task-started``: handed to the pool."""
    return {"uuid": job.request.id, "name": job.task_name, "pid": pid}


def sent(envelope: Envelope) -> dict[str, Any]:
    """``task-sent`` (TASK_SEND_SENT_EVENT): what the producer put on the broker."""
    from ..sensitive import reprs

    headers = envelope.headers
    argsrepr, kwargsrepr = reprs(envelope.task_name, headers, (), {})
    return {
        "uuid": envelope.message_id, "name": envelope.task_name,
        "args": argsrepr, "kwargs": kwargsrepr,
        "root_id": headers.get("root_id"), "parent_id": headers.get("parent_id"),
        "retries": headers.get("retries", 0), "eta": headers.get("eta"),
        "expires": headers.get("expires"), "queue": envelope.queue,
        "exchange": "", "routing_key": envelope.queue,
    }


def _payload_text(outcome: Outcome) -> str:
    if outcome.payload is None:
        return "None"
    if outcome.content_type.endswith("json") or outcome.content_type.startswith("text/"):
        text = outcome.payload.decode("utf-8", "replace")
        return text if len(text) <= REPR_MAXSIZE else text[:REPR_MAXSIZE - 3] + "..."
    return f"<{len(outcome.payload)} bytes of {outcome.content_type}>"


def finished(outcome: Outcome) -> tuple[str, dict[str, Any]] | None:
    """The event a settled run sends: ``(type, fields)``, or None (IGNORED: nothing to say)."""
    base: dict[str, Any] = {"uuid": outcome.task_id, "name": outcome.task_name}
    if outcome.state == states.SUCCESS:
        return "task-succeeded", {**base, "result": _payload_text(outcome),
                                  "runtime": outcome.runtime or 0.0}
    if outcome.state == states.RETRY:
        return "task-retried", {**base, "exception": outcome.error or "",
                                "traceback": outcome.traceback or ""}
    if outcome.state == states.REJECTED:
        return "task-rejected", {**base, "requeue": outcome.disposition == "requeue"}
    if outcome.state == states.FAILURE:
        return "task-failed", {**base, "exception": outcome.error or "",
                               "traceback": outcome.traceback or "",
                               "runtime": outcome.runtime}
    if outcome.state == states.REVOKED:
        return "task-revoked", {**base, "terminated": False, "signum": None,
                                "expired": False}
    return None
