"""The monitor thread: worker-online/heartbeat/offline, event flushing, remote control.

It runs in the supervising process beside the lease heartbeat, so the worker's loop only
appends events to a list; storing and publishing them happens here, every ``FLUSH_EVERY``
seconds. Remote-control commands are read from the control store every REVOKE_POLL_INTERVAL.
"""

from __future__ import annotations

import logging
import os
import platform
import threading
import time
from typing import TYPE_CHECKING, Any

from django.db import connections

from .. import __version__
from ..events.dispatcher import EventDispatcher

if TYPE_CHECKING:
    from .worker import Worker

logger = logging.getLogger(__name__)

#: Seconds between event flushes.
FLUSH_EVERY = 0.25
SW_IDENT = "django-taskq"


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded as Celery sends them ([] where unknown)."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return []


class Monitor(threading.Thread):
    """Sends the worker's own events, flushes all events, answers remote control."""

    def __init__(self, worker: Worker, events: EventDispatcher, *, freq: float,
                 control_every: float) -> None:
        super().__init__(name="taskq-monitor", daemon=True)
        self.worker = worker
        self.events = events
        self.freq = freq
        self.control_every = control_every
        self._stop_event = threading.Event()
        self._remote: Any = None
        self._pidbox: Any = None  # Celery's mailbox (worker/pidbox.py), on Redis and RabbitMQ
        self.started = False

    def worker_fields(self) -> dict[str, Any]:
        """What every worker event says: Celery's fields, and our pool and queues."""
        worker = self.worker
        return {"freq": self.freq, "sw_ident": SW_IDENT, "sw_ver": __version__,
                "sw_sys": platform.system(), "active": len(worker.running),
                "processed": worker.processed, "loadavg": loadavg(),
                "pool": worker.options.pool, "concurrency": worker.pool_size(),
                "queues": list(worker.options.queues)}

    def start(self) -> None:
        from .pidbox import bridge_for
        from .remote import RemoteControl

        self._remote = RemoteControl(self.worker)
        self._pidbox = bridge_for(self.worker, self._remote)
        self.events.send("worker-online", **self.worker_fields())
        self.started = True
        super().start()

    def run(self) -> None:
        now = time.monotonic()
        next_heartbeat, next_control = now + self.freq, now
        try:
            while not self._stop_event.wait(FLUSH_EVERY):
                now = time.monotonic()
                if now >= next_heartbeat:
                    next_heartbeat = now + self.freq
                    self.events.send("worker-heartbeat", **self.worker_fields())
                if now >= next_control:
                    next_control = now + self.control_every
                    self._remote.poll()
                if self._pidbox is not None:
                    self._pidbox.poll()
                self.events.flush()
        finally:
            if self._pidbox is not None:
                self._pidbox.close()
            connections.close_all()

    def stop(self) -> None:
        """Stop the thread, then say worker-offline and flush what is left (in this thread)."""
        self._stop_event.set()
        if not self.started:
            return
        if self.is_alive():
            self.join(timeout=10)
        self.events.send("worker-offline", **self.worker_fields())
        self.events.close()
