"""Task and worker events, with Celery's names and fields, from one choke point per worker.

``dispatcher_for(hostname, broker)`` builds a worker's :class:`EventDispatcher` from the
settings: the database sink (``EVENTS_DATABASE``, for the dashboard, ``manage.py taskq`` and
Prometheus) and, on a Redis or RabbitMQ broker with ``EVENTS_CELERY``, Celery's event exchange
(for Flower and ``celery events``). ``EVENTS`` False keeps the task events, not the workers'.
See docs/monitoring.md.
"""

from __future__ import annotations

import logging
from typing import Any

from ..conf import get_settings
from ..exceptions import ConfigurationError
from .dispatcher import EventDispatcher, Sink

logger = logging.getLogger(__name__)


def sinks_for(broker: Any) -> list[Sink]:
    """The sinks the settings ask for, for a worker on ``broker``."""
    settings = get_settings()
    sinks: list[Sink] = []
    if settings.EVENTS_DATABASE is not None:
        from django.conf import settings as django_settings

        from .store import DatabaseEventSink

        if settings.EVENTS_DATABASE not in django_settings.DATABASES:
            raise ConfigurationError(
                f"TASKQ['EVENTS_DATABASE'] = {settings.EVENTS_DATABASE!r} is not in DATABASES "
                f"(aliases: {', '.join(django_settings.DATABASES) or 'none'}); name one, or set "
                "it to None to store no events.")

        sinks.append(DatabaseEventSink(settings.EVENTS_DATABASE))
    if settings.EVENTS_CELERY:
        from .wire import celery_sink_for

        sink = celery_sink_for(broker)
        if sink is not None:
            sinks.append(sink)
    return sinks


def dispatcher_for(hostname: str, broker: Any) -> EventDispatcher:
    """A worker's dispatcher, as the settings say."""
    return EventDispatcher(hostname, sinks_for(broker), task_events=get_settings().EVENTS)


def prune() -> int:
    """Delete stored events older than EVENTS_EXPIRES (the worker's housekeeping calls it)."""
    settings = get_settings()
    if settings.EVENTS_DATABASE is None:
        return 0
    from . import store

    return store.prune(settings.EVENTS_DATABASE, settings.EVENTS_EXPIRES)


__all__ = ["EventDispatcher", "Sink", "dispatcher_for", "prune", "sinks_for"]
