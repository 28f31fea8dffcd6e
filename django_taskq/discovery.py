"""Finding task modules: every installed app's ``tasks`` module (TASK_MODULES names others),
the modules of ``IMPORTS`` (Celery's ``imports`` and ``include``), and packages a Celery-style
app object asked for with ``autodiscover_tasks``.

Run from ``AppConfig.ready()``. A wrong TASK_MODULES/IMPORTS value is left to the system
checks (E002): discovery then falls back to the defaults so that ``manage.py check`` can run.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

from django.apps import apps
from django.utils.module_loading import autodiscover_modules, module_has_submodule

from .exceptions import ConfigurationError

logger = logging.getLogger(__name__)

#: (packages or a function returning them, module name) asked for by ``app.autodiscover_tasks``.
_requested: list[tuple[Iterable[str] | Callable[[], Iterable[str]] | None, str]] = []


def _setting(key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    from .conf import _CONVERTERS, raw_settings

    try:
        value = raw_settings().get(key, default)
        return tuple(_CONVERTERS[key](value))
    except (TypeError, ConfigurationError):
        return default  # reported by the system checks


def discover() -> list[str]:
    """Import every task module; returns the names of the modules imported from IMPORTS and
    requested packages (apps' modules are imported by Django's autodiscovery).

    Raises:
        ConfigurationError: a module named in IMPORTS (or asked for) cannot be imported.
    """
    names = _setting("TASK_MODULES", ("tasks",))
    autodiscover_modules(*names)
    importlib.import_module("django_taskq.tasks")  # built-in housekeeping, whatever TASK_MODULES
    imported = [_import(module, "TASKQ['IMPORTS']") for module in _setting("IMPORTS", ())]
    for packages, related_name in list(_requested):
        imported += _discover_packages(packages, related_name)
    return imported


def request(packages: Iterable[str] | Callable[[], Iterable[str]] | None,
            related_name: str) -> None:
    """Remember a Celery-style ``autodiscover_tasks`` call; run it now if Django is ready."""
    _requested.append((packages, related_name))
    if apps.ready:
        if packages is None:
            autodiscover_modules(related_name)
        else:
            _discover_packages(packages, related_name)


def _discover_packages(packages: Any, related_name: str) -> list[str]:
    if packages is None:
        autodiscover_modules(related_name)
        return []
    found = []
    for entry in (packages() if callable(packages) else packages):
        package = _package_of(entry)
        module = importlib.import_module(package)
        if module_has_submodule(module, related_name):
            found.append(_import(f"{package}.{related_name}", "autodiscover_tasks"))
    return found


def _package_of(entry: str) -> str:
    """An INSTALLED_APPS entry as a package: an AppConfig's dotted path gives its app's
    name (``lambda: settings.INSTALLED_APPS`` may hold both forms)."""
    for config in apps.get_app_configs():
        if entry == f"{type(config).__module__}.{type(config).__qualname__}":
            return config.name
    return entry


def _import(name: str, source: str) -> str:
    try:
        importlib.import_module(name)
    except ImportError as exc:
        raise ConfigurationError(f"{source} names module {name!r}, which cannot be imported: "
                                 f"{exc}. Fix the name or remove it.") from exc
    return name
