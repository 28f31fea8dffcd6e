"""Which Django settings are Celery's: ``CELERY_`` + the setting's name, or its pre-4.0 name."""

from __future__ import annotations

from .explained import EXPLAINED
from .translated import HONOURED

#: Pre-4.0 names that the namespace rule below does not give (celery/app/defaults.py ``old=``).
_OLD_EXCEPTIONS = {
    "database_engine_options": "CELERY_RESULT_ENGINE_OPTIONS",
    "database_url": "CELERY_RESULT_DBURI",
    "database_short_lived_sessions": "CELERY_RESULT_DB_SHORT_LIVED_SESSIONS",
    "database_table_names": "CELERY_RESULT_DB_TABLENAMES",
    "result_accept_content": "RESULT_ACCEPT_CONTENT",
    "result_cache_max": "CELERY_MAX_CACHED_RESULTS",
    "result_expires": "CELERY_TASK_RESULT_EXPIRES",
    "task_compression": "CELERY_MESSAGE_COMPRESSION",
    "task_eager_propagates": "CELERY_EAGER_PROPAGATES_EXCEPTIONS",
    "task_protocol": "CELERY_TASK_PROTOCOL",
    "task_publish_retry": "CELERY_TASK_PUBLISH_RETRY",
    "task_publish_retry_policy": "CELERY_TASK_PUBLISH_RETRY_POLICY",
    "task_send_sent_event": "CELERY_SEND_TASK_SENT_EVENT",
    "task_serializer": "CELERY_TASK_SERIALIZER",
    "task_soft_time_limit": "CELERYD_TASK_SOFT_TIME_LIMIT",
    "task_time_limit": "CELERYD_TASK_TIME_LIMIT",
    "worker_direct": "CELERY_WORKER_DIRECT",
    "worker_disable_rate_limits": "CELERY_DISABLE_RATE_LIMITS",
    "worker_enable_remote_control": "CELERY_ENABLE_REMOTE_CONTROL",
    "worker_lost_wait": "CELERYD_WORKER_LOST_WAIT",
    "worker_redirect_stdouts": "CELERY_REDIRECT_STDOUTS",
    "worker_redirect_stdouts_level": "CELERY_REDIRECT_STDOUTS_LEVEL",
    "worker_send_task_events": "CELERY_SEND_EVENTS",
}
_OLD_PREFIXES = {"task": "CELERY_", "worker": "CELERYD_", "beat": "CELERYBEAT_"}
_OLD_CELERY_NAMESPACES = ("result", "cache", "couchbase", "arangodb", "mongodb", "event", "redis",
                          "elasticsearch", "security", "accept", "imports", "include", "timezone")
_WATCHED_PREFIXES = ("CELERY_", "CELERYD_", "CELERYBEAT_")


def old_name(celery_name: str) -> str:
    """The pre-4.0 Django setting name of a Celery setting, as Celery still reads it."""
    if celery_name in _OLD_EXCEPTIONS:
        return _OLD_EXCEPTIONS[celery_name]
    namespace, _, rest = celery_name.partition("_")
    if namespace in _OLD_PREFIXES:
        return _OLD_PREFIXES[namespace] + rest.upper()
    if namespace in _OLD_CELERY_NAMESPACES:
        return "CELERY_" + celery_name.upper()
    return celery_name.upper()


def django_names(celery_name: str) -> list[str]:
    """The names read for a Celery setting, the one Celery prefers first."""
    names = ["CELERY_" + celery_name.upper()]
    old = old_name(celery_name)
    if old not in names and (old.startswith(_WATCHED_PREFIXES + ("BROKER_",))
                             or old in ("ENABLE_UTC", "RESULT_ACCEPT_CONTENT")):
        names.append(old)
    return names


#: Django setting name → Celery setting name, for every name read.
SETTINGS: dict[str, str] = {
    django_name: celery_name for celery_name in [*HONOURED, *EXPLAINED]
    for django_name in django_names(celery_name)}


def watches(name: str) -> bool:
    """Whether the Django setting ``name`` is read (or checked) here: for setting_changed."""
    return name in SETTINGS or name.startswith(_WATCHED_PREFIXES)
