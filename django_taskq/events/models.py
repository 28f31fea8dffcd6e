"""Monitoring tables: workers, stored events, per-minute and total counters, the control mailbox.

Everything here is written by workers (through ``events/store.py`` and the database control
store) and read by the admin dashboard, ``manage.py taskq`` and the Prometheus view, so the
picture survives restarts (Flower keeps it in memory and forgets it).
"""

from __future__ import annotations

from datetime import timedelta

from django.db import models
from django.utils import timezone

#: A worker is offline when no heartbeat came for this many heartbeat periods (Celery's
#: expire window is 200 %).
EXPIRE_WINDOW = 2.0


class WorkerState(models.Model):
    """One worker (by hostname): what it said in its last ``worker-*`` event."""

    hostname = models.CharField(max_length=255, unique=True)
    pid = models.IntegerField(default=0)
    pool = models.CharField(max_length=20, blank=True, default="")
    concurrency = models.PositiveIntegerField(default=0)
    queues = models.JSONField(default=list)
    sw_ident = models.CharField(max_length=50, blank=True, default="")
    sw_ver = models.CharField(max_length=50, blank=True, default="")
    started_at = models.DateTimeField(default=timezone.now)
    last_heartbeat = models.DateTimeField(default=timezone.now, db_index=True)
    freq = models.FloatField(default=2.0, help_text="seconds between heartbeats")
    stopped_at = models.DateTimeField(null=True, blank=True, help_text="worker-offline seen")
    active = models.PositiveIntegerField(default=0, help_text="tasks running at last heartbeat")
    processed = models.PositiveBigIntegerField(default=0)
    loadavg = models.JSONField(default=list)

    class Meta:
        db_table = "taskq_worker"
        verbose_name = "worker"
        ordering = ["hostname"]

    def __str__(self) -> str:
        return self.hostname

    @property
    def online(self) -> bool:
        """Heart-beating and not stopped (Celery's rule: a missed window means offline)."""
        if self.stopped_at is not None:
            return False
        deadline = self.last_heartbeat + timedelta(seconds=self.freq * EXPIRE_WINDOW + 1)
        return timezone.now() <= deadline


class TaskEvent(models.Model):
    """A task event as Celery names and shapes it (``fields`` is the event dict), or a worker's
    ``worker-online``/``worker-offline``; kept for ``EVENTS_EXPIRES`` seconds."""

    type = models.CharField(max_length=32)
    task_id = models.CharField(max_length=255, blank=True, default="")
    task_name = models.CharField(max_length=255, blank=True, default="")
    hostname = models.CharField(max_length=255, blank=True, default="")
    timestamp = models.DateTimeField()
    fields = models.JSONField(default=dict)

    class Meta:
        db_table = "taskq_event"
        verbose_name = "event"
        ordering = ["timestamp", "id"]
        indexes = [
            models.Index(fields=["task_id", "timestamp"], name="taskq_event_task"),
            models.Index(fields=["timestamp"], name="taskq_event_time"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.task_id or self.hostname}"


#: The counters kept per minute and task name (the columns of TaskMinute).
MINUTE_COUNTS = ("received", "started", "succeeded", "failed", "retried", "rejected", "revoked")


class TaskMinute(models.Model):
    """How many tasks of one name reached each state within one minute (the dashboard charts);
    kept for ``EVENTS_EXPIRES``."""

    minute = models.DateTimeField()
    task_name = models.CharField(max_length=255)
    received = models.PositiveIntegerField(default=0)
    started = models.PositiveIntegerField(default=0)
    succeeded = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    retried = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    revoked = models.PositiveIntegerField(default=0)
    runtime_sum = models.FloatField(default=0.0, help_text="seconds, finished runs")

    class Meta:
        db_table = "taskq_taskminute"
        verbose_name = "task minute"
        constraints = [models.UniqueConstraint(fields=["minute", "task_name"],
                                               name="taskq_minute_unique")]
        indexes = [models.Index(fields=["minute"], name="taskq_minute_time")]


class TaskCounter(models.Model):
    """A monotonic total since the table was made (never pruned): ``key`` is ``state:SUCCESS``,
    ``runtime:sum``, ``runtime:count`` or ``runtime:le:<bound>`` (Prometheus reads these)."""

    task_name = models.CharField(max_length=255)
    key = models.CharField(max_length=64)
    value = models.FloatField(default=0.0)

    class Meta:
        db_table = "taskq_taskcounter"
        verbose_name = "task counter"
        constraints = [models.UniqueConstraint(fields=["task_name", "key"],
                                               name="taskq_counter_unique")]


class ControlCommand(models.Model):
    """A remote-control command broadcast to workers (the database control store's mailbox)."""

    command_id = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=64)
    arguments = models.JSONField(default=dict)
    destination = models.JSONField(null=True, blank=True, help_text="hostnames; null: every one")
    reply = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        db_table = "taskq_controlcommand"
        verbose_name = "control command"


class ControlReply(models.Model):
    """One worker's reply to a :class:`ControlCommand`."""

    command_id = models.CharField(max_length=64, db_index=True)
    hostname = models.CharField(max_length=255)
    reply = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        db_table = "taskq_controlreply"
        verbose_name = "control reply"
