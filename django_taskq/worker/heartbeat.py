"""The heartbeat thread: keeps the leases of held messages alive and recovers expired ones.

It runs in the supervising process, not in a task's thread or child, so a busy task cannot
starve it (architecture: Worker).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from django.db import connections

from .. import signals
from ..brokers.base import Broker, DeadLetter, Delivery
from ..exceptions import ServiceError

logger = logging.getLogger(__name__)

#: Seconds between deletions of results older than RESULT_EXPIRES (by each worker).
CLEANUP_INTERVAL = 300.0
#: Dead letters kept to record again when recording them failed (the newest, if more).
MAX_UNRECORDED = 10_000


class Heartbeat(threading.Thread):
    """Every ``interval`` seconds: extend leases of ``held()``; recover expired leases.

    After each round that succeeded it sends ``heartbeat_sent`` with ``sender`` (the Worker;
    this Heartbeat when not given).
    """

    def __init__(self, broker: Broker, *, held: Callable[[], Sequence[Delivery]], lease: float,
                 interval: float,
                 on_dead: Callable[[list[DeadLetter]], None],
                 cleanup: Callable[[], object] | None = None, sender: object = None) -> None:
        super().__init__(name="taskq-heartbeat", daemon=True)
        self.sender = self if sender is None else sender
        self.broker = broker
        self.held = held
        self.lease = lease
        self.interval = interval
        self.on_dead = on_dead
        self.cleanup = cleanup
        self._next_cleanup = time.monotonic() + CLEANUP_INTERVAL
        self._stop_event = threading.Event()
        self._unrecorded: list[DeadLetter] = []

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.beat()
        if self._unrecorded:  # a last try before the worker goes
            unrecorded, self._unrecorded = self._unrecorded, []
            try:
                self.record(unrecorded)
            finally:
                connections.close_all()

    def beat(self) -> None:
        """One round: extend, recover, now and then clean up old results. Errors are logged;
        the next round tries again."""
        try:
            held = list(self.held())
            if held:
                self.broker.extend_leases(held, self.lease)
            # Letters not recorded last round (their results, their chords) are tried again:
            # the broker has moved them already and will not report them twice.
            dead, self._unrecorded = [*self._unrecorded, *self.broker.recover()], []
            if dead:
                self.record(dead)
            if self.cleanup is not None and time.monotonic() >= self._next_cleanup:
                self._next_cleanup = time.monotonic() + CLEANUP_INTERVAL
                self.cleanup()
            signals.send(signals.heartbeat_sent, self.sender)
        except Exception:  # noqa: BLE001 - a broker hiccup must not kill the heartbeat
            logger.warning("heartbeat failed; retrying in %.1fs", self.interval, exc_info=True)
        finally:
            # Hold no connection between beats: a prefork child forked meanwhile must not
            # inherit (and later close) a live socket of this thread.
            connections.close_all()

    def record(self, dead: list[DeadLetter]) -> None:
        """Record dead letters (their results, chords, errbacks). When that fails, each is
        tried on its own: one that cannot be recorded for good is logged and given up, one
        that met an outage is kept for the next round."""
        try:
            self.on_dead(dead)
            return
        except Exception:  # noqa: BLE001 - sorted out one by one below
            logger.warning("recording %d dead letter(s) failed; trying one by one", len(dead),
                           exc_info=True)
        for letter in dead:
            try:
                self.on_dead([letter])
            except ServiceError:
                self._unrecorded.append(letter)
            except Exception:  # noqa: BLE001 - bad data: never retried, never blocks the rest
                logger.exception("dead letter id=%s cannot be recorded; given up",
                                 letter.envelope.message_id)
        self._unrecorded = self._unrecorded[-MAX_UNRECORDED:]

    def stop(self) -> None:
        """Stop after the current round."""
        self._stop_event.set()
