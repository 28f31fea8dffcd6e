"""Database tables: queued messages and dead letters (database broker), task results."""

from __future__ import annotations

import json

from django.db import models
from django.utils import timezone


class MessageFields(models.Model):
    """What a stored message keeps of its envelope: Celery protocol v2 headers and body bytes."""

    queue = models.CharField(max_length=200)
    message_id = models.CharField("task id", max_length=255, db_index=True)
    task_name = models.CharField(max_length=255)
    priority = models.PositiveSmallIntegerField(default=0, help_text="0-9, higher runs first")
    headers = models.JSONField(default=dict)
    properties = models.JSONField(default=dict)
    body = models.BinaryField()
    content_type = models.CharField(max_length=100, default="application/json")
    content_encoding = models.CharField(max_length=50, default="utf-8")
    attempts = models.PositiveIntegerField(default=0, help_text="deliveries so far")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        abstract = True

    def body_preview(self) -> str:
        """The body as text for the admin: JSON only, decompressed and decoded within
        MESSAGE_MAX_BYTES and JSON_MAX_DEPTH (a hostile body is shown as its size, never a
        500); nothing else is ever deserialized here."""
        from .exceptions import TaskqError
        from .message import Envelope, decode_body
        from .sensitive import scrub

        raw = bytes(self.body or b"")
        headers = self.headers if isinstance(self.headers, dict) else {}
        envelope = Envelope(queue=self.queue, body=raw, headers=headers,
                            content_type=self.content_type,
                            content_encoding=self.content_encoding)
        try:
            body = scrub(decode_body(envelope, ("json",)))  # a sensitive later step's too
            return json.dumps(body, indent=2, default=str)[:4000]
        except TaskqError:
            return f"<{len(raw)} bytes of {self.content_type}>"


class QueuedMessage(MessageFields):
    """A message waiting in, or leased from, the database broker."""

    READY = "ready"
    RESERVED = "reserved"
    STATES = [(READY, "ready"), (RESERVED, "reserved")]

    state = models.CharField(max_length=10, choices=STATES, default=READY)
    available_at = models.DateTimeField(default=timezone.now, help_text="not run before this")
    locked_until = models.DateTimeField(null=True, blank=True, help_text="lease deadline")
    locked_by = models.CharField(max_length=255, blank=True, default="",
                                 help_text="the worker and claim holding the lease")

    class Meta:
        db_table = "taskq_message"
        verbose_name = "queued message"
        indexes = [
            models.Index(fields=["state", "queue", "-priority", "available_at", "id"],
                         name="taskq_msg_claim"),
            models.Index(fields=["state", "locked_until"], name="taskq_msg_lease"),
        ]

    def __str__(self) -> str:
        return f"{self.task_name}[{self.message_id}]"


class DeadLetterMessage(MessageFields):
    """A message the worker refused or gave up on, with the reason; it can be inspected."""

    reason = models.TextField()
    dead_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        db_table = "taskq_deadletter"
        verbose_name = "dead letter"
        permissions = [("requeue_deadlettermessage", "Can requeue dead letters")]

    def __str__(self) -> str:
        return f"{self.task_name}[{self.message_id}]"


class TaskResult(models.Model):
    """State and result of one task id (the database result backend)."""

    task_id = models.CharField(max_length=255, unique=True)
    task_name = models.CharField(max_length=255, blank=True, default="")
    state = models.CharField(max_length=50, default="PENDING", db_index=True)
    result = models.TextField(null=True, blank=True, help_text="encoded return value or error")
    content_type = models.CharField(max_length=100, default="application/json")
    content_encoding = models.CharField(max_length=50, default="utf-8")
    traceback = models.TextField(null=True, blank=True)
    worker = models.CharField(max_length=255, blank=True, default="")
    retries = models.PositiveIntegerField(default=0)
    date_created = models.DateTimeField(default=timezone.now)
    date_started = models.DateTimeField(null=True, blank=True)
    date_done = models.DateTimeField(null=True, blank=True, db_index=True)
    # Extended results (RESULT_EXTENDED), encoded like ``result`` (same content type).
    task_args = models.TextField(null=True, blank=True, help_text="encoded positional arguments")
    task_kwargs = models.TextField(null=True, blank=True, help_text="encoded keyword arguments")
    queue = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        db_table = "taskq_result"
        verbose_name = "task result"
        ordering = ["-date_created"]
        permissions = [("retry_taskresult", "Can retry failed tasks (send them again)")]
        # The dashboard's and admin's searches stay index scans with millions of results.
        indexes = [
            models.Index(fields=["-date_created"], name="taskq_result_created"),
            models.Index(fields=["state", "-date_done"], name="taskq_result_state_done"),
            models.Index(fields=["task_name", "-date_created"], name="taskq_result_name"),
            models.Index(fields=["worker", "-date_created"], name="taskq_result_worker"),
        ]

    def __str__(self) -> str:
        return f"{self.task_name or 'task'}[{self.task_id}] {self.state}"


