"""Task loggers as Celery users have them, and the worker's default logging set-up.

``get_task_logger(__name__)`` returns a logger whose records carry the running task's name and
id (``task_name``, ``task_id``; ``"???"`` outside a task), as Celery's do. Task loggers are
children of ``django_taskq.task``, as Celery's are of ``celery.task``.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from . import signals
from .context import current_request

#: The parent of every task logger (Celery: ``celery.task``).
TASK_LOGGER_NAME = "django_taskq.task"
#: Celery's ``worker_log_format``, used for django_taskq's own loggers.
DEFAULT_PROCESS_LOG_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s"
#: Celery's ``worker_task_log_format``, used for task loggers.
DEFAULT_TASK_LOG_FORMAT = ("[%(asctime)s: %(levelname)s/%(processName)s] "
                           "%(task_name)s[%(task_id)s]: %(message)s")
#: ``task_name`` and ``task_id`` of a record logged outside a task (Celery's TaskFormatter).
UNKNOWN = "???"
RESERVED_LOGGER_NAMES = frozenset({"django_taskq", TASK_LOGGER_NAME})

task_logger = logging.getLogger(TASK_LOGGER_NAME)


def add_task_context(record: logging.LogRecord) -> None:
    """Give ``record`` the running task's ``task_name`` and ``task_id`` unless it has them."""
    fields = record.__dict__
    if "task_id" in fields and "task_name" in fields:
        return
    request = current_request()
    fields.setdefault("task_name", (request.task if request else None) or UNKNOWN)
    fields.setdefault("task_id", (request.id if request else None) or UNKNOWN)


class TaskContextFilter(logging.Filter):
    """Adds the running task's name and id to each record, in the thread that logs it."""

    def filter(self, record: logging.LogRecord) -> bool:
        add_task_context(record)
        return True


_task_context = TaskContextFilter()


class TaskFormatter(logging.Formatter):
    """A formatter for task records; its default format is Celery's task log format.

    Records that did not pass through a task logger get the running task's name and id here
    (``"???"`` outside a task), so ``%(task_name)s`` and ``%(task_id)s`` always format.
    """

    def __init__(self, fmt: str | None = None, *args: Any, **kwargs: Any) -> None:
        super().__init__(fmt or DEFAULT_TASK_LOG_FORMAT, *args, **kwargs)

    def format(self, record: logging.LogRecord) -> str:
        add_task_context(record)
        return super().format(record)


def get_task_logger(name: str) -> logging.Logger:
    """The logger ``name``, made a child of ``django_taskq.task``, whose records carry the task.

    As Celery's ``get_task_logger``: a logger outside that hierarchy is re-parented to it, so
    the worker's task handler (and its format) applies.

    Raises:
        RuntimeError: ``name`` is ``django_taskq`` or ``django_taskq.task`` (reserved).
    """
    if name in RESERVED_LOGGER_NAMES:
        raise RuntimeError(f"logger name {name!r} is reserved")
    logger = logging.getLogger(name)
    if not _descends_from(logger, task_logger):
        logger.parent = task_logger
    logger.addFilter(_task_context)  # once: addFilter ignores a filter already there
    return logger


def _descends_from(logger: logging.Logger, ancestor: logging.Logger) -> bool:
    parent = logger.parent
    while parent is not None:
        if parent is ancestor:
            return True
        parent = parent.parent
    return False


def setup_worker_logging(loglevel: str | int, logfile: str | None = None,
                         colorize: bool = False) -> bool:
    """The worker's logging, as Celery sets it up: ``setup_logging`` receivers take over.

    With a ``setup_logging`` receiver connected, nothing is configured and nothing else is
    sent. Otherwise, when the project configured no handler on the root or django_taskq logger,
    django_taskq's loggers log at ``loglevel`` to stderr (or ``logfile``), task loggers with
    :class:`TaskFormatter`; then ``after_setup_logger`` and ``after_setup_task_logger`` are
    sent, whether or not handlers were added.

    Returns:
        False when a ``setup_logging`` receiver took over.
    """
    level = loglevel if isinstance(loglevel, int) else logging.getLevelName(loglevel.upper())
    given = {"loglevel": level, "logfile": logfile, "colorize": colorize}
    if signals.send(signals.setup_logging, None, format=DEFAULT_PROCESS_LOG_FORMAT, **given):
        return False
    package = logging.getLogger("django_taskq")
    if not package.handlers and not logging.getLogger().handlers:
        package.setLevel(level)
        package.addHandler(_handler(logfile, logging.Formatter(DEFAULT_PROCESS_LOG_FORMAT)))
        task_logger.setLevel(level)
        task_logger.addHandler(_handler(logfile, TaskFormatter()))
        task_logger.propagate = False  # its own handler and format, as Celery's task logger
    signals.send(signals.after_setup_logger, None, logger=package,
                 format=DEFAULT_PROCESS_LOG_FORMAT, **given)
    signals.send(signals.after_setup_task_logger, None, logger=task_logger,
                 format=DEFAULT_TASK_LOG_FORMAT, **given)
    return True


def _handler(logfile: str | None, formatter: logging.Formatter) -> logging.Handler:
    handler: logging.Handler = (logging.FileHandler(logfile, encoding="utf-8") if logfile
                                else logging.StreamHandler(sys.stderr))
    handler.setFormatter(formatter)
    return handler
