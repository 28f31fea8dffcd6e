"""The worker's startup banner: what it connects to and what it will run."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from django_taskq import __version__

from .. import serializers
from ..conf import get_settings
from ..registry import registry
from ..service_url import mask

if TYPE_CHECKING:
    from .worker import Worker

logger = logging.getLogger("django_taskq.worker.worker")  # the worker's log

#: What a worker that accepts pickle says when it starts (promise 7: pickle runs code).
PICKLE_WARNING = ("ACCEPT_CONTENT includes pickle: any process that can write to the broker "
                  "can run code in this worker. Turn on TASKQ['SIGNING_KEYS'] (signed messages "
                  "only), or accept json only.")
PICKLE_SIGNED = ("ACCEPT_CONTENT includes pickle: any process holding a key of "
                 "TASKQ['SIGNING_KEYS'] can run code in this worker; keep the keys secret.")


def accepts_pickle(accept: Iterable[str]) -> bool:
    """Whether ``accept`` (names or content types) lets pickle in."""
    return any(name in ("pickle", serializers.get("pickle").content_type) for name in accept)


def warn_about_pickle(accept: Iterable[str]) -> str:
    """Log the pickle WARNING when ``accept`` lets pickle in; the banner's line for it."""
    if not accepts_pickle(accept):
        return ""
    text = PICKLE_SIGNED if get_settings().SIGNING_KEYS else PICKLE_WARNING
    logger.warning(text)
    return f"- WARNING:     {text}\n"


def banner(worker: Worker) -> str:
    """A few lines naming the broker (password masked), backend, queues and tasks; a worker
    that accepts pickle also logs a WARNING and says so here."""
    settings, options = get_settings(), worker.options
    tasks = "\n".join(f"  . {name}" for name in registry) or "  (no tasks registered)"
    return (
        f"django_taskq {__version__} worker {options.hostname}\n"
        f"- broker:      {mask(settings.BROKER_URL)}\n"
        f"- results:     {mask(settings.RESULT_BACKEND)}\n"
        f"- queues:      {', '.join(options.queues)}\n"
        f"- pool:        {_pool(worker)}\n"
        f"- lease:       {options.lease:g}s (heartbeat every {options.heartbeat_interval:g}s)\n"
        f"- events:      {_events(worker)}\n"
        f"- messages:    {_messages()}\n"
        f"{warn_about_pickle(worker.accept)}"
        f"[tasks]\n{tasks}\n"
    )


def _pool(worker: Worker) -> str:
    """``prefork x 4 (prefetch 16)``, or with autoscale its range and prefetch per slot."""
    options, scaler = worker.options, worker.autoscaler
    if scaler is None:
        return f"{options.pool} x {options.concurrency} (prefetch {worker.capacity})"
    return (f"{options.pool}, concurrency: {scaler.min}..{scaler.max} (autoscale; prefetch "
            f"{options.prefetch_multiplier} per slot)")


def _messages() -> str:
    """What this worker decodes, and whether it runs only signed messages (never the keys)."""
    from ..signing import key_id

    settings = get_settings()
    accepted = ", ".join(settings.ACCEPT_CONTENT)
    if not settings.SIGNING_KEYS:
        return f"accepts {accepted}; unsigned (SIGNING_KEYS is not set)"
    keys = ", ".join(key_id(key) for key in settings.SIGNING_KEYS)
    return (f"accepts {accepted}; signed only (key ids {keys}, "
            f"max age {settings.SIGNING_MAX_AGE:g}s)")


def _events(worker: Worker) -> str:
    settings, events = get_settings(), worker.events
    if not events.enabled:
        return "off (EVENTS_DATABASE is None, no Celery event exchange)"
    where = [f"database {settings.EVENTS_DATABASE!r}"] if settings.EVENTS_DATABASE else []
    if len(where) < len(events.sinks):
        where.append("Celery's event exchange")
    kinds = "task and worker events" if events.task_events else "worker events only"
    return f"{kinds} -> {', '.join(where)}"
