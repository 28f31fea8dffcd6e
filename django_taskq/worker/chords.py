"""Count a chord's finished header tasks when their runs are settled; start the body once.

A header task's message carries the chord's body (``embed.chord``) and its group (``group``,
``group_index`` headers). Whatever ended the run — the task itself, its hard time limit, a
revocation, a dead letter after lost workers — the finished state is recorded with the result
backend (atomically there: a row lock in the database, one Lua script in Redis). The run that
completes the count starts the body with the header's results in header order, or, when a header
task failed, fails the body with a ChordError naming it and calls the body's errbacks: nobody
waits for ever. The body's messages are sent with the settle (one transaction on the database
broker), and ``chord_sent`` closes the chord once they are. What is sent from here is sealed
(signed, size checked) here: a body too large to send fails the chord instead.

Group members without a chord (no ``embed.chord``) cost a header look-up; other tasks nothing.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction

from .. import producer, signing, states
from ..brokers.base import Broker, DeadLetter
from ..canvas.dispatch import envelopes_for
from ..canvas.fields import steps_of
from ..clock import clock_now
from ..conf import get_settings
from ..exceptions import (
    ChordError,
    ResultBackendConnectionError,
    ResultBackendError,
    ServiceError,
    SignatureError,
    WorkerLostError,
)
from ..message import Envelope, decode_body
from ..outcome import Outcome, envelope_address, failure
from ..results.base import ResultBackend
from ..results.meta import PartResult, rebuild_exception
from . import followups

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Parent:
    """What the body's messages take from the header task that completed the chord."""

    id: str
    root_id: str | None
    task: str
    errbacks: Any = None


@dataclass(frozen=True, slots=True)
class _Part:
    """A finished header task to count: its chord (group id, body) and its place."""

    group_id: str
    index: int | None
    outcome: Outcome
    body: dict[str, Any]
    root_id: str | None


def follow_ups(backend: ResultBackend, finished: Iterable[tuple[Envelope, Outcome | None]]
               ) -> tuple[list[Envelope], list[str]]:
    """What settling ``finished`` runs sends on: the bodies of the chords they complete (or
    those bodies' errbacks), after storing the failure of the later steps of a failed run's
    chain (never sent; counted in their chords, as Celery's ``_fail_chain``). Returns the
    messages and the ids of the completed chords (to close with ``backend.chord_sent``)."""
    settling = _Settling(backend)
    for envelope, outcome in finished:
        if outcome is None or outcome.state not in states.READY_STATES \
                or outcome.disposition == "requeue":
            continue
        root_id = envelope.headers.get("root_id")
        if outcome.state in states.PROPAGATE_STATES:
            chain = outcome.chain if outcome.chain is not None else \
                steps_of((_embed(envelope) or {}).get("chain"))
            settling.guarded(settling.fail_steps, chain, outcome, root_id)
        group_id = envelope.headers.get("group")
        if group_id and isinstance(group_id, str):
            body = outcome.chord if outcome.chord is not None else _chord_body(envelope)
            if body and isinstance(body, dict):
                settling.parts.append(_Part(group_id, envelope.headers.get("group_index"),
                                            outcome, body, root_id))
    return settling.run()


