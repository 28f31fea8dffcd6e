"""Settings of the shop project, a Django project whose background jobs run on Celery.

Deployment values come from the environment (PROJ_*); everything Celery reads is a CELERY_*
setting, picked up by ``app.config_from_object("django.conf:settings", namespace="CELERY")``.
"""

import os
from pathlib import Path

from celery.schedules import crontab

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = os.environ.get("PROJ_SECRET_KEY", "shop-example-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "shop",
    "billing",
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("PROJ_DB", str(BASE_DIR / "db.sqlite3")),
        # Web processes and workers write to the same file.
        "OPTIONS": {"timeout": 20},
    },
}

# -- Celery --------------------------------------------------------------------------------
CELERY_BROKER_URL = os.environ.get("PROJ_BROKER_URL", "redis://127.0.0.1:6379/0")
CELERY_RESULT_BACKEND = os.environ.get("PROJ_RESULT_BACKEND", "redis://127.0.0.1:6379/0")
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TIMEZONE = TIME_ZONE
CELERY_TASK_DEFAULT_QUEUE = "main"
# Billing runs on workers of its own (celery -A proj worker -Q billing).
CELERY_TASK_ROUTES = {"billing.*": {"queue": "billing"}}
CELERY_TASK_TRACK_STARTED = True
CELERY_RESULT_EXTENDED = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Task modules that are not an app's tasks.py.
CELERY_IMPORTS = ["shop.maintenance"]
# Periodic tasks (celery -A proj beat).
CELERY_BEAT_SCHEDULE = {
    "purge-abandoned-carts": {"task": "shop.maintenance.purge_abandoned_carts",
                              "schedule": crontab(minute=30, hour=3, day_of_week="mon-fri")},
    "ping-every-minute": {"task": "proj.celery.ping", "schedule": 60.0,
                          "options": {"expires": 30}},
}
