"""What one run of a task came to: success, failure, retry, reject or ignore, as an Outcome."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .. import serializers, states
from ..canvas.fields import steps_of
from ..clock import clock_now
from ..context import take_scheduled_retry
from ..einfo import ExceptionInfo
from ..exceptions import Ignore, Reject, Retry, SerializationError
from ..outcome import Outcome, RetryOrder, failure, reply_address
from ..sensitive import stored_arguments
from .job import Job

logger = logging.getLogger("django_taskq.worker.worker")  # the worker's log, as before

IGNORED, REJECTED = states.IGNORED, states.REJECTED
#: States after which ``after_return`` is not called (Celery's IGNORE_STATES).
IGNORE_STATES = frozenset({states.RETRY, IGNORED, REJECTED})


@dataclass
class Run:
    """One run of ``task``; ``succeeded`` or ``failed`` sets ``outcome``."""

    job: Job
    task: Any
    started: datetime
    eager: bool = False
    outcome: Outcome = field(init=False)
    retval: Any = None
    error: BaseException | None = None
    einfo: ExceptionInfo | None = None
    #: Ended by ``Reject(requeue=False)``: FAILURE is stored and task_failure sent, without
    #: the failure handlers (Celery 5.7, celery#4222).
    rejected: bool = False

    def _common(self) -> dict[str, Any]:
        request = self.job.request
        common: dict[str, Any] = {
            "worker": request.hostname or "", "retries": request.retries,
            "ignore_result": self.job.ignore_result, "date_started": self.started,
            "date_done": clock_now(), **reply_address(request)}
        if request.group:  # a group member: whether it is in a chord is known here
            common["chord"] = request.chord if isinstance(request.chord, dict) else {}
        if self.job.extended:  # hidden arguments are kept as their reprs (sensitive.py)
            args, kwargs = stored_arguments(request)
            common.update(args=args, kwargs=kwargs, queue=request.delivery_info.get("queue"))
        return common

    def succeeded(self, value: Any) -> None:
        """The task returned ``value`` (a ``retry(throw=False)`` made during it still wins)."""
        scheduled = take_scheduled_retry()
        if scheduled is not None:
            self._retry(scheduled)
            return
        try:
            payload, content_type, encoding = serializers.dumps(value, self.job.result_serializer)
        except SerializationError as exc:  # the value cannot be stored: the task fails
            self._failure(exc, with_traceback=False)
            return
        self.retval = value
        self.outcome = Outcome(task_id=self.job.request.id or "", task_name=self.job.task_name,
                               state=states.SUCCESS, payload=payload, content_type=content_type,
                               content_encoding=encoding, **self._common())

    def failed(self, exc: BaseException) -> None:
        """The task raised ``exc``; anything but an Exception is raised on."""
        if not isinstance(exc, Exception):
            raise exc
        scheduled = take_scheduled_retry()  # retry(throw=False), then a failure: still retry
        if isinstance(exc, Retry) or scheduled is not None:
            self._retry(exc if isinstance(exc, Retry) else scheduled)
        elif isinstance(exc, Reject) and exc.requeue:
            self._settle_only(REJECTED, "requeue", str(exc))
        elif isinstance(exc, Reject):
            self._reject(exc)
        elif isinstance(exc, Ignore):
            self.error = exc  # self.replace(): the replacement's messages travel on it
            self._settle_only(IGNORED, "ack", None)
        else:
            self._failure(exc)

    def _failure(self, exc: Exception, with_traceback: bool = True) -> None:
        options = self.task.options
        self.error, self.retval = exc, exc
        self.einfo = ExceptionInfo(exc)
        self.outcome = failure(
            self.job.request.id or "", self.job.task_name, exc,
            traceback=self.einfo.traceback if with_traceback else None,
            serializer=self.job.result_serializer, expected=isinstance(exc, options.throws),
            exception=exc if self.eager else None, chain=steps_of(self.job.request.chain),
            **{**self._common(), **failure_settlement(options, exc, self.job.ignore_result)})

    def _reject(self, exc: Reject) -> None:
        self.error, self.retval, self.rejected = exc, exc, True
        self.einfo = ExceptionInfo(exc)
        common = {**self._common(), "ignore_result": self.job.ignore_result
                  and not self.task.options.store_errors_even_if_ignored}
        self.outcome = failure(self.job.request.id or "", self.job.task_name, exc,
                               serializer=self.job.result_serializer,
                               exception=exc if self.eager else None,
                               disposition="dead_letter", reason=str(exc), **common)

    def _retry(self, retry: Retry) -> None:
        try:
            _check_retry_arguments(self.job, retry)
        except SerializationError as exc:
            self._failure(exc, with_traceback=False)
            return
        reason = retry.exc if retry.exc is not None else retry
        self.error, self.retval = retry.exc, retry
        self.einfo = ExceptionInfo(retry)
        order = RetryOrder(eta=retry.eta, args=retry.retry_args, kwargs=retry.retry_kwargs,
                           options=retry.retry_options or None)
        self.outcome = failure(
            self.job.request.id or "", self.job.task_name, reason, state=states.RETRY,
            traceback=self.einfo.traceback, retry=order,
            serializer=self.job.result_serializer, **self._common())

    def _settle_only(self, state: str, disposition: str, reason: str | None) -> None:
        """Reject/Ignore: nothing is stored; the message is dead-lettered, requeued or acked."""
        common = {**self._common(), "ignore_result": True}
        self.outcome = Outcome(task_id=self.job.request.id or "", task_name=self.job.task_name,
                               state=state, disposition=disposition, reason=reason, **common)


def failure_settlement(options: Any, exc: BaseException, ignore_result: bool,
                       timeout: bool = False) -> dict[str, Any]:
    """What a task's options say about a failed run (raised, or stopped at its time limit):
    ``store_errors_even_if_ignored`` stores it anyway. Without acknowledgement
    (``acks_on_failure_or_timeout=False``, or Celery 5.7's ``acks_on_failure`` /
    ``acks_on_timeout``) Celery rejects the message: a failure for good (dead-lettered here),
    a timeout to run again (put back; dead-lettered after ``max_deliveries`` deliveries)."""
    fields: dict[str, Any] = {
        "ignore_result": ignore_result and not options.store_errors_even_if_ignored}
    specific = options.acks_on_timeout if timeout else options.acks_on_failure
    if (options.acks_on_failure_or_timeout if specific is None else specific):
        return fields
    option = ("acks_on_timeout" if timeout else "acks_on_failure") if specific is not None \
        else "acks_on_failure_or_timeout"
    fields["disposition"] = "requeue" if timeout else "dead_letter"
    fields["reason"] = f"{option}=False: {type(exc).__name__}: {exc}"
    return fields


def _check_retry_arguments(job: Job, retry: Retry) -> None:
    """New retry arguments must encode as the message did (the worker sends the retry)."""
    if retry.retry_args is None and retry.retry_kwargs is None:
        return
    serializers.dumps([list(retry.retry_args or ()), dict(retry.retry_kwargs or {}), None],
                      serializers.get(job.content_type).name)


def log_outcome(outcome: Outcome) -> None:
    """One log line per task outcome (an expected failure, per ``throws``, without traceback)."""
    runtime = outcome.runtime
    took = f" runtime={runtime:.3f}s" if runtime is not None else ""
    if outcome.state == states.SUCCESS:
        logger.info("task succeeded name=%s id=%s%s", outcome.task_name, outcome.task_id, took)
    elif outcome.state == states.RETRY and outcome.retry is not None:
        eta = outcome.retry.eta.isoformat() if outcome.retry.eta else "now"
        logger.info("task retry name=%s id=%s%s retries=%d eta=%s reason=%s", outcome.task_name,
                    outcome.task_id, took, outcome.retries + 1, eta, outcome.error)
    elif outcome.expected:
        logger.info("task raised expected name=%s id=%s%s error=%s", outcome.task_name,
                    outcome.task_id, took, outcome.error)
    elif outcome.state in (REJECTED, IGNORED) or (outcome.error or "").startswith("Reject:"):
        verb = "ignored" if outcome.state == IGNORED else "rejected"
        logger.info("task %s name=%s id=%s%s%s", verb, outcome.task_name, outcome.task_id, took,
                    f" reason={outcome.reason}" if outcome.reason else "")
    else:
        logger.error("task failed name=%s id=%s%s error=%s%s", outcome.task_name,
                     outcome.task_id, took, outcome.error,
                     f"\n{outcome.traceback}" if outcome.traceback else "")
