"""The worker's startup banner: what it connects to and what it will run."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django_taskq import __version__

from ..conf import get_settings
from ..registry import registry
from ..service_url import mask

if TYPE_CHECKING:
    from .worker import Worker


def banner(worker: Worker) -> str:
    """A few lines naming the broker (password masked), backend, queues and tasks."""
    settings, options = get_settings(), worker.options
    tasks = "\n".join(f"  . {name}" for name in registry) or "  (no tasks registered)"
    return (
        f"django_taskq {__version__} worker {options.hostname}\n"
        f"- broker:      {mask(settings.BROKER_URL)}\n"
        f"- results:     {mask(settings.RESULT_BACKEND)}\n"
        f"- queues:      {', '.join(options.queues)}\n"
        f"- pool:        {options.pool} x {options.concurrency} "
        f"(prefetch {worker.capacity})\n"
        f"- lease:       {options.lease:g}s (heartbeat every {options.heartbeat_interval:g}s)\n"
        f"- events:      {_events(worker)}\n"
        f"[tasks]\n{tasks}\n"
    )


def _events(worker: Worker) -> str:
    settings, events = get_settings(), worker.events
    if not events.enabled:
        return "off (EVENTS_DATABASE is None, no Celery event exchange)"
    where = [f"database {settings.EVENTS_DATABASE!r}"] if settings.EVENTS_DATABASE else []
    if len(where) < len(events.sinks):
        where.append("Celery's event exchange")
    kinds = "task and worker events" if events.task_events else "worker events only"
    return f"{kinds} -> {', '.join(where)}"
