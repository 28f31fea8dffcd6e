"""Settle finished deliveries in batches: store their results, then ack them, in one round each.

Results are stored (and retries sent) before the ack, so a crash in between re-runs the task
(at least once) rather than losing its result. A batch is flushed when it is full, when it is
old, or when the worker has nothing else ready to run — so a lone task is settled at once and a
burst costs two queries.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import message, producer
from ..brokers.base import Broker, Delivery
from ..exceptions import RejectedError, ResultBackendConnectionError, ResultBackendError
from ..outcome import Outcome, failure
from ..results.base import ResultBackend
from ..sensitive import task_is_sensitive
from . import chords

logger = logging.getLogger(__name__)


@dataclass
class Settler:
    """A buffer of (delivery, outcome) pairs waiting to be stored and acked."""

    broker: Broker
    backend: ResultBackend
    max_batch: int = 500
    max_delay: float = 0.1
    clock: Callable[[], float] = time.monotonic
    _pending: list[tuple[Delivery, Outcome | None]] = field(default_factory=list)
    _since: float = 0.0
    _retries_sent: int = 0  # the first this many pending entries' retries are already sent

    def add(self, delivery: Delivery, outcome: Outcome | None) -> None:
        """Queue ``delivery`` for ack, with ``outcome`` to store first (None stores nothing)."""
        if not self._pending:
            self._since = self.clock()
        self._pending.append((delivery, outcome))

    @property
    def deliveries(self) -> list[Delivery]:
        """Deliveries waiting to be acked (their leases must still be kept alive)."""
        return [delivery for delivery, _ in self._pending]

    def __len__(self) -> int:
        return len(self._pending)

    def due(self, more_ready: bool) -> bool:
        """Whether to flush now: full, old, or nothing else is about to run."""
        if not self._pending:
            return False
        return (not more_ready or len(self._pending) >= self.max_batch
                or self.clock() - self._since >= self.max_delay)

    def time_left(self) -> float:
        """Seconds until the oldest pending outcome must be flushed (1.0 when none waits)."""
        if not self._pending:
            return 1.0
        return max(0.0, self.max_delay - (self.clock() - self._since))

    def flush(self) -> None:
        """Store the results, send retries, then ack. On an error nothing is dropped: the batch
        stays (and its retries are not sent twice). A result the backend refuses for good (not
        a lost connection) is replaced, so one bad value never stops the worker."""
        if not self._pending:
            return
        try:
            self._flush()
        except ResultBackendConnectionError:
            raise
        except ResultBackendError as exc:
            logger.warning("storing a batch of results failed (%s); storing them one by one", exc)
            self._isolate_unstorable()
            self._flush()

    def _flush(self) -> None:
        self._bound_requeues()
        retries = self._retry_envelopes()  # first, as it may turn a RETRY into a FAILURE
        outcomes = [o for _, o in self._pending if o is not None and not o.ignore_result]
        # On the database broker (with results in the same database) the writes commit together.
        with self.broker.atomic():
            if outcomes:
                self.backend.store_many(outcomes)
            bodies, chords_done = chords.follow_ups(
                self.backend, ((d.envelope, o) for d, o in self._pending[self._retries_sent:]))
            if retries or bodies:
                self.broker.enqueue_many([*retries, *bodies])
                if not self.broker.transactional:  # sent for good, even if the ack fails
                    self._retries_sent = len(self._pending)
            if not self.broker.transactional:
                self._close(chords_done)
            self.broker.ack_many([d for d, o in self._pending if o is None or o.disposition == "ack"])
            self._settle_otherwise()
        self._pending = []  # settled: nothing of this batch is sent again, whatever follows
        self._retries_sent = 0
        if self.broker.transactional:  # once the bodies are committed, not before
            self._close(chords_done)

    def _close(self, chords_done: list[str]) -> None:
        """Mark completed chords sent. Failing here leaves a chord completable again only by the
        header task that completed it, whose message is settled: nothing runs twice."""
        for group_id in chords_done:
            try:
                self.backend.chord_sent(group_id)
            except Exception as exc:  # noqa: BLE001 - only a re-completion by the same task
                logger.warning("could not mark chord %s sent: %s", group_id, exc)

    def _isolate_unstorable(self) -> None:
        """Store each final outcome on its own; one the backend refuses becomes a FAILURE that
        says so, and if even that is refused, its message is dead-lettered with the reason."""
        for index, (delivery, outcome) in enumerate(self._pending):
            if outcome is None or outcome.ignore_result or outcome.retry is not None:
                continue
            try:
                with self.broker.atomic():
                    self.backend.store(outcome)
            except ResultBackendConnectionError:
                raise
            except ResultBackendError as exc:
                logger.error("the result of id=%s cannot be stored: %s", outcome.task_id, exc)
                self._pending[index] = (delivery, self._unstorable(outcome, exc))

    def _unstorable(self, outcome: Outcome, exc: ResultBackendError) -> Outcome:
        reason = f"the result could not be stored: {exc}"[:1000]
        replacement = failure(outcome.task_id, outcome.task_name, ResultBackendError(reason),
                              date_done=outcome.date_done, worker=outcome.worker,
                              retries=outcome.retries, **_address(outcome))
        try:
            with self.broker.atomic():
                self.backend.store(replacement)
            return replacement
        except ResultBackendConnectionError:
            raise
        except ResultBackendError:
            return dataclasses.replace(replacement, ignore_result=True,
                                       disposition="dead_letter", reason=reason)

    def _bound_requeues(self) -> None:
        """A message put back delivery after delivery (``Reject(requeue=True)``, a timeout
        with ``acks_on_timeout=False``) is dead-lettered once delivered ``max_deliveries``
        times (promise 2: no endless redelivery), with a FAILURE so nobody waits for ever."""
        for index, (delivery, outcome) in enumerate(self._pending):
            if outcome is None or outcome.disposition != "requeue" \
                    or delivery.attempts < self.broker.max_deliveries:
                continue
            reason = (f"put back (rejected with requeue) on each of its {delivery.attempts} "
                      f"deliveries; giving up ({outcome.reason})")
            given_up = failure(
                outcome.task_id, outcome.task_name, RejectedError(reason),
                date_done=outcome.date_done, worker=outcome.worker, retries=outcome.retries,
                disposition="dead_letter", reason=reason, **_address(outcome))
            # Its errbacks waited for this last run (a timeout put back each time).
            errbacks = chords.message_errbacks(delivery.envelope, given_up,
                                               RejectedError(reason))
            self._pending[index] = (delivery, dataclasses.replace(given_up,
                                                                  follow_ups=tuple(errbacks)))

    def _settle_otherwise(self) -> None:
        """Messages whose run asked for something else than an ack: Celery's ``Reject``
        (dead letter, or back to the queue) and failures of ``acks_on_failure_or_timeout=False``
        tasks (dead letter)."""
        for delivery, outcome in self._pending:
            if outcome is None or outcome.disposition == "ack":
                continue
            if outcome.disposition == "requeue":
                self.broker.requeue(delivery)
            else:
                self.broker.dead_letter(delivery, outcome.reason or outcome.state)

    def _retry_envelopes(self) -> list[message.Envelope]:
        """The next deliveries of RETRY outcomes, and the follow-ups of finished runs, not sent
        yet, sealed (signed, size checked). A retry or follow-up that cannot be built or sealed
        (new arguments that do not encode, a result too large for the next step) fails its
        task instead of stopping the worker."""
        envelopes: list[message.Envelope] = []
        for index in range(self._retries_sent, len(self._pending)):
            delivery, outcome = self._pending[index]
            if outcome is None:
                continue
            try:
                envelopes.extend(self._sends_of(delivery, outcome))
            except Exception as exc:  # noqa: BLE001 - bad input fails one task, not the worker
                logger.error("cannot send the %s of id=%s: %s",
                             "retry" if outcome.retry else "follow-ups", outcome.task_id, exc)
                failed = failure(
                    outcome.task_id, outcome.task_name, exc, date_done=outcome.date_done,
                    worker=outcome.worker, retries=outcome.retries,
                    ignore_result=outcome.ignore_result, **_address(outcome))
                if outcome.disposition == "dead_letter":  # Reject, acks_on_failure=False: still
                    failed = dataclasses.replace(failed, disposition="dead_letter",
                                                 reason=outcome.reason)
                self._pending[index] = (delivery, failed)
        return envelopes

    @staticmethod
    def _sends_of(delivery: Delivery, outcome: Outcome) -> list[message.Envelope]:
        """What settling ``outcome`` sends: its follow-ups (callbacks, chain steps, errbacks;
        none while it runs again) and its retry, sealed."""
        sends = list(outcome.follow_ups) if outcome.disposition != "requeue" else []
        if outcome.retry is not None:
            retry = message.retry_envelope(
                delivery.envelope, eta=outcome.retry.eta, args=outcome.retry.args,
                kwargs=outcome.retry.kwargs, options=outcome.retry.options)
            if task_is_sensitive(retry.task_name) and \
                    message.HIDDEN_ARGS_HEADER not in retry.headers:  # by name or by Celery
                retry = retry.with_headers(argsrepr=message.SENSITIVE,
                                           kwargsrepr=message.SENSITIVE)
            sends.append(retry)
        return producer.seal_all(sends)


def _address(outcome: Outcome) -> dict[str, Any]:
    """A replacement outcome goes where the original would have (rpc:// replies)."""
    return {"reply_to": outcome.reply_to, "correlation_id": outcome.correlation_id}