class _Settling:
    """The chord parts of one settle: counted together, the completed chords' bodies started;
    a failed body fails what follows it in turn (its chain, an outer chord)."""

    def __init__(self, backend: ResultBackend) -> None:
        self.backend = backend
        self.parts: list[_Part] = []
        self.failed: list[Outcome] = []
        self.sent: list[Envelope] = []
        self.completed: list[str] = []

    def guarded(self, action: Any, *args: Any) -> None:
        """``action(*args)``; bad workflow data is logged and skipped, never stops the worker
        (an outage of the store or the broker is raised: the settle is tried again)."""
        try:
            action(*args)
        except ServiceError:
            raise
        except Exception:  # noqa: BLE001 - one malformed workflow must not stop the rest
            logger.exception("a workflow's follow-up cannot be handled; skipped")

    def store(self, failed: list[Outcome]) -> None:
        """Store the failures of never-sent tasks; one the store refuses is logged, skipped."""
        try:
            self.backend.store_many(failed)
        except ResultBackendConnectionError:
            raise
        except ResultBackendError:
            for outcome in failed:
                try:
                    self.backend.store(outcome)
                except ResultBackendConnectionError:
                    raise
                except ResultBackendError as exc:
                    logger.error("cannot store the failure of %s: %s", outcome.task_id, exc)

    def run(self) -> tuple[list[Envelope], list[str]]:
        while self.parts or self.failed:
            if self.failed:  # stored before they are counted: their readers see them at once
                failed, self.failed = self.failed, []
                self.store(failed)
            parts, self.parts = self.parts, []
            if not parts:
                continue
            try:
                counted = self.backend.add_chord_parts(
                    [(part.group_id, part.index, part.outcome) for part in parts])
            except ResultBackendConnectionError:
                raise
            except ResultBackendError as exc:  # refused for good: an outage is not this
                logger.error("chord parts of %s cannot be counted: %s",
                             sorted({part.group_id for part in parts}), exc)
                continue
            for part, results in zip(parts, counted, strict=True):
                if results is None or part.group_id in self.completed:
                    continue
                self.completed.append(part.group_id)
                parent = _Parent(part.outcome.task_id, part.root_id, part.outcome.task_name)
                self.guarded(self.start_body, part.body, results, parent)
        return self.sent, self.completed

    def start_body(self, body: Mapping[str, Any], parts: list[PartResult], parent: Any) -> None:
        """The body given the header's values; or its failure stored and its errbacks."""
        failed = next((part for part in parts if part.failed()), None)
        if failed is not None:
            cause = rebuild_exception(failed.value)
            self.fail_body(body, ChordError(f"Dependency {failed.task_id} raised {cause!r}"),
                           parent)
            return
        try:
            self.sent.extend(producer.seal_all(
                envelopes_for(body, ([part.value for part in parts],), parent)))
        except ServiceError:
            raise  # a store or broker outage: the settle is tried again
        except Exception as exc:  # noqa: BLE001 - bad input fails the body, not the worker
            logger.error("the body of chord %s cannot be started: %s", parent.id, exc)
            self.fail_body(body, ChordError(f"Callback error: {exc!r}"), parent)

    def fail_body(self, body: Mapping[str, Any], error: ChordError, parent: Any) -> None:
        """FAILURE under the id the body's result is read by, for what follows it too; its
        errbacks are sent (or called)."""
        task_id, name = result_id(body)
        logger.error("chord body %s[%s] not run: %s", name, task_id, error)
        failed = failure(task_id or "", name, error, date_done=clock_now())
        self.fail_steps([body], failed, parent.root_id)
        errbacks = (body.get("options") or {}).get("link_error")
        if errbacks:
            request = _Parent(task_id or parent.id, parent.root_id, name,
                              errbacks if isinstance(errbacks, list) else [errbacks])
            self.sent.extend(errbacks_for(request, error))

    def fail_steps(self, steps: Iterable[Mapping[str, Any]], outcome: Outcome,
                   root_id: str | None) -> None:
        """Store ``outcome``'s failure under each task of ``steps`` (never sent now), and
        count those that are chord header tasks."""
        for task in later_tasks(steps):
            options = task.get("options") or {}
            task_id = options.get("task_id")
            if not task_id:
                continue
            copy = dataclasses.replace(outcome, task_id=str(task_id),
                                       task_name=str(task.get("task")),
                                       follow_ups=(), chord=None, chain=None, ignore_result=False,
                                       args=None, kwargs=None, disposition="ack")
            self.failed.append(copy)
            chord = options.get("chord")
            if options.get("group_id") and isinstance(chord, dict):
                self.parts.append(_Part(options["group_id"], options.get("group_index"), copy,
                                        chord, root_id))


