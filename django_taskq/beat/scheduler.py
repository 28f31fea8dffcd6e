"""One beat's step: send what is due, record liveness, and say how long to sleep.

``Scheduler.tick()`` asks the database which enabled periodic tasks have ``next_run_at`` in the
past (an indexed query: no schedule is ever filtered out by a time-window heuristic), fires the
ticks their catch-up policy allows through the :class:`~.claims.Claimer` (each tick exactly
once, whatever the number of beats), moves ``next_run_at`` on, and returns the seconds until the
earliest next run. An edit in the admin moves ``next_run_at`` when it is saved and wakes a beat
on PostgreSQL (wakeup.py); elsewhere the sleep is capped by ``BEAT_SYNC_INTERVAL`` so that an
edit is seen within that long. Tests drive ``tick()`` on a fake clock.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.db.models import F, Min

from ..clock import SYSTEM, Clock
from ..conf import get_settings
from ..engines import database_errors
from ..exceptions import BeatStoreError, ServiceError, TaskqError
from .claims import Claimer
from .models import BeatInstance, PeriodicTask, PeriodicTaskRun
from .timing import due_ticks, first_run, next_run

logger = logging.getLogger("django_taskq.beat")

#: Due periodic tasks handled per step (the rest in the next step, at once).
BATCH = 100
#: Seconds between liveness writes, and between looks for claims a dead beat left unsent.
LIVENESS_INTERVAL = 10.0
#: Seconds between prunes of old claims and of beats that stopped long ago.
PRUNE_INTERVAL = 3600.0


def default_ident(embedded: bool = False) -> str:
    """``beat<pid>@<host>#<6 hex>``: unique per process start."""
    kind = "embedded-beat" if embedded else "beat"
    return f"{kind}{os.getpid()}@{socket.gethostname()}#{uuid.uuid4().hex[:6]}"


