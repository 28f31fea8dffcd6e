"""django_taskq: a distributed task queue that lives inside Django.

Importing this package (or an app's ``tasks.py`` that uses ``@task``) never touches the database
or opens a connection; brokers and result backends are built on first use. The one exception
comes first: a ``taskworker --pool gevent`` (or eventlet) process monkey-patches here, before
anything else is imported (django_taskq/monkey.py).
"""

from . import monkey  # noqa: F401, I001 - first of all: patches a gevent/eventlet worker early

from .app import Celery, current_app
from .canvas import Signature, chain, chord, maybe_signature, signature
from .canvas.group import group
from .canvas.maps import chunks, xmap, xstarmap
from .exceptions import (
    ChordError,
    Ignore,
    MaxRetriesExceededError,
    Reject,
    Retry,
    SoftTimeLimitExceeded,
    TimeLimitExceeded,
)
from .log import get_task_logger
from .middleware import Middleware
from .producer import send_task
from .registry import current_task
from .result import AsyncResult, revoke
from .result_group import GroupResult
from .task import Task, shared_task, task

__all__ = ["AsyncResult", "Celery", "ChordError", "GroupResult", "Ignore", "MaxRetriesExceededError",
           "Middleware", "Reject", "Retry", "Signature", "SoftTimeLimitExceeded", "Task",
           "TimeLimitExceeded", "chain", "chord", "chunks", "current_app", "current_task", "get_task_logger",
           "group", "maybe_signature", "revoke", "send_task", "shared_task", "signature", "task",
           "xmap", "xstarmap"]
__version__ = "0.1.0"
