"""Waking beat when schedules change: PostgreSQL LISTEN/NOTIFY, polling elsewhere.

A saved or deleted periodic task or schedule sends ``NOTIFY taskq_beat`` when its transaction
commits (a rolled-back edit wakes no one). On PostgreSQL a sleeping beat listens on a connection
of its own and wakes at once, so it sleeps until the next run or a change, however far off.
On SQLite and MariaDB beat looks at the earliest next run every BEAT_SYNC_INTERVAL instead (one
indexed MIN query). A lost notification only delays: on PostgreSQL beat still looks at each
liveness write (every 10 s).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.db import connections, transaction

logger = logging.getLogger("django_taskq.beat")

CHANNEL = "taskq_beat"
#: Seconds between looks at the stop flag while waiting for a notification.
STOP_CHECK = 0.5


def notify_change(alias: str) -> None:
    """Tell listening beats that the schedules on ``alias`` changed (after the commit)."""
    connection = connections[alias]
    if connection.vendor != "postgresql":
        return

    def send() -> None:
        try:
            with connections[alias].cursor() as cursor:
                cursor.execute(f"NOTIFY {CHANNEL}")
        except Exception:  # noqa: BLE001 - a lost hint only delays beat
            logger.debug("beat: NOTIFY failed", exc_info=True)

    transaction.on_commit(send, using=alias)


class Waiter:
    """Sleeps until a timeout, a stop, or (PostgreSQL) a change notification."""

    def __init__(self, alias: str, stop: threading.Event) -> None:
        self.alias = alias
        self.stop = stop
        self.can_listen = connections[alias].vendor == "postgresql"
        self._listener: Any = None

    @property
    def listening(self) -> bool:
        """Whether a change wakes this beat now, so that it need not look for changes."""
        return self._listener is not None

    def listen(self) -> None:
        """Start listening, where the database can, before beat looks at the schedules (so no
        change is missed between that look and the wait). A failure is logged: beat polls
        until a later wait listens again."""
        if self._listener is not None or not self.can_listen:
            return
        try:
            # A connection of its own, never one of Django's pool (it is held while asleep).
            wrapper: Any = connections[self.alias]
            listener = wrapper.Database.connect(**wrapper.get_connection_params())
            listener.autocommit = True
            listener.execute(f"LISTEN {CHANNEL}")
        except Exception as exc:  # noqa: BLE001 - the database is down: beat's steps say so
            logger.warning("beat: cannot listen for schedule changes (%s); looking every "
                           "BEAT_SYNC_INTERVAL meanwhile", exc)
            return
        self._listener = listener

    def wait(self, seconds: float) -> None:
        if self._listener is None or seconds <= 0:
            self.stop.wait(max(seconds, 0.0))
            self.listen()
            return
        deadline = time.monotonic() + seconds
        try:
            while not self.stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                if any(True for _ in self._listener.notifies(timeout=min(left, STOP_CHECK),
                                                             stop_after=1)):
                    self._drain()
                    return
        except Exception as exc:  # noqa: BLE001 - the next step polls, a later wait listens
            logger.warning("beat: listening for schedule changes failed (%s)", exc)
            self.close()

    def _drain(self) -> None:
        """Several edits at once wake beat once."""
        for _ in self._listener.notifies(timeout=0.0):
            pass

    def close(self) -> None:
        if self._listener is not None:
            try:
                self._listener.close()
            except Exception:  # noqa: BLE001 - it is being dropped anyway
                pass
            self._listener = None
