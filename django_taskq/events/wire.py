"""Celery's event message format on a Redis or RabbitMQ broker (for Flower, ``celery events``).

Placeholder until the wire sink lands: no broker gets Celery-format events yet.
"""

from __future__ import annotations

from typing import Any

from .dispatcher import Sink


def celery_sink_for(broker: Any) -> Sink | None:
    """The sink that publishes Celery event messages on ``broker``'s server, or None."""
    return None