class Scheduler:
    """Beat's state between steps: its identity, clock and when it last did its chores."""

    def __init__(self, *, alias: str | None = None, clock: Clock = SYSTEM,
                 ident: str | None = None, embedded: bool = False) -> None:
        conf = get_settings()
        self.alias = alias or conf.BEAT_DATABASE
        self.clock = clock
        self.embedded = embedded
        self.ident = ident or default_ident(embedded)
        self.sync_interval = conf.BEAT_SYNC_INTERVAL
        self.max_interval = conf.BEAT_MAX_LOOP_INTERVAL
        self.history = conf.BEAT_RUN_HISTORY
        self.claimer = Claimer(self.alias, self.ident, conf.BEAT_CLAIM_TIMEOUT)
        self.started_at = clock.now()
        #: Whether edits wake this beat (PostgreSQL; set by the service): then it sleeps until
        #: the next run or its next liveness write instead of looking every sync interval.
        self.listens = False
        self._chores_at: datetime | None = None
        self._pruned_at: datetime | None = None

    def _tasks(self) -> Any:
        return PeriodicTask.objects.using(self.alias)

    def tick(self) -> float:
        """Send what is due now; returns the seconds to sleep before the next step."""
        now = self.clock.now()
        self._chores(now)
        earliest = self._earliest()
        if earliest is not None and earliest <= now:
            with database_errors(self.alias, "beat: due periodic tasks", BeatStoreError):
                due = list(self._tasks().filter(enabled=True, next_run_at__lte=now)
                           .select_related(*("interval", "crontab", "solar", "clocked"))
                           .order_by("next_run_at")[:BATCH])
            for task in due:
                self._run_due(task, now)
            if len(due) == BATCH:
                return 0.0
            earliest = self._earliest()
        # Listening for edits (PostgreSQL), beat wakes only to write its liveness.
        wait = min(LIVENESS_INTERVAL if self.listens else self.sync_interval, self.max_interval)
        if earliest is not None:
            wait = min(wait, (earliest - self.clock.now()).total_seconds())
        return max(wait, 0.0)

    def _earliest(self) -> datetime | None:
        """The next run of all enabled tasks: one indexed MIN, all an idle step costs."""
        with database_errors(self.alias, "beat: next run", BeatStoreError):
            earliest: datetime | None = self._tasks().filter(enabled=True).aggregate(
                at=Min("next_run_at"))["at"]
        return earliest

    def _run_due(self, task: PeriodicTask, now: datetime) -> None:
        """Fire the ticks of one due task and move its next run on."""
        try:
            schedule = task.schedule()
        except TaskqError as exc:
            logger.error("Periodic task %r cannot run: %s", task.name, exc)
            self._move(task, {"next_run_at": None})
            return
        ticks = due_ticks(task, schedule, now)
        sent: list[str] = []
        for tick in ticks:
            try:
                task_id = self.claimer.fire(task, tick, now)
            except ServiceError:
                raise  # the broker or database is down: the step fails, nothing is lost
            except Exception:  # noqa: BLE001 - one bad entry must not stop the others
                logger.exception("Periodic task %r: the run due at %s was not sent", task.name,
                                 tick.isoformat())
                continue
            if task_id is not None:
                sent.append(task_id)
                logger.info("Sent %s[%s] for %r (due %s)", task.task, task_id, task.name,
                            tick.isoformat())
        if len(ticks) == 0 and task.next_run_at is not None:
            logger.info("Periodic task %r: skipped the run due at %s (catch-up policy %r)",
                        task.name, task.next_run_at.isoformat(), task.catch_up)
        self._record(task, schedule, now, ticks, sent)

    def _record(self, task: PeriodicTask, schedule: Any, now: datetime, ticks: list[datetime],
                sent: list[str]) -> None:
        if sent:
            with database_errors(self.alias, "beat: record a run", BeatStoreError):
                self._tasks().filter(pk=task.pk).update(
                    last_run_at=now, total_run_count=F("total_run_count") + len(sent),
                    last_task_id=sent[-1])
        changes: dict[str, Any] = {
            "next_run_at": next_run(task, schedule, now, ticks[-1] if ticks else None)}
        if task.one_off and ticks:
            changes = {"next_run_at": None, "enabled": False}
        elif changes["next_run_at"] is None:
            changes["enabled"] = False  # no tick left (clocked, or past its expiry)
            logger.info("Periodic task %r has no run left: disabled", task.name)
        self._move(task, changes)

    def _move(self, task: PeriodicTask, changes: dict[str, Any]) -> None:
        """Apply ``changes`` unless someone moved the task meanwhile: another beat (its next run
        changed) or an edit (every save stamps ``date_changed``, even one that computed the same
        next run)."""
        with database_errors(self.alias, "beat: move the next run", BeatStoreError):
            self._tasks().filter(pk=task.pk, next_run_at=task.next_run_at,
                                 date_changed=task.date_changed).update(**changes)

    def _chores(self, now: datetime) -> None:
        """Liveness and takeover of unsent claims every LIVENESS_INTERVAL; prunes hourly."""
        if self._chores_at is not None and \
                (now - self._chores_at).total_seconds() < LIVENESS_INTERVAL:
            return
        self._chores_at = now
        self.alive(now)
        self.claimer.resend_stale(now)
        self.repair(now)
        if self._pruned_at is None or (now - self._pruned_at).total_seconds() >= PRUNE_INTERVAL:
            self._pruned_at = now
            self.prune(now)

    def alive(self, now: datetime) -> None:
        """Record that this beat is ticking (the admin's liveness warning reads it)."""
        with database_errors(self.alias, "beat: liveness", BeatStoreError):
            BeatInstance.objects.using(self.alias).update_or_create(
                ident=self.ident, defaults={
                    "host": socket.gethostname(), "pid": os.getpid(), "last_tick_at": now,
                    "started_at": self.started_at, "embedded": self.embedded})

    def repair(self, now: datetime) -> None:
        """Enabled tasks without a next run (switched on by a queryset ``update()``, which
        bypasses ``save()``): compute it, or disable a task that has no run left."""
        with database_errors(self.alias, "beat: repair", BeatStoreError):
            for task in self._tasks().filter(enabled=True, next_run_at__isnull=True)[:BATCH]:
                upcoming = first_run(task, now)
                changes: dict[str, Any] = (
                    {"next_run_at": upcoming} if upcoming else {"enabled": False})
                self._tasks().filter(pk=task.pk, next_run_at__isnull=True).update(**changes)

    def prune(self, now: datetime) -> None:
        """Forget claims older than BEAT_RUN_HISTORY (sent, or given up) and beats silent for
        as long."""
        cutoff = now - timedelta(seconds=self.history)
        with database_errors(self.alias, "beat: prune", BeatStoreError):
            PeriodicTaskRun.objects.using(self.alias).filter(
                sent_at__isnull=False, tick__lt=cutoff).delete()
            # Claims that could never be sent (their errors are logged at every attempt).
            given_up = PeriodicTaskRun.objects.using(self.alias).filter(
                sent_at__isnull=True, tick__lt=cutoff)
            for run in given_up.select_related("periodic_task")[:BATCH]:
                logger.error("Periodic task %r: giving up on the run due at %s (task id %s): "
                             "it could not be sent for BEAT_RUN_HISTORY", run.periodic_task.name,
                             run.tick.isoformat(), run.task_id)
            given_up.delete()
            BeatInstance.objects.using(self.alias).filter(last_tick_at__lt=cutoff).delete()

    def stop(self) -> None:
        """A beat that stops cleanly removes its liveness row."""
        with database_errors(self.alias, "beat: stop", BeatStoreError):
            BeatInstance.objects.using(self.alias).filter(ident=self.ident).delete()
