"""System checks for the TASKQ settings, with stable ids (see docs/settings.md).

- django_taskq.E001: TASKQ is not a dict.
- django_taskq.E002: a TASKQ value has the wrong type or range.
- django_taskq.E003: BROKER_URL is not usable (bad URL, unknown scheme, unknown database alias).
- django_taskq.E004: RESULT_BACKEND is not usable.
- django_taskq.E005: a serializer name is unknown.
- django_taskq.E006: CONTROL_URL is set but not usable (bad URL, scheme or database alias).
- django_taskq.E010: a Celery setting honoured as a TASKQ key has a value that cannot be used.
- django_taskq.E011: a task's options are not valid once TASK_ANNOTATIONS are applied.
- django_taskq.W001: TASKQ has an unknown key (a typo?).
- django_taskq.W002: pickle is accepted: anyone who can write to the broker can run code.
- django_taskq.W011: a Celery setting has no effect here (the hint: what replaces it, or why).
- django_taskq.W012: a Celery setting differs from the TASKQ key (or newer Celery name) that wins.
- django_taskq.W013: a CELERY_* setting that Celery does not have (a typo?).
- django_taskq.W014: a Celery setting for a feature that a later issue brings (named in the hint).
- django_taskq.W016: DEBUG is on, a TASKQ or Celery URL holds a password, and the exception
  reporter filter that masks it on the debug page is not set (security.py).
- django_taskq.E020: an entry of RESULT_BACKEND_SCHEMES is not usable (does not import, is not
  a ResultBackend subclass, or replaces a built-in scheme).
- django_taskq.W020: RESULT_BACKEND is a cache:// whose cache is a LocMemCache (one process).
- django_taskq.W021: RESULT_BACKEND is a cache:// whose add()/incr() are not atomic (chords).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.core import checks

from . import celery_settings, serializers
from .conf import SETTING_NAMES, build_settings, find_problems, raw_settings
from .exceptions import ConfigurationError

_URL_CHECKS = (("BROKER_URL", "E003"), ("RESULT_BACKEND", "E004"))
_CELERY_IDS = {celery_settings.ERROR: (checks.Error, "E010"),
               celery_settings.NO_EFFECT: (checks.Warning, "W011"),
               celery_settings.CONFLICT: (checks.Warning, "W012"),
               celery_settings.UNKNOWN: (checks.Warning, "W013"),
               celery_settings.NOT_YET: (checks.Warning, "W014")}


@checks.register("django_taskq")
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """Report every problem with TASKQ at once, each under its own id."""
    taskq = raw_settings(celery=False)  # a bad Celery value is an E010 of check_celery_settings
    honoured = celery_settings.translate(taskq)
    raw = {**honoured.values, **taskq}
    problems = find_problems(raw)
    messages: list[checks.CheckMessage] = []
    for problem in problems:
        if problem.key == "TASKQ":
            return [checks.Error(problem.message, hint=problem.hint, id="django_taskq.E001")]
        if problem.unknown_key:
            messages.append(checks.Warning(problem.message, hint=problem.hint,
                                           id="django_taskq.W001"))
        else:
            messages.append(checks.Error(problem.message, hint=problem.hint,
                                         id="django_taskq.E002"))
    if any(isinstance(m, checks.Error) for m in messages) or any(
            note.kind == celery_settings.ERROR for note in honoured.notes):
        return messages  # the URL checks build brokers, which read the settings
    settings = build_settings({k: v for k, v in raw.items() if k in SETTING_NAMES})
    messages += _check_urls(settings, honoured.origins)
    messages += _check_serializers(settings)
    return messages


def _check_urls(settings: Any, origins: dict[str, str]) -> list[checks.CheckMessage]:
    from .brokers import broker_from_url
    from .results import backend_from_url

    messages: list[checks.CheckMessage] = []
    builders: tuple[Callable[[str], Any], ...] = (broker_from_url, backend_from_url)
    for (key, code), build in zip(_URL_CHECKS, builders, strict=True):
        try:
            build(getattr(settings, key)).close()  # built to validate, never connected
        except ConfigurationError as exc:
            source = origins.get(key)
            hint = (f"Fix {source} (honoured as TASKQ[{key!r}]), or set TASKQ[{key!r}]."
                    if source else f"Fix TASKQ[{key!r}] or the TASKQ_{key} environment variable.")
            messages.append(checks.Error(str(exc), hint=hint, id=f"django_taskq.{code}"))
    return messages


@checks.register("django_taskq")
def check_celery_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E010, W011-W014: what becomes of each Celery setting found in Django settings."""
    notes = celery_settings.translate(raw_settings(celery=False)).notes
    messages = []
    for note in notes:
        level, code = _CELERY_IDS[note.kind]
        messages.append(level(note.message, hint=note.hint, id=f"django_taskq.{code}"))
    return messages


def _check_serializers(settings: Any) -> list[checks.CheckMessage]:
    messages: list[checks.CheckMessage] = []
    names = [("TASK_SERIALIZER", settings.TASK_SERIALIZER),
             ("RESULT_SERIALIZER", settings.RESULT_SERIALIZER),
             *(("ACCEPT_CONTENT", name) for name in settings.ACCEPT_CONTENT)]
    for key, name in names:
        if name not in serializers.NAMES:
            messages.append(checks.Error(
                f"TASKQ[{key!r}] names unknown serializer {name!r}.",
                hint=f"Use one of {', '.join(serializers.NAMES)}.", id="django_taskq.E005"))
    if "pickle" in settings.ACCEPT_CONTENT:
        messages.append(checks.Warning(
            "ACCEPT_CONTENT includes pickle: anyone able to write to the broker can run code "
            "in your workers.", hint="Prefer json; accept pickle only on a trusted broker.",
            id="django_taskq.W002"))
    return messages


