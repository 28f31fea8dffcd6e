"""The Django app: registers checks and receivers, and imports the task modules (discovery.py)."""

from __future__ import annotations

from django.apps import AppConfig
from django.core.signals import setting_changed


class TaskqConfig(AppConfig):
    name = "django_taskq"
    verbose_name = "Task queue"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401 - registers the system checks
        from .beat import checks as beat_checks  # noqa: F401 - and those of beat
        from .conf import reset_settings
        from .signals import import_modules, send

        setting_changed.connect(reset_settings, dispatch_uid="django_taskq.reset_settings")
        send(import_modules, self)  # Celery's moment: just before the task modules are imported
        from .app import announce
        from .discovery import discover

        discover()
        announce()
