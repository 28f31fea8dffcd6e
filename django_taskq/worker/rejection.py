"""Bad input met by a worker's claim: settled as a failure and dead-lettered, never a crash."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .. import signals
from ..exceptions import BadMessage, NotRegistered
from ..outcome import envelope_address, failure
from ..registry import registry

if TYPE_CHECKING:
    from ..brokers.base import Delivery
    from .worker import Worker

logger = logging.getLogger("django_taskq.worker.worker")  # the worker's log


def reject(worker: Worker, delivery: Delivery, exc: BadMessage) -> None:
    """Bad input: FAILURE result (when the id is known), dead letter, keep going.

    A message refused unverified (for its signature, or too large with signing on) is
    only dead-lettered: its id and name may be a stranger's, so nothing is written under
    them (no result, chord count or event)."""
    envelope = delivery.envelope
    if exc.untrusted:
        logger.error("message refused (unverified id=%s task=%s) reason=%s",
                     envelope.message_id or "?", envelope.task_name or "?", exc)
        worker.broker.dead_letter(delivery, str(exc))
        signals.send(signals.task_rejected, worker, message=envelope, exc=exc)
        return
    logger.error("message rejected id=%s task=%s reason=%s", envelope.message_id or "?",
                 envelope.task_name or "?", exc)
    # Settled like a run: its FAILURE stored (and counted in its chord), then dead-lettered.
    worker.settler.add(delivery, failure(
        envelope.message_id or "", envelope.task_name, exc, date_done=worker.clock.now(),
        worker=worker.options.hostname, ignore_result=not envelope.message_id,
        disposition="dead_letter", reason=str(exc), **envelope_address(envelope)))
    # The name only when registered: a name from a stranger's message would become a
    # counter row and a metrics series of its own, for good.
    worker.events.send("task-failed", uuid=envelope.message_id,
                       name=envelope.task_name if envelope.task_name in registry else "",
                       exception=f"{type(exc).__name__}: {exc}", traceback="")
    # Celery's message is a kombu Message; ours is the Envelope (see signals.py).
    if isinstance(exc.__cause__, NotRegistered):
        signals.send(signals.task_unknown, worker, message=envelope, exc=exc.__cause__,
                     name=envelope.task_name, id=envelope.message_id)
    else:
        signals.send(signals.task_rejected, worker, message=envelope, exc=exc)