class GroupResultRecord(models.Model):
    """The member task ids of a saved GroupResult (``GroupResult.save()``, database backend)."""

    group_id = models.CharField(max_length=255, unique=True)
    task_ids = models.JSONField(default=list, help_text="member task ids, in member order")
    date_created = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        db_table = "taskq_groupresult"
        verbose_name = "group result"

    def __str__(self) -> str:
        return f"group[{self.group_id}] ({len(self.task_ids)} tasks)"


class ChordRecord(models.Model):
    """A chord waiting for its header tasks (database result backend): how many it waits for,
    how many finished, and which header task completed it (the claim that starts the body
    once)."""

    group_id = models.CharField(max_length=255, unique=True)
    size = models.PositiveIntegerField()
    done = models.PositiveIntegerField(default=0, help_text="header tasks counted so far")
    completed_by = models.CharField(max_length=255, null=True, blank=True)
    sent = models.BooleanField(default=False)
    date_created = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        db_table = "taskq_chord"
        verbose_name = "chord"

    def __str__(self) -> str:
        return f"chord[{self.group_id}] ({self.size} header tasks)"


class ChordPartRecord(models.Model):
    """One finished header task of a chord, with its encoded result (counted once per task)."""

    group_id = models.CharField(max_length=255)
    task_id = models.CharField(max_length=255)
    index = models.IntegerField(default=-1)
    state = models.CharField(max_length=50)
    result = models.TextField(null=True)
    content_type = models.CharField(max_length=128, default="application/json")
    content_encoding = models.CharField(max_length=64, default="utf-8")

    class Meta:
        db_table = "taskq_chordpart"
        verbose_name = "chord part"
        # Celery counts ``<task id>:<index>``: one frozen signature twice in a header is two.
        constraints = [models.UniqueConstraint(fields=["group_id", "task_id", "index"],
                                               name="taskq_chordpart_once")]


class RateBucket(models.Model):
    """One global rate limit bucket of the database control store (see docs/control-store.md).

    The bucket is kept as the single number of the generic cell rate algorithm: the Unix time at
    which it is full again. A row whose ``full_at`` has passed means a full bucket, so it can be
    deleted (``ControlStore.prune()``) and recreated later without changing any answer.
    """

    name = models.CharField(max_length=255, unique=True)
    full_at = models.FloatField(db_index=True, help_text="Unix time at which the bucket is full")

    class Meta:
        db_table = "taskq_ratebucket"
        verbose_name = "rate limit bucket"

    def __str__(self) -> str:
        return self.name


class Revocation(models.Model):
    """A revoked task id, kept until ``expires_at`` (the database control store)."""

    task_id = models.CharField(max_length=255, unique=True)
    terminate = models.BooleanField(default=False, help_text="kill the task if it is running")
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        db_table = "taskq_revocation"
        verbose_name = "revocation"

    def __str__(self) -> str:
        return self.task_id


# Beat's tables live in beat/models.py; importing them here registers them with this app.
from .beat.models import (  # noqa: E402
    BeatInstance,
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    PeriodicTaskRun,
    SolarSchedule,
)

# Monitoring's tables live in events/models.py, imported here for the same reason.
from .events.models import (  # noqa: E402
    ControlCommand,
    ControlReply,
    TaskCounter,
    TaskEvent,
    TaskMinute,
    WorkerState,
)

__all__ = ["BeatInstance", "ControlCommand", "ControlReply", "TaskCounter", "TaskEvent",
           "TaskMinute", "WorkerState", "ClockedSchedule", "CrontabSchedule", "DeadLetterMessage",
           "GroupResultRecord", "IntervalSchedule", "PeriodicTask", "PeriodicTaskRun",
           "QueuedMessage", "RateBucket", "Revocation", "SolarSchedule", "TaskResult"]
