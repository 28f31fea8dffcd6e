"""Helpers for testing code that sends tasks (docs/testing.md).

- :func:`capture_sent`: record the messages sent (name, id, arguments, queue, eta...).
- :func:`drain`: run the queued tasks now, in this thread, with a real worker.
- :class:`WorkerThread`: a worker in a background thread, for ``delay().get()``.
- :func:`eager_mode`, :func:`memory_broker`, :func:`taskq_settings`: TASKQ changed for a block.

The pytest fixtures (``taskq_sent``, ``taskq_drain``, ``taskq_worker``, ``taskq_eager``,
``taskq_memory``) are in :mod:`django_taskq.testing.pytest_plugin`, which pytest loads by
itself once django_taskq is installed. Importing this package reads no settings.
"""

from .drain import DrainError, DrainTimeout, Runs, TaskRun, drain
from .override import eager_mode, memory_broker, taskq_settings
from .sent import SentTask, SentTasks, capture_sent
from .thread import WorkerThread, WorkerThreadError

__all__ = ["DrainError", "DrainTimeout", "Runs", "SentTask", "SentTasks", "TaskRun",
           "WorkerThread", "WorkerThreadError", "capture_sent", "drain", "eager_mode",
           "memory_broker", "taskq_settings"]
