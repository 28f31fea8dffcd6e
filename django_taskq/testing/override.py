"""TASKQ changed for a block of code: eager mode, a private in-memory broker.

Each change goes through ``override_settings``, so the settings cache and everything built
from it (broker, result backend, control store, middleware) are dropped on entry and on exit.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from typing import Any

from ..conf import ENV_OVERRIDES, reset_settings


@contextlib.contextmanager
def taskq_settings(**changes: Any) -> Iterator[None]:
    """The TASKQ setting with ``changes`` on top of the current one, inside the block."""
    from django.conf import settings
    from django.test import override_settings

    current = getattr(settings, "TASKQ", None) or {}
    try:
        with override_settings(TASKQ={**current, **changes}):
            reset_settings()  # also when django_taskq's setting_changed receiver is missing
            yield
    finally:
        reset_settings()


@contextlib.contextmanager
def eager_mode(propagates: bool = True) -> Iterator[None]:
    """Run every sent task at once, here (TASK_ALWAYS_EAGER); with ``propagates`` a failure
    raises from ``delay()`` (TASK_EAGER_PROPAGATES)."""
    with taskq_settings(TASK_ALWAYS_EAGER=True, TASK_EAGER_PROPAGATES=propagates):
        yield


@contextlib.contextmanager
def memory_broker(name: str | None = None) -> Iterator[str]:
    """Broker, result backend and control store in this process's memory, fresh for the block.

    The environment overrides (TASKQ_BROKER_URL, TASKQ_RESULT_BACKEND) would win over the
    setting, so they are set aside meanwhile.

    Yields:
        The ``memory://<name>`` URL used.
    """
    url = f"memory://{name or 'taskq-test-' + uuid.uuid4().hex[:12]}"
    saved = {variable: os.environ.pop(variable) for variable in ENV_OVERRIDES
             if variable in os.environ}
    try:
        with taskq_settings(BROKER_URL=url, RESULT_BACKEND=url, CONTROL_URL=url):
            yield url
    finally:
        os.environ.update(saved)
        reset_settings()
