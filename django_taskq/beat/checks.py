"""System checks for schedules declared in code (``BEAT_SCHEDULE``, ``add_periodic_task``).

- django_taskq.E012: a declared beat entry cannot be used (bad schedule, keys or options).
- django_taskq.W015: a declared beat entry names a task that is not registered in this process.
- django_taskq.E013: BEAT_DATABASE names no database in DATABASES.

Rows edited in the admin are checked by its form (the task must be registered); checks never
read the database (they run before ``migrate``).
"""

from __future__ import annotations

from typing import Any

from django.core import checks

from ..exceptions import ConfigurationError


@checks.register("django_taskq")
def check_beat_schedule(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from ..conf import get_settings
    from ..registry import registry
    from . import declared
    from .declared import declared_entries, make_entry

    try:
        schedule = get_settings().BEAT_SCHEDULE
    except ConfigurationError:
        return []  # an E002 of check_settings
    messages: list[checks.CheckMessage] = []
    for name, spec in schedule.items():
        try:
            make_entry(name, spec)
        except ConfigurationError as exc:
            messages.append(checks.Error(str(exc), hint="Fix TASKQ['BEAT_SCHEDULE'] (or "
                                         "CELERY_BEAT_SCHEDULE).", id="django_taskq.E012"))
    for problem in declared.refused.values():
        messages.append(checks.Error(problem, hint="Fix the add_periodic_task() call.",
                                     id="django_taskq.E012"))
    if messages:
        return messages
    for entry in declared_entries().values():
        if entry.task not in registry:
            messages.append(checks.Warning(
                f"Beat entry {entry.name!r} sends task {entry.task!r}, which is not registered "
                f"here: workers that do not know it will dead-letter its messages.",
                hint="Check the name (a typo?) or the module that defines it (TASK_MODULES, "
                     "IMPORTS).", id="django_taskq.W015"))
    return messages


@checks.register("django_taskq")
def check_beat_database(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    from django.conf import settings

    from ..conf import get_settings

    try:
        alias = get_settings().BEAT_DATABASE
    except ConfigurationError:
        return []  # an E002 of check_settings
    if alias in settings.DATABASES:
        return []
    return [checks.Error(f"TASKQ['BEAT_DATABASE'] = {alias!r} is not a database alias.",
                         hint=f"Use one of {', '.join(sorted(settings.DATABASES))} (beat's "
                              "schedules, claims and liveness live there).",
                         id="django_taskq.E013")]
