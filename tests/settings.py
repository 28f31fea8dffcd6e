"""Settings for the test suite: SQLite always; PostgreSQL and MariaDB when reachable or required."""

from __future__ import annotations

import os
from pathlib import Path

from tests import services

BASE = Path(__file__).resolve().parent
SECRET_KEY = "tests-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django_taskq",
    "tests.testapp",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]

# A file, not :memory:, so that worker subprocesses can open the same test database.
# TASKQ_TEST_SQLITE points a subprocess at the file the test run created.
_sqlite_test_file = str(BASE / f".test-{os.getpid()}.sqlite3")
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("TASKQ_TEST_SQLITE", str(BASE / "unused.sqlite3")),
        "TEST": {"NAME": _sqlite_test_file},
        "OPTIONS": {"timeout": 20},
    },
}
if services.wanted(services.POSTGRES):
    DATABASES["postgres"] = {"ENGINE": "django.db.backends.postgresql", **services.POSTGRES,
                             # persistent connections when a test asks (restart test)
                             "CONN_MAX_AGE": None if os.environ.get("TASKQ_TEST_PERSISTENT") else 0,
                             "TEST": {"NAME": os.environ.get("TASKQ_TEST_PG_TESTNAME",
                                                             "test_taskq")}}
if services.wanted(services.MARIADB):
    import pymysql

    pymysql.install_as_MySQLdb()
    DATABASES["mariadb"] = {"ENGINE": "django.db.backends.mysql", **services.MARIADB,
                            "OPTIONS": {"charset": "utf8mb4"},
                            "TEST": {"NAME": os.environ.get("TASKQ_TEST_MYSQL_TESTNAME",
                                                            "test_taskq")}}

TASKQ = {
    "BROKER_URL": "memory://",
    "RESULT_BACKEND": "memory://",
    "WORKER_POOL": "solo",
    "POLL_INTERVAL": 0.05,
}

# Subprocess tests pass extra TASKQ keys (a short lease, the broker under test) as JSON.
if os.environ.get("TASKQ_TEST_OVERRIDES"):
    import json

    TASKQ.update(json.loads(os.environ["TASKQ_TEST_OVERRIDES"]))
