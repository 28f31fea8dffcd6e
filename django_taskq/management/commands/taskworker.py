"""``manage.py taskworker``: run a worker (thin: parse options, build a Worker, run it)."""

from __future__ import annotations

import os
import signal
import sys
from typing import TYPE_CHECKING, Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from ... import signals
from ...conf import get_settings
from ...exceptions import ConfigurationError
from ...log import setup_worker_logging
from ...service_url import mask_text
from ...setting_values import POOLS, autoscale
from ...worker import Worker, WorkerOptions
from ...worker.banner import banner

if TYPE_CHECKING:
    from ...beat.service import BeatService


class Command(BaseCommand):
    help = "Run a django_taskq worker: consume tasks from the broker and run them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("-Q", "--queues", help="comma-separated queues (default: DEFAULT_QUEUE)")
        parser.add_argument("-c", "--concurrency", type=int,
                            help="execution slots (default: WORKER_CONCURRENCY or CPU count)")
        parser.add_argument("-P", "--pool", choices=POOLS,
                            help="execution pool (default: prefork); gevent and eventlet patch "
                                 "the process before Django starts (docs/pools.md)")
        parser.add_argument("-l", "--loglevel", default="INFO",
                            choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
                            type=str.upper, help="log level when logging is not configured")
        parser.add_argument("-f", "--logfile",
                            help="log to this file instead of stderr, when logging is not "
                                 "configured")
        parser.add_argument("-n", "--hostname", help="worker name (default: worker<pid>@<host>)")
        parser.add_argument("--autoscale", metavar="MAX,MIN",
                            help="grow the pool up to MAX slots when tasks wait, shrink it back "
                                 "to MIN after WORKER_AUTOSCALE_KEEPALIVE seconds of quiet "
                                 "(MAX alone: MIN 0; prefork and threads pools; default: "
                                 "WORKER_AUTOSCALE)")
        parser.add_argument("--prefetch-multiplier", type=int,
                            help="messages held per slot (default: WORKER_PREFETCH_MULTIPLIER)")
        parser.add_argument("--max-tasks", type=int,
                            help="exit after this many tasks (warm stop)")
        parser.add_argument("--burst", action="store_true",
                            help="exit when the queues are empty")
        parser.add_argument("--time-limit", type=float, metavar="SECONDS",
                            help="hard time limit per task: the task is stopped and fails "
                                 "(default: WORKER_TIME_LIMIT; prefork, solo, gevent, eventlet; "
                                 "async def tasks on every pool)")
        parser.add_argument("--soft-time-limit", type=float, metavar="SECONDS",
                            help="raise SoftTimeLimitExceeded inside the task after this long "
                                 "(default: WORKER_SOFT_TIME_LIMIT; prefork, solo, gevent, "
                                 "eventlet; async def tasks on every pool)")
        parser.add_argument("--max-tasks-per-child", type=int, metavar="N",
                            help="replace a prefork child after it has run N tasks "
                                 "(default: WORKER_MAX_TASKS_PER_CHILD)")
        parser.add_argument("-B", "--beat", action="store_true",
                            help="also run beat in this worker (any number of workers may: "
                                 "each periodic tick is still sent once)")
        parser.add_argument("--max-memory-per-child", type=int, metavar="KIB",
                            help="replace a prefork child whose resident memory exceeds KIB "
                                 "kibibytes after a task (default: WORKER_MAX_MEMORY_PER_CHILD)")

        events = parser.add_mutually_exclusive_group()
        events.add_argument("-E", "--task-events", action="store_true", dest="task_events",
                            default=None, help="send task events (the default, unless "
                                               "EVENTS is False)")
        events.add_argument("--without-task-events", action="store_false", dest="task_events",
                            help="send only the worker's own events (online, heartbeat, offline)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            worker_options = self._worker_options(options)
            worker = Worker(worker_options)
            if options.get("task_events") is not None:
                worker.events.task_events = options["task_events"] and worker.events.enabled
        except (ConfigurationError, ValueError) as exc:
            raise CommandError(mask_text(str(exc))) from exc
        # Celery's order: celeryd_init, logging (setup_logging...), celeryd_after_setup, run.
        hostname, conf = worker_options.hostname, get_settings()
        signals.send(signals.celeryd_init, hostname, instance=worker, conf=conf,
                     options=dict(options))
        setup_worker_logging(options["loglevel"], options["logfile"])
        self.stdout.write(banner(worker))
        self.stdout.flush()
        signals.send(signals.celeryd_after_setup, hostname, instance=worker, conf=conf)
        install_signal_handlers(worker)
        beat = embedded_beat() if options["beat"] else None
        try:
            worker.run(max_tasks=options["max_tasks"], until_empty=options["burst"],
                       on_started=beat.start_thread if beat else None)
        finally:
            if beat is not None:
                beat.stop()
                beat.join(timeout=10)
        if worker.cold and worker.options.pool in ("threads", "asyncio"):
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
            autoscale=_autoscale(options["autoscale"]),
            pool=options["pool"], hostname=options["hostname"],
            prefetch_multiplier=options["prefetch_multiplier"], time_limit=hard,
            soft_time_limit=soft, max_tasks_per_child=options["max_tasks_per_child"],
            max_memory_per_child=options["max_memory_per_child"])


def _autoscale(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        return autoscale(value)
    except TypeError as exc:
        raise CommandError(f"--autoscale {value!r} is not valid: it takes {exc}.") from exc


def embedded_beat() -> BeatService:
    """Beat in a thread of the worker's supervising process, started once the pool has forked
    (children fork before any other thread exists)."""
    from ...beat.service import BeatService

    return BeatService(embedded=True)


def install_signal_handlers(worker: Worker) -> None:
    """First SIGTERM/SIGINT: warm stop. Second: cold stop (running tasks are requeued).

    Each sends ``worker_shutting_down`` first, as Celery's handlers do (a cold stop of the solo
    pool raises inside the running task from here).
    """
    def handle(signum: int, frame: Any) -> None:
        cold = worker.stopping
        signals.send(signals.worker_shutting_down, worker.options.hostname,
                     sig=signal.Signals(signum).name, how="Cold" if cold else "Warm", exitcode=0)
        worker.request_stop(cold=cold)

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
