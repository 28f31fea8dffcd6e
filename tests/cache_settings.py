"""tests.settings plus the CACHES a test gives a worker process (TASKQ_TEST_CACHES, JSON)."""

from __future__ import annotations

import json
import os

from tests.settings import *  # noqa: F403

CACHES = json.loads(os.environ.get("TASKQ_TEST_CACHES", "{}")) or {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
