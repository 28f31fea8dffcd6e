"""The one choke point every event goes through: stamp, buffer, hand to the sinks in batches.

A worker's loop only builds a dict and appends it (``send``); the monitor thread calls
``flush`` every fraction of a second, so a slow sink (a database, a broker) never slows a task.
Events are monitoring data: a sink that fails keeps its batch (up to ``MAX_PENDING``, the
newest) and gets it again at the next flush; what is over that is dropped and logged.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

logger = logging.getLogger(__name__)

#: Events a failing sink keeps for its next try.
MAX_PENDING = 50_000
#: Celery's event type groups: ``task-*`` events are sent only when task events are on.
TASK_EVENT_PREFIX = "task-"
#: A failed try that took this long (seconds: a broker or database that does not answer, each
#: try waiting out its timeout) puts the sink's next tries off, RETRY_FIRST seconds doubling
#: up to RETRY_MAX: the monitor thread that flushes also heart-beats and answers remote
#: control, which a 3 s wait at every flush held back.
SLOW_FAILURE = 0.5
RETRY_FIRST, RETRY_MAX = 2.0, 30.0
_monotonic = time.monotonic


class Sink(Protocol):
    """Where events go: a store, a broker's event exchange."""

    def publish(self, events: Sequence[dict[str, Any]]) -> None:
        """Take a batch of events (raise to have it handed again next time)."""

    def close(self) -> None:
        """Release connections."""


def utcoffset() -> float:
    """Hours west of UTC, as Celery's events carry it (``time.timezone / 3600``, DST aware):
    receivers undo it with ``timestamp - (utcoffset - theirs) * 3600``."""
    offset = time.altzone if time.daylight and time.localtime().tm_isdst > 0 else time.timezone
    hours = offset / 3600
    return int(hours) if hours.is_integer() else hours


class _Outbox:
    """One sink and the events it has not taken yet."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.pending: deque[dict[str, Any]] = deque(maxlen=MAX_PENDING)
        self.failing = False
        self.delay = 0.0  # seconds the next try is put off after a slow failure
        self.retry_at = 0.0

    def deliver(self, events: list[dict[str, Any]], *, force: bool = False) -> None:
        dropped = max(0, len(self.pending) + len(events) - MAX_PENDING)
        self.pending.extend(events)
        started = _monotonic()
        if force or started >= self.retry_at:
            self._try(list(self.pending), started)
        if dropped:
            logger.warning("events: %d event(s) dropped for %s (its backlog is full)",
                           dropped, type(self.sink).__name__)

    def _try(self, batch: list[dict[str, Any]], started: float) -> None:
        try:
            self.sink.publish(batch)
        except Exception:  # noqa: BLE001 - monitoring never stops the worker
            if not self.failing:
                logger.warning("events: %s failed; keeping %d event(s) for the next try",
                               type(self.sink).__name__, len(batch), exc_info=True)
            self.failing = True
            ended = _monotonic()
            if ended - started >= SLOW_FAILURE:
                self.delay = min(RETRY_MAX, self.delay * 2 if self.delay else RETRY_FIRST)
                self.retry_at = ended + self.delay
        else:
            if self.failing:
                logger.info("events: %s works again", type(self.sink).__name__)
            self.failing = False
            self.delay, self.retry_at = 0.0, 0.0
            self.pending.clear()


class EventDispatcher:
    """Stamps events with Celery's common fields and batches them for the sinks."""

    def __init__(self, hostname: str, sinks: Sequence[Sink], *, task_events: bool = True,
                 clock: Callable[[], float] = time.time) -> None:
        self.hostname = hostname
        self.task_events = task_events and bool(sinks)
        self.enabled = bool(sinks)
        self._outboxes = [_Outbox(sink) for sink in sinks]
        self._clock = clock
        self._lamport = itertools.count(1)
        self._buffer: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._pid = os.getpid()
        self._utcoffset = utcoffset()

    def send(self, type: str, **fields: Any) -> None:
        """Queue one event (``task-*`` ones only when task events are on)."""
        if not self.enabled or (not self.task_events and type.startswith(TASK_EVENT_PREFIX)):
            return
        event = self.stamp(type, fields)
        with self._lock:
            self._buffer.append(event)

    def stamp(self, type: str, fields: dict[str, Any]) -> dict[str, Any]:
        """``fields`` (changed in place) with ``type`` and Celery's common fields: hostname,
        timestamp, utcoffset, pid and the next value of this dispatcher's Lamport clock."""
        fields.update(type=type, hostname=self.hostname, timestamp=self._clock(),
                      utcoffset=self._utcoffset, pid=self._pid, clock=next(self._lamport))
        return fields

    @property
    def sinks(self) -> list[Sink]:
        """Where the events go."""
        return [box.sink for box in self._outboxes]

    def flush(self, *, force: bool = False) -> int:
        """Hand what is buffered to every sink (a sink put off after a slow failure keeps it
        for later, unless ``force``); the number of new events handed."""
        with self._flush_lock:
            with self._lock:
                events, self._buffer = self._buffer, []
            if not events and not any(box.pending for box in self._outboxes):
                return 0
            for box in self._outboxes:
                box.deliver(events, force=force)
            return len(events)

    def close(self) -> None:
        """Flush (every sink tries once more), then close the sinks."""
        self.flush(force=True)
        for box in self._outboxes:
            try:
                box.sink.close()
            except Exception:  # noqa: BLE001 - closing is best effort
                logger.debug("events: closing %s failed", type(box.sink).__name__,
                             exc_info=True)


#: A dispatcher that sends nothing (events off, eager runs, tests).
def disabled(hostname: str = "") -> EventDispatcher:
    """An EventDispatcher with no sinks: ``send`` returns at once."""
    return EventDispatcher(hostname, ())
