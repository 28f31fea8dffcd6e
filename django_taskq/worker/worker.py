"""The worker loop: reserve → check → execute in a pool → settle, as a step function.

``step()`` does one round without sleeping longer than the broker's poll, so tests drive it
directly; ``run()`` loops it, installs signal handlers and owns the shutdown sequence.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import timedelta
from typing import Any, cast

from .. import events, signals, states
from ..brokers import get_broker
from ..brokers.base import Broker, DeadLetter, Delivery, worker_lost_reason
from ..canvas.fields import steps_of
from ..clock import SYSTEM, Clock, using
from ..conf import get_settings
from ..events import build, dispatcher_for
from ..events.dispatcher import EventDispatcher
from ..exceptions import BadMessage, ServiceError, TaskRevokedError
from ..outcome import Outcome, failure, reply_address
from ..registry import registry
from ..results import get_backend
from ..results.base import ResultBackend
from . import chords, ratelimits, rejection, stopping
from .autoscale import Autoscaler
from .heartbeat import Heartbeat
from .introspection import Introspection
from .job import Job, prepare
from .monitor import Monitor
from .options import WorkerOptions
from .outcomes import log_outcome
from .pools import LOST, TERMINATED, make_pool
from .revocations import RevocationCache
from .settler import Settler
from .stopping import attempt as _attempt

logger = logging.getLogger(__name__)


class WorkerTerminate(BaseException):
    """Raised inside a solo task on the second stop signal, to abandon it (it is requeued)."""


class Worker(Introspection):
    """Consumes messages from ``options.queues`` and runs them in a pool."""

    def __init__(self, options: WorkerOptions, *, broker: Broker | None = None,
                 backend: ResultBackend | None = None, clock: Clock = SYSTEM,
                 events: EventDispatcher | None = None, monitor: bool = True) -> None:
        self.options = options
        self.clock = clock
        registry.check_options()
        self.broker = broker or get_broker()
        self.backend = backend or get_backend()
        settings = get_settings()
        self.accept = settings.ACCEPT_CONTENT
        self.result_serializer = settings.RESULT_SERIALIZER
        self.track_started = settings.TASK_TRACK_STARTED
        self.extended = settings.RESULT_EXTENDED
        self._control: Any = None
        self.revocations = RevocationCache(self.control_store, settings.REVOKE_POLL_INTERVAL)
        self.rate_gate = ratelimits.RateGate(self.control_store)
        self.pool = make_pool(
            options.pool, options.concurrency, time_limit=options.time_limit,
            soft_time_limit=options.soft_time_limit, max_tasks_per_child=options.max_tasks_per_child,
            max_memory_per_child=options.max_memory_per_child)
        self.autoscaler = Autoscaler.for_worker(self)  # None without --autoscale
        # Solo tasks run on the worker's own thread and so share its database connections.
        self.keep_connections: tuple[str, ...] = cast("tuple[str, ...]", tuple(
            {getattr(self.broker, "alias", None), getattr(self.backend, "alias", None)} - {None}
        )) if options.pool == "solo" else ()
        self.settler = Settler(self.broker, self.backend, clock=clock.monotonic)
        self.prefetched: deque[tuple[Delivery, Job]] = deque()
        self.running: dict[int, tuple[Delivery, Job]] = {}
        self.processed = 0
        self.stopping = False
        self.cold = False
        self._stop_started: float | None = None
        self._keys = itertools.count(1)
        self._next_poll = 0.0
        self._claim_was_short = False
        self._held_lock = threading.Lock()
        self._in_task = False
        self.heartbeat = Heartbeat(
            self.broker, held=self.held_deliveries, lease=options.lease,
            interval=options.heartbeat_interval,
            on_dead=self._record_dead, cleanup=self._cleanup, sender=self)
        self._init_introspection()
        self.events = events or dispatcher_for(options.hostname, self.broker)
        self.monitor = Monitor(self, self.events, freq=settings.EVENTS_HEARTBEAT,
                               control_every=settings.REVOKE_POLL_INTERVAL)
        self.run_monitor = monitor  # off: no events flushed, no remote control (test drains)

    @property
    def capacity(self) -> int:
        """How many messages this worker holds at most (running plus prefetched)."""
        if self.autoscaler is not None:
            return self.autoscaler.capacity()
        return self.options.concurrency * self.options.prefetch_multiplier

    def control_store(self) -> Any:
        """The control store (rate limits, revocations), connected on first use."""
        if self._control is None:
            from ..control import get_control_store

            self._control = get_control_store()
        return self._control

    def _cleanup(self) -> None:
        """Periodic housekeeping (heartbeat thread): expired results, old buckets, revocations."""
        self.backend.cleanup()
        self.control_store().prune()
        events.prune()

    def held_deliveries(self) -> list[Delivery]:
        """Every delivery whose lease this worker must keep alive."""
        with self._held_lock:
            return ([d for d, _ in self.prefetched] + [d for d, _ in self.running.values()]
                    + self.settler.deliveries)

    # -- the loop ------------------------------------------------------------------------

    def start(self) -> None:
        """Start the pool (children fork before any other thread exists), then the heartbeat."""
        signals.send(signals.worker_init, self)
        self.pool.start()
        self.heartbeat.start()
        if self.run_monitor:
            self.monitor.start()
        signals.send(signals.worker_ready, self)

    def step(self) -> None:
        """One round: collect finished jobs, settle, reserve more, dispatch, wait briefly."""
        with using(self.clock):  # times stamped on runs and retries come from this clock
            self._step()

    def _step(self) -> None:
        self.apply_changes()
        if self.revocations.refresh():
            self._terminate_revoked()
        self._collect(0)
        self._dispatch()
        if self.settler.due(more_ready=bool(self.prefetched)):
            self.settler.flush()
        self._fill()
        if self.autoscaler is not None:
            self.autoscaler.step()
        self._dispatch()
        if self.running and not (self.prefetched and self.pool.free_slots()):
            self._collect(self._wait_time())
        if self.settler.due(more_ready=bool(self.prefetched)):
            self.settler.flush()

    def _wait_time(self) -> float:
        """How long to block on running jobs: until the next broker poll or settle is due."""
        wait = 1.0
        if not self.stopping and self._wants_more():
            wait = self._next_poll - self.clock.monotonic()
        return max(0.0, min(wait, self.settler.time_left(), self.revocations.time_left()))

    def _wants_more(self) -> bool:
        return (len(self.prefetched) < max(self.options.concurrency, 1)
                and len(self.prefetched) + len(self.running) < self.capacity)

    def _fill(self) -> None:
        if self.stopping or not self._wants_more() or self.clock.monotonic() < self._next_poll:
            return
        want = self.capacity - len(self.prefetched) - len(self.running)
        idle = not (self.prefetched or self.running or len(self.settler))
        deliveries = self.broker.reserve(
            self.options.queues, max_messages=want, lease=self.options.lease,
            worker=self.options.hostname, timeout=self.options.poll_interval if idle else 0.0)
        self._claim_was_short = len(deliveries) < want
        if not deliveries and not idle:
            self._next_poll = self.clock.monotonic() + self.options.poll_interval
        for index, delivery in enumerate(deliveries):
            try:
                self._accept(delivery)
            except BaseException:
                # Do not leave the rest of the batch leased (and unextended) until expiry.
                _attempt(lambda rest=deliveries[index + 1:]: self.broker.release(rest),
                         "release the rest of a claimed batch")
                raise

    def _accept(self, delivery: Delivery) -> None:
        try:
            job, decoded = prepare(
                next(self._keys), delivery.envelope, accept=self.accept,
                hostname=self.options.hostname, result_serializer=self.result_serializer,
                keep_connections=self.keep_connections, track_started=self.track_started,
                extended=self.extended,
                default_time_limits=(self.options.time_limit, self.options.soft_time_limit))
        except BadMessage as exc:
            rejection.reject(self, delivery, exc)
            return
        if self.revocations.is_revoked(job.request.id):
            self._revoke(delivery, job, "revoked before it ran")
            return
        now = self.clock.now()
        if decoded.expires is not None and decoded.expires <= now:
            self._revoke(delivery, job, f"expired at {decoded.expires.isoformat()}", expired=True)
            return
        if decoded.eta is not None and decoded.eta > now:
            # A Celery producer's ETA message, delivered at once: park it in the broker until
            # due (never held in worker memory, so never past a visibility timeout).
            self.broker.defer(delivery, decoded.eta)
            return
        signals.send(signals.task_received, self, request=job.request)
        if self.sends_events(job.task_name):  # the fields cost a repr of the arguments
            self.events.send("task-received", **build.received(job))
        with self._held_lock:
            self.prefetched.append((delivery, job))

    def _revoke(self, delivery: Delivery, job: Job, why: str, *, expired: bool = False,
                terminated: bool = False) -> None:
        """Settle ``delivery`` as REVOKED without running it (or after killing its run)."""
        logger.info("task revoked name=%s id=%s: %s", job.task_name, job.request.id, why)
        outcome = failure(job.request.id or "", job.task_name, TaskRevokedError(why),
                          state=states.REVOKED, date_done=self.clock.now(),
                          worker=self.options.hostname, retries=job.request.retries,
                          chain=steps_of(job.request.chain),  # its later steps: REVOKED too
                          **reply_address(job.request))
        self.settler.add(delivery, outcome)
        self.events.send("task-revoked", uuid=outcome.task_id, name=job.task_name,
                         terminated=terminated, signum=9 if terminated else None, expired=expired)
        signals.send(signals.task_revoked, registry.get(job.task_name), request=job.request,
                     terminated=terminated, signum=9 if terminated else None, expired=expired)

    def _ready_to_run(self, delivery: Delivery, job: Job) -> bool:
        """Last checks before a prefetched job runs: revoked meanwhile, or over a rate limit
        (then it goes back to its queue until a token is due)."""
        if self.revocations.is_revoked(job.request.id):
            self._revoke(delivery, job, "revoked before it ran")
            return False
        wait = self.rate_gate.wait_for(job)
        if wait > 0:
            logger.debug("rate limit: %s waits %.3fs in its queue", job.task_name, wait)
            self.broker.defer(delivery, self.clock.now() + timedelta(seconds=wait))
            return False
        return True

    def _terminate_revoked(self) -> None:
        """Kill running executions revoked with ``terminate=True`` (where the pool can)."""
        with self._held_lock:
            running = {job.request.id: key for key, (_, job) in self.running.items()
                       if job.request.id}
        for task_id in self.revocations.to_terminate(list(running)):
            if not self.pool.kill(running[task_id]):
                logger.warning("cannot terminate id=%s: the %s pool cannot kill a running task",
                               task_id, self.options.pool)

    def _dispatch(self) -> None:
        while self.prefetched and self.pool.free_slots() and not self.stopping:
            with self._held_lock:
                delivery, job = self.prefetched[0]
            if not self._ready_to_run(delivery, job):
                with self._held_lock:
                    self.prefetched.popleft()
                continue
            with self._held_lock:
                self.prefetched.popleft()
                self.running[job.key] = (delivery, job)
            self.started_at[job.key] = time.time()
            if self.sends_events(job.task_name):
                self.events.send("task-started", **build.started(job))
            self._in_task = True
            try:
                self.pool.submit(job)
            finally:
                self._in_task = False
            if self.options.pool == "solo":
                self._collect(0)
                if self.settler.due(more_ready=bool(self.prefetched)):
                    self.settler.flush()

    def _collect(self, timeout: float) -> None:
        for key, outcome in self.pool.collect(timeout):
            with self._held_lock:
                delivery, job = self.running.pop(key)
            self.started_at.pop(key, None)
            if outcome is LOST:
                # A failure here leaves the message to its lease expiry and recovery; the
                # other finished jobs of this round are still handled.
                _attempt(lambda d=delivery, j=job: self._lost(d, j),
                         "requeue a lost job's message")
                continue
            if outcome is TERMINATED:
                self._revoke(delivery, job, "terminated while running", terminated=True)
                continue
            self.processed += 1
            finished = cast(Outcome, outcome)  # neither LOST nor TERMINATED by now
            self.totals[job.task_name] += 1
            log_outcome(finished)
            self.report_finished(finished)
            self.settler.add(delivery, finished)

    def _lost(self, delivery: Delivery, job: Job, *, quiet: bool = False) -> None:
        """The process running ``job`` died (or the worker stops under it): run it again, or
        dead-letter it once it has been delivered ``max_deliveries`` times (promise 2)."""
        if delivery.attempts >= self.broker.max_deliveries:
            reason = worker_lost_reason(delivery.attempts)
            self._record_dead([DeadLetter(delivery.envelope, reason, delivery.attempts)])
            self.broker.dead_letter(delivery, reason)
        else:
            if not quiet:
                logger.warning("worker process lost while running name=%s id=%s; requeued",
                               job.task_name, job.request.id)
            self.broker.requeue(delivery)

    def _record_dead(self, letters: list[DeadLetter]) -> None:
        letters = chords.verified(letters)  # with signing on: a stranger's records nothing
        chords.record_dead(self.backend, self.broker, letters, self.options.hostname,
                           self.clock.now())
        # Once recorded: the heartbeat records a letter again after a failure, and its event
        # would be counted again each time.
        for letter in letters:
            self.events.send("task-failed", uuid=letter.envelope.message_id,
                             name=letter.envelope.task_name, exception=letter.reason,
                             traceback="")

    # -- running and stopping -------------------------------------------------------------

    def request_stop(self, cold: bool = False) -> None:
        """Warm stop: take nothing new, finish running tasks. Cold: abandon them (requeued)."""
        if self.stopping and not cold:
            cold = True
        if not self.stopping:
            logger.info("stopping: finishing %d running task(s)", len(self.running))
        self.stopping = True
        self._stop_started = self._stop_started or self.clock.monotonic()
        self.cold = self.cold or cold
        self.broker.interrupt()
        if cold and self._in_task and self.options.pool == "solo":
            raise WorkerTerminate()

    def run(self, *, max_tasks: int | None = None, until_empty: bool = False,
            on_started: Callable[[], object] | None = None) -> None:
        """Loop until stopped (or ``max_tasks`` done, or the queues are empty with ``until_empty``);
        ``on_started`` runs once the pool has forked (``--beat`` starts its thread there)."""
        self.start()
        if on_started is not None:
            on_started()
        backoff = 0.5
        try:
            while not self._done(max_tasks, until_empty):
                try:
                    self.step()
                    backoff = 0.5
                except ServiceError as exc:
                    logger.warning("broker unavailable (%s); retrying in %.1fs", exc, backoff)
                    time.sleep(backoff)
                    backoff = min(backoff * 2, 10.0)
        except WorkerTerminate:
            pass
        finally:
            self.shutdown()

    def _done(self, max_tasks: int | None, until_empty: bool) -> bool:
        return stopping.done(self, max_tasks, until_empty)

    def shutdown(self) -> None:
        """Give back everything not finished, settle what is, stop the pool and heartbeat."""
        stopping.shutdown(self)
