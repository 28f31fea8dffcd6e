"""Django signals with Celery's names, arguments and moments, so receivers carry over.

Task signals are sent by the process that runs the task (a prefork child, a thread, or the
worker itself for solo), except ``task_received`` and ``task_revoked``, which the worker sends.
``sender`` is the Task object for task signals (Celery's convention), the Worker for worker
signals. A receiver that raises is logged and does not break the task or the worker (signals
are sent with ``send_robust``).

=================  ==========================================================================
signal             keyword arguments
=================  ==========================================================================
task_received      request
task_prerun        task_id, task, args, kwargs
task_postrun       task_id, task, args, kwargs, retval, state
task_success       result
task_failure       task_id, exception, args, kwargs, traceback, einfo
task_retry         request, reason, einfo
task_revoked       request, terminated, signum, expired
worker_ready       (none)
worker_shutdown    (none)
=================  ==========================================================================
"""

from __future__ import annotations

import logging
from typing import Any

from django.dispatch import Signal

logger = logging.getLogger(__name__)

task_received = Signal()
task_prerun = Signal()
task_postrun = Signal()
task_success = Signal()
task_failure = Signal()
task_retry = Signal()
task_revoked = Signal()
worker_ready = Signal()
worker_shutdown = Signal()


def send(signal: Signal, sender: Any, **kwargs: Any) -> None:
    """Send ``signal``; a failing receiver is logged, never raised into the task or worker."""
    if not signal.receivers:
        return  # the common case costs one attribute look-up
    for receiver, response in signal.send_robust(sender, **kwargs):
        if isinstance(response, Exception):
            logger.error("signal receiver %r failed: %r", receiver, response,
                         exc_info=(type(response), response, response.__traceback__))
