"""The one exception hierarchy of django_taskq: everything raised on purpose is a TaskqError."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured


class TaskqError(Exception):
    """Base class of every error django_taskq raises on purpose."""


class ConfigurationError(TaskqError, ImproperlyConfigured):
    """A TASKQ setting is wrong; the message says which and how to fix it."""


class ServiceError(TaskqError):
    """A broker, result backend or control store failed; the worker backs off and retries."""


class BrokerError(ServiceError):
    """The broker failed to carry out an operation."""


class BrokerConnectionError(BrokerError):
    """The broker cannot be reached within its deadline."""


class ResultBackendError(ServiceError):
    """The result backend failed to store or read a result."""


class ResultBackendConnectionError(ResultBackendError):
    """The result backend cannot be reached (a retry later may work; a refused value won't)."""


class ControlStoreError(ServiceError):
    """The control store (rate limits, revocations) failed."""


class BeatStoreError(ServiceError):
    """Beat's tables (schedules, claims, liveness) could not be read or written."""


class SerializationError(TaskqError):
    """A value could not be encoded, or bytes could not be decoded, by a serializer."""


class ContentDisallowed(SerializationError):
    """A message uses a content type that the ACCEPT_CONTENT setting does not allow."""


class MessageError(TaskqError):
    """A message is malformed: missing headers, wrong body shape, or undecodable content."""


class SignatureError(MessageError):
    """A message's signature does not check out (SIGNING_KEYS is set); ``reason`` says how:
    "unsigned", "unknown key", "bad signature", "expired" or "signed in the future"."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail

    def __reduce__(self) -> Any:
        return (type(self), (self.reason, self.detail))


class MessageTooLarge(MessageError):
    """A message's body is larger than MESSAGE_MAX_BYTES; nothing was sent."""


class NotRegistered(TaskqError, KeyError):
    """No task with that name is registered in this process."""

    def __str__(self) -> str:  # KeyError would add quotes around the message
        return str(self.args[0]) if self.args else "task not registered"


class TimeoutError(TaskqError):  # noqa: A001 - the Celery name users catch
    """AsyncResult.get() waited longer than its timeout."""


class RemoteTaskError(TaskqError):
    """A task failed in a worker with an exception that is not rebuilt locally.

    Only builtin exception types are rebuilt from result data (nothing else is imported from
    data: see promise 7); every other failure is raised as this, carrying the remote type name.
    """

    def __init__(self, exc_type: str, exc_module: str, message: str, traceback: str | None = None):
        super().__init__(f"{exc_module}.{exc_type}: {message}" if exc_module else message)
        self.exc_type = exc_type
        self.exc_module = exc_module
        self.message = message
        self.remote_traceback = traceback


class TaskRevokedError(TaskqError):
    """The task was revoked or expired before it ran."""


class WorkerLostError(TaskqError):
    """The process running the task died (SIGKILL, segfault, out of memory) too many times."""


class BadMessage(TaskqError):
    """A delivered message cannot be run: malformed, refused content, unknown task, bad arguments.

    The worker dead-letters such a message with this error's text as the reason. ``untrusted``:
    its headers were not verified (signing on, refused before or by the signature check), so
    nothing is written under its id.
    """

    def __init__(self, message: str, *, untrusted: bool = False) -> None:
        super().__init__(message)
        self.untrusted = untrusted


class SoftTimeLimitExceeded(TaskqError):
    """Raised inside a task when its soft time limit passes; catch it to clean up in time."""


class TimeLimitExceeded(TaskqError):
    """The task ran past its hard time limit and was killed; stored as its failure."""


class Retry(TaskqError):
    """Raised by ``self.retry()``: the task is sent again and this run ends in state RETRY.

    ``eta`` is when the retry may run; ``retry_args``/``retry_kwargs`` replace the arguments
    when not None; ``retry_options`` (queue, priority, headers) change where and how it is sent.
    """

    def __init__(self, message: str | None = None, exc: BaseException | None = None,
                 when: float | None = None, *, eta: Any = None,
                 retry_args: tuple[Any, ...] | None = None,
                 retry_kwargs: dict[str, Any] | None = None,
                 retry_options: dict[str, Any] | None = None) -> None:
        super().__init__(message or _retry_text(exc, when))
        self.retry_options = retry_options or {}
        self.exc = exc
        self.when = when
        self.eta = eta
        self.retry_args = retry_args
        self.retry_kwargs = retry_kwargs

    def __reduce__(self) -> Any:
        return (type(self), (str(self), self.exc, self.when))


def _retry_text(exc: BaseException | None, when: float | None) -> str:
    """Celery's wording: ``Retry in 5s: <exc>``, ``Retry in 5s`` without an exception."""
    head = f"Retry in {when:g}s" if when is not None else "Retry"
    return f"{head}: {exc!r}" if exc is not None else head


class MaxRetriesExceededError(TaskqError):
    """``self.retry()`` was called with no exception after ``max_retries`` retries."""


class RateLimitError(TaskqError):
    """A rate limit string cannot be read (e.g. ``"100/m"`` is right, ``"100 per m"`` is not)."""


class Reject(TaskqError):
    """Raise inside a task to refuse its message: dead-lettered with ``reason``, or put back in
    its queue with ``requeue=True`` (Celery's ``Reject``)."""

    def __init__(self, reason: Any = None, requeue: bool = False) -> None:
        super().__init__(reason, requeue)
        self.reason = reason
        self.requeue = requeue

    def __str__(self) -> str:
        return f"rejected: {self.reason}" if self.reason is not None else "rejected"


class RejectedError(TaskqError):
    """A message its task rejected with ``requeue=True`` on every delivery was given up."""


class Ignore(TaskqError):
    """Raise inside a task to end it without storing a state (Celery's ``Ignore``)."""


class ChordError(TaskqError):
    """A chord's body was not run: a header task failed (the message names it), or the body
    could not be started (Celery's ``ChordError``)."""


class Replaced(Ignore):
    """Raised by ``self.replace(sig)``: the task ends without a result of its own; the
    replacement's messages (``envelopes``) are sent when the run is settled, and its last task
    reports under this task's id."""

    def __init__(self, envelopes: list[Any]) -> None:
        super().__init__("Replaced by new task")
        self.envelopes = envelopes