def later_tasks(steps: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    """The tasks of ``steps`` (signature dicts) that will now never be sent: each task, the
    tasks of nested chains and groups, a chord's body (not its header: never sent either, it
    is what the body's result waits on), and what each carries in its own ``chain``."""
    queue = deque(steps)
    while queue:
        step = queue.popleft()
        if not isinstance(step, Mapping):
            continue
        kind = step.get("subtask_type")
        kwargs = step.get("kwargs") or {}
        if kind in ("chain", "group"):
            queue.extend(steps_of(kwargs.get("tasks")))
        elif kind == "chord":
            queue.extend(steps_of([kwargs.get("body")]))
        else:
            yield step
        queue.extend(steps_of((step.get("options") or {}).get("chain")))


def errbacks_for(request: Any, exc: BaseException) -> list[Envelope]:
    """``request``'s errbacks: old-style ones as messages, new-style ones called here. Each
    is guarded on its own (and runs in its own savepoint), so one that fails or spoils its
    transaction neither stops the others nor the settle."""
    sent: list[Envelope] = []
    for errback in request.errbacks or ():
        one = dataclasses.replace(request, errbacks=[errback])
        try:
            with transaction.atomic():
                sent.extend(producer.seal_all(followups.after_failure(one, exc, None)))
        except ServiceError:
            raise
        except Exception:  # noqa: BLE001 - the failure stands; the errback is logged
            logger.exception("%s[%s]: its errback %s cannot be sent", request.task, request.id,
                             errback.get("task") if isinstance(errback, dict) else errback)
    return sent


def result_id(sig: Any) -> tuple[str | None, str]:
    """The task id (and task name) a workflow's result is read under: a chain's last step, a
    chord's body."""
    if not isinstance(sig, Mapping):
        return None, "?"
    kind = sig.get("subtask_type")
    if kind == "chain":
        steps = steps_of((sig.get("kwargs") or {}).get("tasks"))
        return result_id(steps[-1]) if steps else (None, "celery.chain")
    if kind == "chord":
        return result_id((sig.get("kwargs") or {}).get("body"))
    task_id = (sig.get("options") or {}).get("task_id")
    return (str(task_id) if task_id else None), str(sig.get("task"))


def _chord_body(envelope: Envelope) -> dict[str, Any] | None:
    """The ``chord`` embedded in the message's body, if any (the message decoded once more:
    only group members pay for it)."""
    embed = _embed(envelope)
    chord = embed.get("chord") if embed else None
    return chord if isinstance(chord, dict) else None


def _embed(envelope: Envelope) -> dict[str, Any] | None:
    """The message body's embedded workflow fields (None when it does not decode)."""
    try:
        body = decode_body(envelope, get_settings().ACCEPT_CONTENT)
    except Exception:  # noqa: BLE001 - the run already decoded it; a bad one has none
        return None
    return body[2] if isinstance(body, (list, tuple)) and len(body) == 3 \
        and isinstance(body[2], dict) else None


def record_dead(backend: ResultBackend, broker: Broker, letters: list[DeadLetter], hostname: str,
                now: datetime) -> None:
    """Store FAILURE (WorkerLostError) for messages dead-lettered after lost workers; a dead
    header task still counts, so its chord fails instead of waiting for ever; its errbacks
    are sent (Celery calls them for a lost worker's task too). With SIGNING_KEYS, pass only
    the :func:`verified` letters."""
    dead = [letter for letter in letters if letter.envelope.message_id]
    outcomes = [failure(letter.envelope.message_id, letter.envelope.task_name,
                        WorkerLostError(f"worker lost {letter.attempts} times; dead-lettered"),
                        date_done=now, worker=hostname, **envelope_address(letter.envelope))
                for letter in dead]
    for letter in letters:
        logger.error("message dead-lettered id=%s task=%s: worker lost %d times",
                     letter.envelope.message_id, letter.envelope.task_name, letter.attempts)
    if not outcomes:
        return
    backend.store_many(outcomes)
    pairs = list(zip([letter.envelope for letter in dead], outcomes, strict=True))
    bodies, done = follow_ups(backend, pairs)
    for envelope, outcome in pairs:
        bodies.extend(message_errbacks(envelope, outcome, WorkerLostError(outcome.error or "")))
    if bodies:
        broker.enqueue_many(bodies)
    for group_id in done:
        try:
            backend.chord_sent(group_id)
        except Exception:  # noqa: BLE001 - the letters are recorded: never record them again
            logger.warning("could not mark chord %s sent", group_id, exc_info=True)


def verified(letters: list[DeadLetter]) -> list[DeadLetter]:
    """With SIGNING_KEYS, the letters signed with one of them (of any age: a message may
    outlive its workers' deaths). Bookkeeping is not signed (an attempts count, a lease), so
    a stranger's message can arrive here unrefused: its id, chords and errbacks are not its
    to write or send (errbacks would go out signed by this worker)."""
    keys = get_settings().SIGNING_KEYS
    if not keys:
        return letters
    kept, now = [], clock_now().timestamp()
    for letter in letters:
        try:
            signing.verify(letter.envelope, keys, None, now)
        except SignatureError as exc:
            logger.error("message dead-lettered (unverified id=%s task=%s), nothing recorded: "
                         "%s", letter.envelope.message_id or "?",
                         letter.envelope.task_name or "?", exc)
        else:
            kept.append(letter)
    return kept


def message_errbacks(envelope: Envelope, outcome: Outcome, exc: BaseException) -> list[Envelope]:
    """The errbacks a message carries, for a run that ended without the task's own failure
    path (a dead letter, a run given up after being put back)."""
    errbacks = (_embed(envelope) or {}).get("errbacks")
    if not errbacks or not isinstance(errbacks, list):
        return []
    request = _Parent(outcome.task_id, envelope.headers.get("root_id"), outcome.task_name,
                      errbacks)
    return errbacks_for(request, exc)
