"""Run the queued tasks here, now, with a real worker, until the queues are empty.

``drain()`` runs a solo-pool :class:`~django_taskq.worker.Worker` in the calling thread: the
tasks run through the worker's own steps (decode, checks, middleware, signals, retries sent
back to the broker, results stored), and on the database broker they use the caller's
database connection, so they see the test's uncommitted rows and work inside a plain ``db``
test (a transaction that is rolled back afterwards).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .. import signals, states
from ..exceptions import TaskqError

#: Seconds a drain may take before it stops and raises DrainTimeout.
DEFAULT_TIMEOUT = 10.0
#: A drained message the worker refused to run (unknown task, arguments that do not fit...).
REJECTED = "REJECTED"
#: How long an idle drain waits for more messages per round (short: tests wait on it).
POLL = 0.02


class DrainError(TaskqError, AssertionError):
    """A task failed, or a message was refused, while ``drain()`` ran the queues."""


class DrainTimeout(DrainError):
    """``drain()`` ran out of time with messages still queued."""


@dataclass(frozen=True, slots=True)
class TaskRun:
    """One task the drain ran (or refused to run)."""

    name: str
    id: str
    #: SUCCESS, FAILURE, RETRY, IGNORED, REJECTED (the task raised Reject, or the worker refused
    #: the message), REVOKED.
    state: str
    #: The return value; the exception for FAILURE, RETRY, REJECTED.
    result: Any
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: The worker refused the message without running it; it was dead-lettered.
    refused: bool = False

    @property
    def failed(self) -> bool:
        """A failure, or a message the worker refused."""
        return self.state == states.FAILURE or self.refused


class Runs(list[TaskRun]):
    """What a drain ran, in order (a retried task appears once per run)."""

    def names(self) -> list[str]:
        return [run.name for run in self]

    def results(self) -> list[Any]:
        """The results of the successful runs."""
        return [run.result for run in self if run.state == states.SUCCESS]

    def failures(self) -> list[TaskRun]:
        return [run for run in self if run.failed]


class _Recorder:
    """Collects the runs of one worker from its signals (only its own thread's runs)."""

    def __init__(self, runs: Runs) -> None:
        self.runs = runs
        self.worker: Any = None
        self._thread = threading.get_ident()
        self._uid = f"django_taskq.testing.drain.{id(self)}"

    def __enter__(self) -> _Recorder:
        for signal, receiver in self._receivers():
            signal.connect(receiver, weak=False, dispatch_uid=self._uid)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signal, _ in self._receivers():
            signal.disconnect(dispatch_uid=self._uid)

    def _receivers(self) -> list[tuple[Any, Any]]:
        return [(signals.task_postrun, self._ran), (signals.task_rejected, self._refused),
                (signals.task_unknown, self._refused), (signals.task_revoked, self._revoked)]

    def _ours(self) -> bool:
        return threading.get_ident() == self._thread

    def _ran(self, sender: Any = None, task_id: str = "", task: Any = None, args: Any = (),
             kwargs: Any = None, retval: Any = None, state: str = "", **extra: Any) -> None:
        if self._ours() and not getattr(task.request, "is_eager", False):
            self.runs.append(TaskRun(task.name, task_id or "", state, retval, tuple(args or ()),
                                     dict(kwargs or {})))

    def _refused(self, sender: Any = None, message: Any = None, exc: Any = None,
                 **extra: Any) -> None:
        if sender is self.worker:
            self.runs.append(TaskRun(message.task_name, message.message_id, REJECTED, exc,
                                     refused=True))

    def _revoked(self, sender: Any = None, request: Any = None, **extra: Any) -> None:
        if self._ours():
            self.runs.append(TaskRun(request.task or "", request.id or "", states.REVOKED, None,
                                     tuple(request.args or ()), dict(request.kwargs or {})))


def drain(queues: Iterable[str] | None = None, *, timeout: float = DEFAULT_TIMEOUT,
          max_tasks: int | None = None, raise_on_failure: bool = True,
          seen: Iterable[Any] = ()) -> Runs:
    """Run queued tasks in this thread until ``queues`` are empty, and say what ran.

    Messages that are not due yet (a countdown, an eta, a retry's countdown) count as queued:
    the drain waits for them, as a worker would.

    Args:
        queues: the queues to empty; by default DEFAULT_QUEUE and the queue of every message in
            ``seen`` (the ``taskq_drain`` fixture passes what was sent during the test, so
            messages routed elsewhere, also by the drained tasks themselves, are run too).
        timeout: seconds before giving up with DrainTimeout.
        max_tasks: stop after this many runs (retries count), even if messages are left.
        raise_on_failure: raise DrainError once the queues are empty if a task failed or a
            message was refused; its cause is the first failure's exception.

    Returns:
        The runs, in order.

    Raises:
        DrainError, DrainTimeout: see above.
    """
    from ..conf import get_settings

    deadline = time.monotonic() + timeout
    runs = Runs()
    given = None if queues is None else tuple(queues)
    done: tuple[str, ...] = ()
    while True:
        wanted = given or _queues(get_settings().DEFAULT_QUEUE, seen)
        if wanted == done:  # nothing was sent to a queue this drain did not consume
            break
        left = None if max_tasks is None else max_tasks - len(runs)
        if left is not None and left <= 0:
            break
        _round(wanted, deadline, left, runs, timeout)
        done = wanted
    if raise_on_failure and runs.failures():
        first = runs.failures()[0]
        raise DrainError(f"{len(runs.failures())} of {len(runs)} drained task(s) failed; first: "
                         f"{first.name}[{first.id}]: {first.result!r} (pass "
                         f"raise_on_failure=False to inspect them)") from first.result
    return runs


def _queues(default: str, seen: Iterable[Any]) -> tuple[str, ...]:
    return tuple(sorted({default, *(sent.queue for sent in seen)}))


def _round(queues: tuple[str, ...], deadline: float, max_tasks: int | None, runs: Runs,
           timeout: float) -> None:
    """One solo worker on ``queues`` until they are empty (or max_tasks, or the deadline)."""
    from ..events.dispatcher import disabled
    from ..worker import Worker, WorkerOptions

    options = WorkerOptions.from_settings(
        pool="solo", queues=queues, hostname=f"drain@{socket.gethostname()}",
        poll_interval=POLL, prefetch_multiplier=1,  # one message at a time: max_tasks is exact
        # The heartbeat must not beat: its thread would open a database connection of its
        # own, which cannot see the test's transaction. A drain ends long before any lease.
        heartbeat_interval=max(3600.0, timeout * 2))
    # No monitor thread either (events, remote control): the same reason as the heartbeat.
    worker = Worker(options, events=disabled(options.hostname), monitor=False)
    expired = threading.Event()

    def expire() -> None:
        if not worker.stopping:
            expired.set()
            worker.request_stop()

    timer = threading.Timer(max(0.0, deadline - time.monotonic()), expire)
    timer.daemon = True
    with _Recorder(runs) as recorder:
        recorder.worker = worker
        timer.start()
        try:
            worker.run(max_tasks=max_tasks, until_empty=True)
        finally:
            timer.cancel()
    if expired.is_set():
        raise DrainTimeout(f"drain() stopped after {timeout:g}s with messages still queued "
                           f"({_sizes(worker, queues)}). A message with a countdown or eta, "
                           "or a retry's countdown, waits until it is due; if the broker "
                           "failed, its error is in the captured log.")


def _sizes(worker: Any, queues: tuple[str, ...]) -> str:
    try:
        return ", ".join(f"{queue}: {worker.broker.size(queue)}" for queue in queues)
    except Exception as exc:  # noqa: BLE001 - the message matters more than the count
        return f"sizes unknown: {exc}"
