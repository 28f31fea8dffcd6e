"""Moving a Celery project to django_taskq: the import table, and the one settings line.

The same table is printed in docs/moving-from-celery.md. tests/test_celery_project.py converts
tests/celery_project with it and checks that nothing else changed.
"""

from __future__ import annotations

import re

#: Celery module → django_taskq module, for ``from <module> import ...`` lines. The names
#: imported stay the same (``Celery``, ``shared_task``, ``Task``, ``current_task``,
#: ``current_app``, ``states``, ``get_task_logger``, every signal, ``Reject``, ``Ignore``,
#: ``Retry``, ``MaxRetriesExceededError``, ``SoftTimeLimitExceeded``, ``AsyncResult``, ...).
IMPORTS: dict[str, str] = {
    "celery": "django_taskq",
    "celery.app.task": "django_taskq",
    "celery.canvas": "django_taskq.canvas",
    "celery.exceptions": "django_taskq.exceptions",
    "celery.result": "django_taskq.result",
    "celery.schedules": "django_taskq.schedules",
    "celery.signals": "django_taskq.signals",
    "celery.states": "django_taskq.states",
    "celery.utils.log": "django_taskq",
}

#: The app the project adds to INSTALLED_APPS (tables for the database broker and results,
#: ``manage.py taskworker``, task discovery), in place of django_celery_results if it had it.
INSTALLED_APP = "django_taskq"

_FROM_IMPORT = re.compile(r"^(?P<indent>\s*from\s+)(?P<module>celery(?:\.[\w.]+)?)(?=\s+import\b)",
                          re.MULTILINE)


class UnmappedImport(LookupError):
    """A ``from celery... import`` line whose module the table does not have."""


def convert_source(text: str) -> str:
    """``text`` with every ``from celery... import`` line pointed at django_taskq.

    Raises:
        UnmappedImport: a Celery module the table does not map (a feature not offered yet).
    """
    def replace(match: re.Match[str]) -> str:
        module = match["module"]
        if module not in IMPORTS:
            raise UnmappedImport(f"no django_taskq module for 'from {module} import ...'")
        return match["indent"] + IMPORTS[module]

    return _FROM_IMPORT.sub(replace, text)


def add_installed_app(settings_text: str) -> str:
    """``settings_text`` with INSTALLED_APP first in INSTALLED_APPS (replacing
    ``"django_celery_results"`` when the project lists it)."""
    if '"django_celery_results"' in settings_text:
        return settings_text.replace('"django_celery_results"', f'"{INSTALLED_APP}"', 1)
    start = settings_text.index("INSTALLED_APPS = [") + len("INSTALLED_APPS = [")
    return f'{settings_text[:start]}\n    "{INSTALLED_APP}",{settings_text[start:]}'
