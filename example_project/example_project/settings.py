"""Example project: django_taskq with its embedded default, the SQLite database broker.

Try another broker or result backend without editing this file:
    TASKQ_BROKER_URL=db://default TASKQ_RESULT_BACKEND=db://default python manage.py taskworker
EXAMPLE_DB_PATH=<file> puts the SQLite database elsewhere (tests/test_beat_browser.py does).
"""

import os
from datetime import timedelta
from pathlib import Path

import django

from django_taskq.schedules import crontab

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "example-only-not-secret"
DEBUG = True
# Django's debug page and error reports mask broker and result URLs with passwords.
DEFAULT_EXCEPTION_REPORTER_FILTER = "django_taskq.security.TaskqExceptionReporterFilter"
ALLOWED_HOSTS = ["localhost", "127.0.0.1"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_taskq",
    "shop",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "example_project.urls"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("EXAMPLE_DB_PATH") or BASE_DIR / "db.sqlite3",
        "OPTIONS": {"timeout": 20},
    }
}
if django.VERSION >= (5, 1):
    # A transaction that reads before it writes takes the write lock when it begins, so it
    # waits for the worker's (and beat's) writes instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE"
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"

# The defaults, spelled out: messages and results both live in the "default" database.
TASKQ = {
    "BROKER_URL": "db://default",
    "RESULT_BACKEND": "db://default",
    "WORKER_CONCURRENCY": 2,
    "POLL_INTERVAL": 0.2,
    # Results keep the task's arguments and queue: the monitoring dashboard's Retry needs them.
    "RESULT_EXTENDED": True,
    # Celery's task_routes, as Celery takes them (names, globs, router functions).
    "TASK_ROUTES": {"shop.tasks.welcome": {"queue": "mail"}},
    # Every message is signed (HMAC-SHA256 over its headers and body): workers run only what a
    # holder of a key sent. The fallback is for this example only: in production the keys come
    # from the environment and never from the code (docs/security.md).
    "SIGNING_KEYS": os.environ.get("TASKQ_SIGNING_KEYS",
                                   "example-only-signing-key-0123456789abcdef").split(","),
    # Celery's beat_schedule, as Celery takes it: beat upserts these rows when it starts
    # (taskbeat, or taskworker --beat); more are added and edited in the admin.
    "BEAT_SCHEDULE": {
        "stock-check": {"task": "shop.tasks.stock_check", "schedule": timedelta(seconds=2)},
        "nightly-report": {"task": "shop.tasks.nightly_report",
                           "schedule": crontab(minute=0, hour=2, day_of_week="mon-fri",
                                               tz="Europe/Berlin"),
                           "kwargs": {"kind": "sales"}, "options": {"expires": 3600}},
    },
}
