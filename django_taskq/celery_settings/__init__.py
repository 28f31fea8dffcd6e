"""Celery's settings in Django settings: honoured as TASKQ keys, or explained by a system check.

A project moving from Celery keeps its ``CELERY_TASK_ALWAYS_EAGER``-style settings (Celery's
``config_from_object("django.conf:settings", namespace="CELERY")``) or the pre-4.0 names
(``CELERY_ALWAYS_EAGER``, ``CELERYD_CONCURRENCY``, ``BROKER_URL``). Every setting of Celery 5.7
(celery/app/defaults.py) is in exactly one table:

- ``translated.HONOURED``: translated to the TASKQ key with the same meaning and merged under
  ``TASKQ`` by ``conf.raw_settings()``; a TASKQ key (or its environment override) wins;
- ``explained.EXPLAINED``: not read; a check says what replaces it, why it is not needed, or
  which issue brings it.

A ``CELERY*`` name in neither is reported as a probable typo (``names.py`` says which names are
read). Nothing is read at import time; docs/settings.md has the table in prose and the check ids.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..conf import _CONVERTERS, _POSITIVE_SECONDS
from ..exceptions import ConfigurationError
from ..service_url import mask_text
from .explained import CONFLICT, ERROR, EXPLAINED, NO_EFFECT, NOT_YET, UNKNOWN
from .names import SETTINGS, django_names, watches
from .translated import HONOURED, Refused

__all__ = ["CONFLICT", "ERROR", "EXPLAINED", "HONOURED", "NOT_YET", "NO_EFFECT", "SETTINGS",
           "UNKNOWN", "CelerySettingError", "Note", "Translation", "code_settings",
           "honoured_values", "translate", "watches"]

#: Environment variables Celery reads over its settings, and the ones django_taskq reads.
_ENVIRONMENT = {"CELERY_BROKER_URL": ("broker_url", "TASKQ_BROKER_URL"),
                "CELERY_RESULT_BACKEND": ("result_backend", "TASKQ_RESULT_BACKEND")}
_UNREAD = {NO_EFFECT: "{} has no effect in django_taskq.", NOT_YET: "{} is not supported yet."}


#: Celery settings given in code, by lowercase Celery name (``app.conf``, ``Celery(broker=)``).
code_settings: dict[str, Any] = {}


class CelerySettingError(ConfigurationError):
    """A honoured Celery setting has a value django_taskq cannot use; the message names it."""


@dataclass(frozen=True, slots=True)
class Note:
    """What a system check says about one Celery setting; ``kind`` picks the check id."""

    kind: str
    setting: str
    message: str
    hint: str


@dataclass(slots=True)
class Translation:
    """The TASKQ values honoured from Celery settings, the setting each came from, and notes."""

    values: dict[str, Any] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)
    notes: list[Note] = field(default_factory=list)


def translate(taken: Mapping[str, Any]) -> Translation:
    """Read the Celery settings from Django settings into TASKQ values and notes.

    Args:
        taken: the TASKQ dict with its environment overrides; its keys win over Celery's.
    """
    from django.conf import settings

    present = {name: getattr(settings, name) for name in dir(settings) if watches(name)}
    # Set on a Celery-style app object (``app.conf.task_routes = ...``): as in Celery, what
    # the code sets after reading the settings wins over them.
    present.update({"CELERY_" + name.upper(): value for name, value in code_settings.items()})
    out = Translation()
    found: dict[str, tuple[str, Any]] = {}
    for name in sorted(present):
        celery_name = SETTINGS.get(name)
        if celery_name is None:
            out.notes.append(_unknown(name))
        elif celery_name not in found:
            found[celery_name] = _preferred(celery_name, present, out.notes)
    _fold_include(found)
    _fold_cache(found)
    for celery_name, (name, value) in sorted(found.items()):
        if celery_name == "result_backend" and _plugged(value, taken):
            _honour(name, value, ("RESULT_BACKEND", None), taken, out)
        elif celery_name in HONOURED:
            _honour(name, value, HONOURED[celery_name], taken, out)
        else:
            kind, hint = EXPLAINED[celery_name]
            out.notes.append(Note(kind, name, _UNREAD[kind].format(name), hint))
    out.notes += _environment_notes(found)
    return out


def honoured_values(taken: Mapping[str, Any]) -> dict[str, Any]:
    """The TASKQ values the Celery settings give, for the keys ``taken`` does not have.

    Raises:
        CelerySettingError: a honoured Celery setting has a bad value (the first one is named).
    """
    translation = translate(taken)
    errors = [note for note in translation.notes if note.kind == ERROR]
    if errors:
        raise CelerySettingError(f"{errors[0].message} {errors[0].hint}")
    return translation.values


def _preferred(celery_name: str, present: Mapping[str, Any], notes: list[Note]) -> tuple[str, Any]:
    """The name Celery reads first (``CELERY_`` + new name) wins over the pre-4.0 one."""
    given = [name for name in django_names(celery_name) if name in present]
    first = given[0]
    for other in given[1:]:
        if present[other] != present[first]:
            notes.append(Note(CONFLICT, other, f"{other} and {first} are both set, to different "
                              f"values; {first} is used.", f"Remove {other}, the pre-4.0 name."))
    return first, present[first]


def _fold_include(found: dict[str, tuple[str, Any]]) -> None:
    """Celery imports the modules of ``imports`` and then of ``include``: one IMPORTS here."""
    if "include" not in found:
        return
    included = found.pop("include")
    if "imports" not in found:
        found["imports"] = included
        return
    for name, value in (found["imports"], included):
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            found["imports"] = (name, value)  # reported as the bad value it is
            return
    found["imports"] = (f"{found['imports'][0]} + {included[0]}",
                        [*found["imports"][1], *included[1]])


def _plugged(url: Any, taken: Mapping[str, Any]) -> bool:
    """Whether ``url`` (Celery's result_backend) has a scheme of TASKQ's RESULT_BACKEND_SCHEMES
    (a store of another package, e.g. ``cassandra://``): then it is used as it is."""
    table = taken.get("RESULT_BACKEND_SCHEMES")
    return isinstance(url, str) and "://" in url and isinstance(table, Mapping) \
        and url.split("://", 1)[0].lower() in table


def _fold_cache(found: dict[str, tuple[str, Any]]) -> None:
    """django-celery-results' ``django-cache`` reads the cache alias from ``cache_backend``
    (``CELERY_CACHE_BACKEND = 'default'``): one ``cache://<alias>`` here. Celery's ``cache``
    reads its memcached servers there: explained as ``cache+memcached://`` is."""
    backend, alias = found.get("result_backend"), found.get("cache_backend")
    if backend is None or alias is None or not isinstance(alias[1], str) or not alias[1]:
        return
    name = f"{backend[0]} + {alias[0]}"
    if backend[1] == "django-cache" and "://" not in alias[1]:
        found["result_backend"] = (name, f"cache://{alias[1]}")
    elif backend[1] == "cache" and alias[1].startswith("memcached://"):
        found["result_backend"] = (name, f"cache+{alias[1]}")  # Celery's: its servers there
    else:
        return
    del found["cache_backend"]


def _honour(name: str, value: Any, rule: tuple[str, Callable[[Any], Any] | None],
            taken: Mapping[str, Any], out: Translation) -> None:
    key, adapt = rule
    try:
        adapted = adapt(value) if adapt else value
        converted = _checked(key, adapted)
    except (Refused, TypeError) as exc:
        out.notes.append(_conflict(name, value, key, taken[key]) if key in taken
                         else _refusal(name, value, exc))
        return
    if key in taken:
        if not _same(key, converted, taken[key]):
            out.notes.append(_conflict(name, value, key, taken[key]))
        return
    out.values[key] = adapted
    out.origins[key] = name


def _checked(key: str, value: Any) -> Any:
    """``value`` converted as TASKQ[key] would be; TypeError says what it must be."""
    converted = _CONVERTERS[key](value)
    if key in _POSITIVE_SECONDS and converted is not None and converted <= 0:
        raise TypeError("a positive number of seconds")
    return converted


def _same(key: str, converted: Any, taskq_value: Any) -> bool:
    try:
        return bool(_checked(key, taskq_value) == converted)
    except TypeError:
        return True  # the TASKQ value itself is wrong: an E002, not a conflict


def _shown(value: Any) -> str:
    text = mask_text(repr(value))  # a URL, or a list of them (failover), without passwords
    return text if len(text) <= 100 else text[:97] + "..."


def _refusal(name: str, value: Any, exc: Exception) -> Note:
    if isinstance(exc, Refused):
        return Note(exc.kind, name, _UNREAD[exc.kind].format(f"{name} = {_shown(value)}"),
                    exc.hint)
    return Note(ERROR, name, f"{name} = {_shown(value)} is not valid.", f"{name} must be {exc}.")


def _conflict(name: str, value: Any, key: str, taskq_value: Any) -> Note:
    return Note(CONFLICT, name, f"{name} = {_shown(value)} differs from TASKQ[{key!r}] = "
                f"{_shown(taskq_value)}; the TASKQ value is used.",
                f"Remove {name}, or give it the same value as TASKQ[{key!r}].")


def _unknown(name: str) -> Note:
    close = difflib.get_close_matches(name, SETTINGS, n=1)
    guess = f"Did you mean {close[0]}? " if close else ""
    return Note(UNKNOWN, name, f"{name} is not a Celery setting: a typo?",
                f"{guess}Celery 5.7 has no such setting, so nothing reads it; if another app "
                "does, silence this warning.")


def _environment_notes(found: Mapping[str, Any]) -> list[Note]:
    notes = []
    for variable, (celery_name, ours) in _ENVIRONMENT.items():
        if os.environ.get(variable) and not os.environ.get(ours) and celery_name not in found:
            notes.append(Note(NO_EFFECT, variable, f"The environment variable {variable} is not "
                              "read by django_taskq.", f"Rename it {ours}, or read it in "
                              f"settings.py: {variable} = os.environ['{variable}']."))
    return notes
