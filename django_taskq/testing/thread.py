"""A worker running in a background thread of the test process.

For tests that send a task and wait for it (``add.delay(2, 3).get(timeout=5)``). The thread
opens its own database connections, so on the database broker it only sees committed rows:
the test must not run inside a transaction (pytest-django's ``transactional_db``, Django's
``TransactionTestCase``). Time limits are not enforced: SIGALRM timers need the main thread.
"""

from __future__ import annotations

import logging
import socket
import threading
from typing import Any

from ..exceptions import ConfigurationError, TaskqError

logger = logging.getLogger(__name__)

#: Pools that can run inside a thread (prefork would fork the whole test process).
POOLS = ("solo", "threads")


class WorkerThreadError(TaskqError):
    """The worker thread failed, or did not start or stop in time."""


class WorkerThread:
    """A :class:`~django_taskq.worker.Worker` running in a daemon thread.

    Args:
        queues: the queues to consume (default: DEFAULT_QUEUE).
        pool: ``solo`` (tasks run in the worker's thread, one at a time) or ``threads``.
        **options: other WorkerOptions fields (``concurrency``, ``prefetch_multiplier``...).

    Raises:
        ConfigurationError: an unusable pool.
    """

    def __init__(self, queues: tuple[str, ...] | list[str] | None = None, pool: str = "solo",
                 **options: Any) -> None:
        from ..worker import Worker, WorkerOptions

        if pool not in POOLS:
            raise ConfigurationError(f"A worker in a test thread cannot use the {pool!r} pool "
                                     f"(prefork would fork the test process); use one of "
                                     f"{', '.join(POOLS)}.")
        options.setdefault("hostname", f"testworker@{socket.gethostname()}")
        self.worker = Worker(WorkerOptions.from_settings(
            queues=tuple(queues) if queues else None, pool=pool, **options))
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="taskq-test-worker", daemon=True)

    def database_aliases(self) -> set[str]:
        """The database aliases the worker uses (broker, result backend, control store)."""
        engines = (self.worker.broker, self.worker.backend, self.worker.control_store())
        return {alias for alias in (getattr(e, "alias", None) for e in engines) if alias}

    @property
    def processed(self) -> int:
        """How many tasks it has run."""
        return self.worker.processed

    def start(self, timeout: float = 10.0) -> WorkerThread:
        """Start the thread; return once the worker is ready.

        Raises:
            WorkerThreadError: it failed while starting, or was not ready within ``timeout``.
        """
        uid = f"django_taskq.testing.thread.{id(self)}"
        from .. import signals

        signals.worker_ready.connect(self._on_ready, sender=self.worker, weak=False,
                                     dispatch_uid=uid)
        try:
            self._thread.start()
            self._ready.wait(timeout)
        finally:
            signals.worker_ready.disconnect(sender=self.worker, dispatch_uid=uid)
        self._raise_error("failed while starting")
        if not self._ready.is_set():
            self.worker.request_stop()
            raise WorkerThreadError(f"the worker thread was not ready within {timeout:g}s")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Warm stop (running tasks finish), wait for the thread, raise what failed in it.

        Raises:
            WorkerThreadError: the worker failed, or a task still runs after ``timeout``
                (a thread cannot be killed; it is left behind as a daemon).
        """
        if self._thread.is_alive():
            self.worker.request_stop()
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise WorkerThreadError(
                    f"the worker thread did not stop within {timeout:g}s: a task is still "
                    "running, and a thread cannot be killed")
        self._raise_error("failed")

    def _on_ready(self, sender: Any = None, **kwargs: Any) -> None:
        self._ready.set()

    def _run(self) -> None:
        from django.db import connections

        try:
            self.worker.run()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread by stop()
            logger.exception("the test worker thread failed")
            self.error = exc
        finally:
            self._ready.set()  # a failed start must not keep start() waiting
            connections.close_all()  # this thread's; a test database cannot be dropped in use

    def _raise_error(self, what: str) -> None:
        if self.error is not None:
            raise WorkerThreadError(f"the worker thread {what}: {self.error!r}") from self.error

    def __enter__(self) -> WorkerThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
