"""django_taskq: a distributed task queue that lives inside Django.

Importing this package (or an app's ``tasks.py`` that uses ``@task``) never touches the database
or opens a connection; brokers and result backends are built on first use.
"""

from .exceptions import MaxRetriesExceededError, Retry, SoftTimeLimitExceeded, TimeLimitExceeded
from .middleware import Middleware
from .result import AsyncResult, revoke
from .task import Task, shared_task, task

__all__ = ["AsyncResult", "MaxRetriesExceededError", "Middleware", "Retry",
           "SoftTimeLimitExceeded", "Task", "TimeLimitExceeded", "revoke", "shared_task", "task"]
__version__ = "0.1.0"