@checks.register("django_taskq")
def check_control_url(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """django_taskq.E006: CONTROL_URL, when set, must name a usable control store."""
    url = raw_settings(celery=False).get("CONTROL_URL")  # no Celery setting maps to it
    if not isinstance(url, str) or not url:
        return []  # unset; a value of the wrong type is an E002 of check_settings
    from .control import control_store_from_url

    try:
        control_store_from_url(url).close()  # built to validate, never connected
    except ConfigurationError as exc:
        return [checks.Error(str(exc), hint="Fix TASKQ['CONTROL_URL']: use db://<alias>, "
                             "redis://..., rediss://... or memory://, or None to follow the "
                             "broker.", id="django_taskq.E006")]
    return []


@checks.register("django_taskq")
def check_task_options(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """django_taskq.E011: every registered task's options, with TASK_ANNOTATIONS applied."""
    from .exceptions import TaskqError
    from .registry import registry

    try:
        registry.check_options()
    except TaskqError as exc:
        return [checks.Error(str(exc), hint="Fix TASKQ['TASK_ANNOTATIONS'] (or the task's own "
                             "option): the worker refuses to start with it.",
                             id="django_taskq.E011")]
    return []


@checks.register("django_taskq")
def check_events_database(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """django_taskq.E014: EVENTS_DATABASE, when set, must be a DATABASES alias."""
    from django.conf import settings as django_settings

    try:
        alias = raw_settings().get("EVENTS_DATABASE", "default")
    except ConfigurationError:
        return []  # a bad Celery setting: an E010 of check_celery_settings
    if alias is None or not isinstance(alias, str) or alias in django_settings.DATABASES:
        return []  # a value of the wrong type is an E002 of check_settings
    return [checks.Error(
        f"TASKQ['EVENTS_DATABASE'] = {alias!r} is not in DATABASES.",
        hint=f"Name one of {', '.join(django_settings.DATABASES) or 'no alias'}, or set it to "
             "None to store no events (the admin dashboard and /metrics read them).",
        id="django_taskq.E014")]


#: Settings outside TASKQ whose value may be a broker or result URL (Celery's names).
_CELERY_URL_SETTINGS = ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "BROKER_URL",
                        "CELERY_RESULT_DBURI", "CELERY_BROKER_READ_URL",
                        "CELERY_BROKER_WRITE_URL")


@checks.register("django_taskq")
def check_exception_filter(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """django_taskq.W016: with DEBUG on, the debug page would show a URL's password."""
    from django.conf import settings as django_settings
    from django.utils.module_loading import import_string

    from .security import FILTER_PATH, TaskqExceptionReporterFilter
    from .service_url import has_password

    if not django_settings.DEBUG:
        return []
    chosen = django_settings.DEFAULT_EXCEPTION_REPORTER_FILTER
    try:
        cls = import_string(chosen) if isinstance(chosen, str) else chosen
    except ImportError:
        cls = None  # Django reports a bad path itself when it renders an error
    if isinstance(cls, type) and issubclass(cls, TaskqExceptionReporterFilter):
        return []
    values = list(raw_settings(celery=False).values())  # TASKQ, environment overrides too
    values += [getattr(django_settings, name, None) for name in _CELERY_URL_SETTINGS]
    if not any(has_password(value) for value in _flat(values)):
        return []
    return [checks.Warning(
        "DEBUG is on and a TASKQ or Celery URL holds a password, which Django's debug page "
        "would show (its filter hides settings by name, not URLs by value).",
        hint=f"Add DEFAULT_EXCEPTION_REPORTER_FILTER = {FILTER_PATH!r} to your settings.",
        id="django_taskq.W016")]


def _flat(values: list[Any]) -> list[Any]:
    return [item for value in values
            for item in (value if isinstance(value, (list, tuple)) else (value,))]


@checks.register("django_taskq")
def check_result_stores(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E020: RESULT_BACKEND_SCHEMES entries; W020, W021: the cache a cache:// URL names."""
    from .results import SCHEMES, plugins
    from .service_url import parse

    try:
        settings = build_settings(raw_settings())
    except ConfigurationError:
        return []  # reported as E002/E010 by the other checks
    messages: list[checks.CheckMessage] = [
        checks.Error(problem, hint="Fix TASKQ['RESULT_BACKEND_SCHEMES'] "
                     "(docs/result-backends.md).", id="django_taskq.E020")
        for problem in plugins.problems(settings.RESULT_BACKEND_SCHEMES, SCHEMES)]
    try:
        url = parse(settings.RESULT_BACKEND, setting="RESULT_BACKEND")
    except ConfigurationError:
        return messages  # an E004
    if url.scheme == "cache":
        from .results.cache import cache_warnings

        messages += [checks.Warning(message, hint=hint, id=f"django_taskq.{code}")
                     for code, message, hint in cache_warnings(url.host or "default")]
    return messages
