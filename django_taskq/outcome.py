"""The result of executing one message, as the worker hands it to the result backend."""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from . import exceptions, serializers, states

if TYPE_CHECKING:
    from .message import Envelope


@dataclass(frozen=True, slots=True)
class RetryOrder:
    """A run that ended in RETRY: send the message again at ``eta`` with ``retries + 1``,
    with new arguments when they are not None."""

    eta: datetime | None
    args: tuple[Any, ...] | None = None
    kwargs: dict[str, Any] | None = None
    #: ``self.retry(queue=, priority=, headers=)``.
    options: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one task: its final (or RETRY) state and encoded result.

    ``args``, ``kwargs`` and ``queue`` are the extended result fields (RESULT_EXTENDED): None
    when not recorded. The backends encode the arguments as they encode the result.
    """

    task_id: str
    task_name: str
    state: str
    payload: bytes | None = None
    content_type: str = "application/json"
    content_encoding: str = "utf-8"
    traceback: str | None = None
    error: str | None = None
    date_started: datetime | None = None
    date_done: datetime | None = None
    worker: str = ""
    retries: int = 0
    ignore_result: bool = False
    retry: RetryOrder | None = None
    args: tuple[Any, ...] | list[Any] | str | None = None  # str: hidden (sensitive.py)
    kwargs: dict[str, Any] | str | None = None
    queue: str | None = None
    #: How the worker settles the message: "ack", or "dead_letter"/"requeue" with ``reason``
    #: (Celery's ``Reject``; ``acks_on_failure_or_timeout=False`` dead-letters failures).
    disposition: str = "ack"
    reason: str | None = None
    #: A failure the task declared with ``throws``: logged without its traceback.
    expected: bool = False
    #: Messages the run sends on when it is settled: callbacks, the next chain step, errbacks
    #: sent as tasks (worker/followups.py).
    follow_ups: tuple[Envelope, ...] = ()
    #: The chord body of a group member, from its request ({} when it is in no chord; None
    #: when not known here: the worker then reads it from the message).
    chord: dict[str, Any] | None = None
    #: A failed run's chain rest, reversed, from its request ([] when none; None when not
    #: known here: the worker then reads it from the message). Its tasks fail too.
    chain: list[dict[str, Any]] | None = None
    #: Where the sender wants its result sent, from the message's ``reply_to`` and
    #: ``correlation_id`` properties (the rpc:// result backend publishes it there).
    reply_to: str = ""
    correlation_id: str = ""
    #: The live exception of an eager run (never set in a worker: it may not pickle).
    exception: BaseException | None = field(default=None, compare=False)

    @property
    def runtime(self) -> float | None:
        """Seconds the task ran, when both ends are known."""
        if self.date_started and self.date_done:
            return (self.date_done - self.date_started).total_seconds()
        return None


def exception_payload(exc: BaseException) -> dict[str, Any]:
    """How a failure is stored: Celery's ``{exc_type, exc_message, exc_module}`` shape.

    A RemoteTaskError a task let through (from ``get()`` on another task) is stored as the
    remote type it stands for, so it reads back the same, not nested in a second one.
    """
    if isinstance(exc, exceptions.RemoteTaskError):
        return {"exc_type": exc.exc_type, "exc_message": [exc.message],
                "exc_module": exc.exc_module}
    args = exc.args if all(_plain(a) for a in exc.args) else tuple(str(a) for a in exc.args)
    if not args and str(exc):  # an exception that keeps its message elsewhere (pydantic's)
        args = (str(exc),)
    return {"exc_type": type(exc).__name__, "exc_message": list(args),
            "exc_module": type(exc).__module__}


#: Exceptions raised from ``get()`` inside a task steer that task (retry, reject, ignore,
#: replace): stored data must never choose them.
_CONTROL_FLOW = (exceptions.Retry, exceptions.Reject, exceptions.Ignore)


def _classes(module: Any, base: type[Exception]) -> dict[tuple[str, str], type[Exception]]:
    return {(module.__name__, name): cls for name, cls in vars(module).items()
            if isinstance(cls, type) and issubclass(cls, base)
            and not issubclass(cls, _CONTROL_FLOW) and cls.__module__ == module.__name__}


#: Celery's classes that have a namesake here, by the module Celery stores: a failure a Celery
#: worker stored (a revocation, a time limit) is caught as ours.
_CELERY_NAMESAKES = {
    "celery.exceptions": ("TaskRevokedError", "MaxRetriesExceededError", "ChordError",
                          "TimeoutError", "NotRegistered"),
    "billiard.exceptions": ("SoftTimeLimitExceeded", "TimeLimitExceeded", "WorkerLostError"),
}

#: The only classes a stored failure is rebuilt as, keyed by ``(exc_module, exc_type)``: fixed
#: here from the code, never looked up by a name the data gives (promise 7). Builtins keep
#: ``except ValueError`` working; django_taskq's own keep ``except TaskRevokedError``.
REBUILT_EXCEPTIONS: Mapping[tuple[str, str], type[Exception]] = MappingProxyType({
    **_classes(builtins, Exception), **_classes(exceptions, exceptions.TaskqError),
    **{(module, name): getattr(exceptions, name)
       for module, names in _CELERY_NAMESAKES.items() for name in names}})


def rebuild_exception(value: Any, traceback: str | None = None) -> BaseException:
    """Turn a stored failure back into an exception, as data: nothing it names is imported,
    looked up or called but the classes of ``REBUILT_EXCEPTIONS``.

    Any other type (the task's own, or a name a hostile writer chose) comes back as
    ``RemoteTaskError`` carrying the remote type's name, module and message. An eager run's
    result holds the live exception, which is returned as it is.
    """
    if isinstance(value, BaseException):
        return value
    if not isinstance(value, Mapping) or "exc_type" not in value:
        return exceptions.RemoteTaskError("Exception", "", repr(value))
    name, module = str(value["exc_type"]), str(value.get("exc_module") or "")
    args = value.get("exc_message") or []
    args = args if isinstance(args, (list, tuple)) else [args]
    cls = REBUILT_EXCEPTIONS.get((module, name))
    if cls is not None:
        try:
            return cls(*args)
        except Exception:  # noqa: BLE001 - arguments its constructor refuses: the generic error
            pass
    return exceptions.RemoteTaskError(name, module, " ".join(str(a) for a in args), traceback)


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def reply_address(request: Any) -> dict[str, Any]:
    """The Outcome fields saying where ``request``'s sender wants its result (rpc://)."""
    return {"reply_to": request.reply_to or "",
            "correlation_id": request.correlation_id or request.id or ""}


def envelope_address(envelope: Any) -> dict[str, Any]:
    """The Outcome fields saying where the sender of ``envelope`` (a message settled without
    running, e.g. rejected or dead-lettered) wants its result (rpc://)."""
    properties = envelope.properties or {}
    return {"reply_to": properties.get("reply_to") or "",
            "correlation_id": properties.get("correlation_id") or envelope.message_id or ""}


def failure(task_id: str, task_name: str, exc: BaseException, *, traceback: str | None = None,
            state: str = states.FAILURE, serializer: str = "json", **fields: Any) -> Outcome:
    """An Outcome for a task that failed (or was revoked) with ``exc``."""
    payload, content_type, encoding = serializers.dumps(exception_payload(exc), serializer)
    return Outcome(task_id=task_id, task_name=task_name, state=state, payload=payload,
                   content_type=content_type, content_encoding=encoding, traceback=traceback,
                   error=f"{type(exc).__name__}: {exc}", **fields)
