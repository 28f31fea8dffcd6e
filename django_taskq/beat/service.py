"""Run beat: the loop around ``Scheduler.tick()`` for ``manage.py taskbeat`` and
``taskworker --beat`` (a thread in the worker's supervising process).

A failing database or broker never ends beat: the step is logged and tried again, backing off
from 0.5 s to 10 s; nothing is lost (a tick that was not sent stays due, see claims.py).
"""

from __future__ import annotations

import logging
import threading

from django.db import close_old_connections

from .. import signals
from ..clock import SYSTEM, Clock
from ..exceptions import ConfigurationError, ServiceError
from .scheduler import Scheduler
from .wakeup import Waiter

logger = logging.getLogger("django_taskq.beat")

BACKOFF_START, BACKOFF_MAX = 0.5, 10.0


class BeatService:
    """One beat: ``run()`` until ``stop()`` (from a signal handler or another thread)."""

    def __init__(self, *, alias: str | None = None, clock: Clock = SYSTEM,
                 embedded: bool = False, max_interval: float | None = None) -> None:
        self.scheduler = Scheduler(alias=alias, clock=clock, embedded=embedded)
        if max_interval is not None:
            self.scheduler.max_interval = max_interval
        self.embedded = embedded
        self._stop = threading.Event()
        self._waiter = Waiter(self.scheduler.alias, self._stop)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Declared entries upserted, ``beat_init`` (or ``beat_embedded_init``) sent."""
        from .declared import sync

        self._waiter.listen()
        names = sync(self.scheduler.alias)
        logger.info("beat %s: %d schedule(s) declared in code upserted", self.scheduler.ident,
                    len(names))
        signal = signals.beat_embedded_init if self.embedded else signals.beat_init
        signals.send(signal, self)

    def run(self) -> None:
        """Tick until stopped; a failing step is logged and tried again with backoff.

        Raises:
            ConfigurationError: a schedule declared in code cannot be used (beat stops).
        """
        try:
            self._loop()
        finally:
            self._stopped()

    def _loop(self) -> None:
        backoff = BACKOFF_START
        started = False
        while not self._stop.is_set():
            try:
                if not started:
                    self.start()
                    started = True
                self.scheduler.listens = self._waiter.listening
                wait = self.scheduler.tick()
                backoff = BACKOFF_START
            except ServiceError as exc:
                logger.error("beat: %s; trying again in %.1fs", exc, backoff)
                wait, backoff = backoff, min(backoff * 2, BACKOFF_MAX)
            except ConfigurationError as exc:
                logger.error("beat cannot start: %s", exc)
                raise
            except Exception:  # noqa: BLE001 - a bug must not end beat quietly (--beat)
                logger.exception("beat: step failed; trying again in %.1fs", backoff)
                wait, backoff = backoff, min(backoff * 2, BACKOFF_MAX)
            finally:
                close_old_connections()
            self._waiter.wait(wait)

    def _run_in_thread(self) -> None:
        try:
            self.run()
        except ConfigurationError:
            pass  # logged; the worker goes on without beat

    def _stopped(self) -> None:
        self._waiter.close()
        try:
            self.scheduler.stop()
        except ServiceError as exc:
            logger.warning("beat: could not remove its liveness row: %s", exc)
        finally:
            close_old_connections()
        logger.info("beat %s stopped", self.scheduler.ident)

    def stop(self) -> None:
        self._stop.set()

    def start_thread(self) -> threading.Thread:
        """Run in a daemon thread (``taskworker --beat``); ``stop()`` then ``join()`` it."""
        self._thread = threading.Thread(target=self._run_in_thread, name="taskq-beat",
                                        daemon=True)
        self._thread.start()
        return self._thread

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
