"""Eager runs (``task.apply()``, TASK_ALWAYS_EAGER): a task executed in the caller's process
through the worker's own steps — the message is built and decoded, the job checked, the task
executed by the worker's ``execute`` (middleware, signals, handlers), its result encoded and
decoded — so a task that passes eagerly runs the same in a worker.

A retry runs again at once in a loop (its countdown is not waited, as in Celery), each time
from the retry message a worker would have sent. Time limits are not applied.
"""

from __future__ import annotations

import socket
from typing import Any

from . import message, middleware, serializers, states
from .conf import get_settings
from .exceptions import BadMessage
from .outcome import Outcome
from .result import EagerResult, ResultMeta

#: A task that keeps asking for retries with max_retries=None stops here (a worker would go on
#: for ever; a test must not).
MAX_EAGER_RETRIES = 1000


def run(envelope: message.Envelope, task: Any, *, through_middleware: bool,
        throw: bool | None = None) -> EagerResult:
    """Run ``envelope`` here and return its result.

    Args:
        through_middleware: pass the message through the middleware's ``enqueue`` first (it
            was "sent": TASK_ALWAYS_EAGER); a middleware that sends nothing stops the run.
        throw: raise a failure's exception here (default TASK_EAGER_PROPAGATES).

    Raises:
        BadMessage: a worker would refuse this message (e.g. its content type is not in
            ACCEPT_CONTENT).
    """
    settings = get_settings()
    if through_middleware:
        sent: list[message.Envelope] = []
        middleware.send_through([envelope], sent.extend)
        if not sent:
            return EagerResult(envelope.message_id, None)
        envelope = sent[0]
    propagate = settings.TASK_EAGER_PROPAGATES if throw is None else throw
    outcome = _execute_until_done(envelope, task, propagate)
    if settings.TASK_STORE_EAGER_RESULT and not outcome.ignore_result:
        from .results import get_backend

        get_backend().store(outcome)
    _send_on(outcome, settings.TASK_ALWAYS_EAGER)
    return EagerResult(outcome.task_id, _meta(outcome))


def _send_on(outcome: Outcome, always_eager: bool) -> None:
    """An eager run's callbacks, chain steps and errbacks: run here too under TASK_ALWAYS_EAGER
    (as Celery's ``apply_async`` would), sent to the broker otherwise (``task.apply()``)."""
    from .producer import send
    from .registry import registry

    for follow_up in outcome.follow_ups:
        name = follow_up.task_name
        if always_eager and name in registry:
            run(follow_up, registry.get(name), through_middleware=True)
        else:
            send([follow_up], record_results=not follow_up.headers.get("ignore_result"))


def _execute_until_done(envelope: message.Envelope, task: Any, propagate: bool) -> Outcome:
    """Run until the task ends; with ``propagate`` its exception (a retry's too, as Celery
    raises it) comes out of here instead of a FAILURE or a retried run."""
    from .worker.execution import execute
    from .worker.job import prepare

    settings = get_settings()
    for _ in range(MAX_EAGER_RETRIES):
        try:
            job, _decoded = prepare(
                0, envelope, accept=settings.ACCEPT_CONTENT, hostname=_hostname(),
                result_serializer=settings.RESULT_SERIALIZER,
                extended=settings.RESULT_EXTENDED, task=task, eager=True)
        except BadMessage as exc:
            raise BadMessage(f"{exc} (a worker would dead-letter this message)") from exc
        outcome = execute(job, task, eager=True, propagate=propagate)
        if outcome.state != states.RETRY or outcome.retry is None:
            return outcome
        envelope = message.retry_envelope(envelope, eta=None, args=outcome.retry.args,
                                          kwargs=outcome.retry.kwargs,
                                          options=outcome.retry.options)
    raise RuntimeError(f"Task {task.name} asked for {MAX_EAGER_RETRIES} retries in an eager "
                       "run; give it a max_retries.")


def _meta(outcome: Outcome) -> ResultMeta:
    settings = get_settings()
    value: Any = outcome.exception
    if value is None and outcome.payload is not None:
        accept = tuple(dict.fromkeys((*settings.ACCEPT_CONTENT, settings.RESULT_SERIALIZER)))
        value = serializers.loads(outcome.payload, outcome.content_type,
                                  outcome.content_encoding, accept)
    return ResultMeta(task_id=outcome.task_id, state=outcome.state, result=value,
                      traceback=outcome.traceback, task_name=outcome.task_name,
                      date_started=outcome.date_started, date_done=outcome.date_done,
                      retries=outcome.retries)


def _hostname() -> str:
    return f"eager@{socket.gethostname()}"
