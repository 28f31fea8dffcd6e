"""``manage.py taskworker``: run a worker (thin: parse options, build a Worker, run it)."""

from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...conf import POOLS, get_settings
from ...exceptions import ConfigurationError
from ...worker import Worker, WorkerOptions
from ...worker.banner import banner


class Command(BaseCommand):
    help = "Run a django_taskq worker: consume tasks from the broker and run them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("-Q", "--queues", help="comma-separated queues (default: DEFAULT_QUEUE)")
        parser.add_argument("-c", "--concurrency", type=int,
                            help="execution slots (default: WORKER_CONCURRENCY or CPU count)")
        parser.add_argument("-P", "--pool", choices=POOLS, help="execution pool (default: prefork)")
        parser.add_argument("-l", "--loglevel", default="INFO",
                            choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
                            type=str.upper, help="log level when logging is not configured")
        parser.add_argument("-n", "--hostname", help="worker name (default: worker<pid>@<host>)")
        parser.add_argument("--prefetch-multiplier", type=int,
                            help="messages held per slot (default: WORKER_PREFETCH_MULTIPLIER)")
        parser.add_argument("--max-tasks", type=int,
                            help="exit after this many tasks (warm stop)")
        parser.add_argument("--burst", action="store_true",
                            help="exit when the queues are empty")
        parser.add_argument("--time-limit", type=float, metavar="SECONDS",
                            help="hard time limit per task: the task is stopped and fails "
                                 "(default: WORKER_TIME_LIMIT; prefork and solo pools)")
        parser.add_argument("--soft-time-limit", type=float, metavar="SECONDS",
                            help="raise SoftTimeLimitExceeded inside the task after this long "
                                 "(default: WORKER_SOFT_TIME_LIMIT; prefork and solo pools)")
        parser.add_argument("--max-tasks-per-child", type=int, metavar="N",
                            help="replace a prefork child after it has run N tasks "
                                 "(default: WORKER_MAX_TASKS_PER_CHILD)")
        parser.add_argument("--max-memory-per-child", type=int, metavar="KIB",
                            help="replace a prefork child whose resident memory exceeds KIB "
                                 "kibibytes after a task (default: WORKER_MAX_MEMORY_PER_CHILD)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            worker_options = self._worker_options(options)
            worker = Worker(worker_options)
        except (ConfigurationError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        configure_logging(options["loglevel"])
        self.stdout.write(banner(worker))
        self.stdout.flush()
        install_signal_handlers(worker)
        worker.run(max_tasks=options["max_tasks"], until_empty=options["burst"])
        if worker.cold and worker.options.pool == "threads":
            # Running threads cannot be stopped and Python would wait for them at exit; their
            # messages were requeued, so leave now rather than finish them twice.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)

    def _worker_options(self, options: dict[str, Any]) -> WorkerOptions:
        queues = options["queues"]
        names = tuple(q.strip() for q in queues.split(",") if q.strip()) if queues else None
        if queues is not None and not names:
            raise CommandError("--queues needs at least one queue name.")
        for name in ("concurrency", "prefetch_multiplier", "max_tasks", "max_tasks_per_child",
                     "max_memory_per_child"):
            if options[name] is not None and options[name] < 1:
                raise CommandError(f"--{name.replace('_', '-')} must be at least 1.")
        hard, soft = options["time_limit"], options["soft_time_limit"]
        for name, value in (("time-limit", hard), ("soft-time-limit", soft)):
            if value is not None and not 0 < value < float("inf"):
                raise CommandError(f"--{name} must be a positive number of seconds.")
        if hard is not None and soft is not None and soft >= hard:
            raise CommandError(f"--soft-time-limit ({soft:g}s) must be below --time-limit "
                               f"({hard:g}s): the soft limit lets a task clean up before the "
                               "hard limit stops it.")
        return WorkerOptions.from_settings(
            get_settings(), queues=names, concurrency=options["concurrency"],
            pool=options["pool"], hostname=options["hostname"],
            prefetch_multiplier=options["prefetch_multiplier"], time_limit=hard,
            soft_time_limit=soft, max_tasks_per_child=options["max_tasks_per_child"],
            max_memory_per_child=options["max_memory_per_child"])


def configure_logging(level: str) -> None:
    """Log to stderr at ``level`` unless the project configured django_taskq's logging."""
    package_logger = logging.getLogger("django_taskq")
    if not package_logger.handlers and not logging.getLogger().handlers:
        package_logger.setLevel(level)
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(
            "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s"))
        package_logger.addHandler(handler)


def install_signal_handlers(worker: Worker) -> None:
    """First SIGTERM/SIGINT: warm stop. Second: cold stop (running tasks are requeued)."""
    def handle(signum: int, frame: Any) -> None:
        worker.request_stop(cold=worker.stopping)

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
