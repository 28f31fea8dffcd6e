"""Admin pages: task results, queued messages and dead letters, read-only."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import DeadLetterMessage, QueuedMessage, TaskResult


class ReadOnlyAdmin(admin.ModelAdmin):
    """Shows rows; nothing here is added or edited by hand (the queue owns these tables)."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(TaskResult)
class TaskResultAdmin(ReadOnlyAdmin):
    list_display = ("task_id", "task_name", "state", "worker", "retries", "date_created",
                    "date_done")
    list_filter = ("state", "task_name", "worker")
    search_fields = ("task_id", "task_name")
    date_hierarchy = "date_created"
    readonly_fields = ("task_id", "task_name", "state", "result", "traceback", "worker",
                       "retries", "date_created", "date_started", "date_done")
    fields = readonly_fields


class MessageAdmin(ReadOnlyAdmin):
    search_fields = ("message_id", "task_name")
    list_filter = ("queue", "task_name")
    exclude = ("body", "headers", "properties")

    @admin.display(description="body")
    def body_text(self, obj: Any) -> str:
        return str(obj.body_preview())


@admin.register(QueuedMessage)
class QueuedMessageAdmin(MessageAdmin):
    list_display = ("message_id", "task_name", "queue", "state", "priority", "available_at",
                    "attempts", "locked_until", "locked_by")
    list_filter = ("state", "queue", "task_name")
    readonly_fields = ("message_id", "task_name", "queue", "state", "priority", "available_at",
                       "attempts", "locked_until", "locked_by", "created_at", "body_text")


@admin.register(DeadLetterMessage)
class DeadLetterAdmin(MessageAdmin):
    list_display = ("message_id", "task_name", "queue", "reason", "attempts", "dead_at")
    readonly_fields = ("message_id", "task_name", "queue", "reason", "priority", "attempts",
                       "created_at", "dead_at", "body_text")
