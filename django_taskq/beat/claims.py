"""Fire one tick exactly once: claim ``(periodic task, tick)`` under a UNIQUE constraint, then send.

On the database broker (same database as beat's tables) the claim and the task's message commit
in one transaction: either both exist or neither, and a beat that dies in between leaves nothing.
On the other brokers the claim commits first (so no other beat sends the tick), then the message
is sent, then the claim is marked sent. A beat that dies between claim and send leaves a claim
without ``sent_at``; after ``BEAT_CLAIM_TIMEOUT`` another beat takes it over (a conditional
UPDATE that one beat wins) and sends it. Every send of a tick carries the same task id, derived
from the task's name and the tick, so no two beats ever produce two different tasks for one tick.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F

from ..engines import database_errors
from ..exceptions import BeatStoreError, ServiceError
from ..producer import send_task
from .models import PeriodicTask, PeriodicTaskRun

logger = logging.getLogger("django_taskq.beat")

#: uuid5 namespace of the task ids derived from ticks.
TICK_NAMESPACE = uuid.UUID("9a3c1f0e-5be1-4c8e-9b7a-2f1d0c6e4b11")
#: The header Celery beat (and django-celery-beat) put on every message it sends.
PERIODIC_HEADER = "periodic_task_name"


def tick_task_id(name: str, tick: datetime) -> str:
    """The task id of a tick: the same in every beat process, for every send of that tick."""
    return str(uuid.uuid5(TICK_NAMESPACE, f"{name}\n{tick.isoformat()}"))


def send_options(task: PeriodicTask, now: datetime) -> dict[str, Any]:
    """apply_async options for one run of ``task``, sent at ``now``."""
    options: dict[str, Any] = {"headers": {**(task.headers or {}),
                                           PERIODIC_HEADER: task.name}}
    if task.queue:
        options["queue"] = task.queue
    if task.priority is not None:
        options["priority"] = task.priority
    if task.expire_seconds is not None:  # from the send, as apply_async(expires=seconds)
        options["expires"] = now + timedelta(seconds=task.expire_seconds)
    elif task.expires is not None:
        options["expires"] = task.expires
    return options


def send_run(task: PeriodicTask, now: datetime, task_id: str | None = None) -> str:
    """Send one run of ``task`` at ``now`` (the tick's id, or a new one for "run now");
    returns its task id."""
    result = send_task(task.task, list(task.args or []), dict(task.kwargs or {}),
                       task_id=task_id, **send_options(task, now))
    return str(result.id)


class Claimer:
    """Claims and sends ticks for one beat process (``ident``) on database ``alias``."""

    def __init__(self, alias: str, ident: str, claim_timeout: float) -> None:
        self.alias = alias
        self.ident = ident
        self.claim_timeout = claim_timeout

    def _runs(self) -> Any:
        return PeriodicTaskRun.objects.using(self.alias)

    def fire(self, task: PeriodicTask, tick: datetime, now: datetime) -> str | None:
        """Claim and send ``tick``; returns its task id, or None when another beat has it."""
        task_id = tick_task_id(task.name, tick)
        run = PeriodicTaskRun(periodic_task=task, tick=tick, task_id=task_id,
                              claimed_by=self.ident, claimed_at=now)
        if self._joins_broker_transaction():
            with database_errors(self.alias, "beat claim", BeatStoreError), \
                    transaction.atomic(using=self.alias):
                run.sent_at = now
                if not self._insert(run):
                    return None
                send_run(task, now, task_id)
            return task_id
        with database_errors(self.alias, "beat claim", BeatStoreError):
            if not self._insert(run):
                return None
        send_run(task, now, task_id)
        self._mark_sent(run.pk, now)
        return task_id

    def _insert(self, run: PeriodicTaskRun) -> bool:
        """Insert the claim; False when the tick is already claimed (by anyone)."""
        try:
            with transaction.atomic(using=self.alias):
                run.save(using=self.alias, force_insert=True)
        except IntegrityError:
            return False
        return True

    def _mark_sent(self, pk: int, now: datetime) -> None:
        with database_errors(self.alias, "beat claim", BeatStoreError):
            self._runs().filter(pk=pk).update(sent_at=now)

    def _joins_broker_transaction(self) -> bool:
        from ..brokers import get_broker

        broker = get_broker()
        return bool(broker.transactional and getattr(broker, "alias", None) == self.alias)

    def resend_stale(self, now: datetime) -> int:
        """Send claims whose beat died before sending (claimed longer ago than the timeout);
        a conditional UPDATE makes one beat the new owner of each. Returns how many."""
        cutoff = now - timedelta(seconds=self.claim_timeout)
        with database_errors(self.alias, "beat claim", BeatStoreError):
            stale = list(self._runs().filter(sent_at__isnull=True, claimed_at__lt=cutoff)
                         .select_related("periodic_task").order_by("claimed_at")[:100])
        sent = 0
        for run in stale:
            with database_errors(self.alias, "beat claim", BeatStoreError):
                taken = self._runs().filter(pk=run.pk, sent_at__isnull=True,
                                            claimed_at=run.claimed_at).update(
                    claimed_by=self.ident, claimed_at=now)
            if not taken:
                continue
            try:
                self._resend(run, now)
            except ServiceError:
                raise
            except Exception:  # noqa: BLE001 - one bad entry must not stop the others
                logger.exception("Periodic task %r: the run due at %s was not sent",
                                 run.periodic_task.name, run.tick.isoformat())
                continue
            sent += 1
        return sent

    def _resend(self, run: PeriodicTaskRun, now: datetime) -> None:
        logger.warning("Sending %s for %r again: the beat %s claimed it at %s and never "
                       "sent it", run.task_id, run.periodic_task.name, run.claimed_by,
                       run.claimed_at.isoformat())
        send_run(run.periodic_task, now, run.task_id)
        self._mark_sent(run.pk, now)
        self._count_resent(run, now)

    def _count_resent(self, run: PeriodicTaskRun, now: datetime) -> None:
        """The tick's run counts for its task; it is the last run unless a later tick was sent."""
        tasks = PeriodicTask.objects.using(self.alias).filter(pk=run.periodic_task_id)
        later = self._runs().filter(periodic_task_id=run.periodic_task_id, tick__gt=run.tick,
                                    sent_at__isnull=False).exists()
        with database_errors(self.alias, "beat claim", BeatStoreError):
            tasks.update(total_run_count=F("total_run_count") + 1)
            if not later:
                tasks.update(last_run_at=now, last_task_id=run.task_id)
