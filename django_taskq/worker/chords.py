"""Count a chord's finished header tasks when their runs are settled; start the body once.

A header task's message carries the chord's body (``embed.chord``) and its group (``group``,
``group_index`` headers). Whatever ended the run — the task itself, its hard time limit, a
revocation, a dead letter after lost workers — the finished state is recorded with the result
backend (atomically there: a row lock in the database, one Lua script in Redis). The run that
completes the count starts the body with the header's results in header order, or, when a header
task failed, fails the body with a ChordError naming it and calls the body's errbacks: nobody
waits for ever. The body's messages are sent with the settle (one transaction on the database
broker), and ``chord_sent`` closes the chord once they are.

Group members without a chord (no ``embed.chord``) cost a header look-up; other tasks nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .. import serializers, states
from ..brokers.base import Broker, DeadLetter
from ..canvas.dispatch import envelopes_for
from ..clock import clock_now
from ..exceptions import ChordError, TaskRevokedError, WorkerLostError
from ..message import Envelope
from ..outcome import Outcome, failure
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


def follow_ups(backend: ResultBackend, finished: Iterable[tuple[Envelope, Outcome | None]]
               ) -> tuple[list[Envelope], list[str]]:
    """The messages that start completed chords' bodies (or their errbacks), and the ids of
    those chords (to close with ``backend.chord_sent`` once the messages are sent)."""
    parts = []
    for envelope, outcome in finished:
        group_id = envelope.headers.get("group")
        if not group_id or outcome is None or outcome.state not in states.READY_STATES \
                or outcome.disposition == "requeue":
            continue
        body = outcome.chord if outcome.chord is not None else _chord_body(envelope)
        if body:
            parts.append((envelope, outcome, group_id, body))
    if not parts:
        return [], []
    counted = backend.add_chord_parts(
        [(group_id, envelope.headers.get("group_index"), outcome)
         for envelope, outcome, group_id, _ in parts])
    sent: list[Envelope] = []
    completed: list[str] = []
    for (envelope, outcome, group_id, body), results in zip(parts, counted, strict=True):
        if results is None:
            continue
        parent = _Parent(outcome.task_id, envelope.headers.get("root_id"), outcome.task_name)
        sent.extend(start_body(backend, body, results, parent))
        completed.append(group_id)
    return sent, completed


def start_body(backend: ResultBackend, body: Mapping[str, Any], parts: list[PartResult],
               parent: Any) -> list[Envelope]:
    """The body given the header's values; or its failure stored and its errbacks."""
    failed = next((part for part in parts if part.failed()), None)
    if failed is not None:
        cause = rebuild_exception(failed.value)
        return fail_body(backend, body, ChordError(
            f"Dependency {failed.task_id} raised {cause!r}"), parent)
    try:
        return envelopes_for(body, ([part.value for part in parts],), parent)
    except Exception as exc:  # noqa: BLE001 - bad input fails the body, not the worker
        logger.error("the body of chord %s cannot be started: %s", parent.id, exc)
        return fail_body(backend, body, ChordError(f"Callback error: {exc!r}"), parent)


def fail_body(backend: ResultBackend, body: Mapping[str, Any], error: ChordError,
              parent: Any) -> list[Envelope]:
    """Store FAILURE under the id the body's result is read by; its errbacks follow."""
    task_id, name = result_id(body)
    logger.error("chord body %s[%s] not run: %s", name, task_id, error)
    if task_id:
        backend.store(failure(task_id, name, error, date_done=clock_now()))
    errbacks = (body.get("options") or {}).get("link_error")
    if not errbacks:
        return []
    request = _Parent(task_id or parent.id, parent.root_id, name,
                      errbacks if isinstance(errbacks, list) else [errbacks])
    return list(followups.after_failure(request, error, None))


def result_id(sig: Mapping[str, Any]) -> tuple[str | None, str]:
    """The task id (and task name) a workflow's result is read under: a chain's last step, a
    chord's body."""
    kind = sig.get("subtask_type")
    if kind == "chain":
        steps = (sig.get("kwargs") or {}).get("tasks") or ()
        return result_id(steps[-1]) if steps else (None, "celery.chain")
    if kind == "chord":
        return result_id((sig.get("kwargs") or {})["body"])
    return (sig.get("options") or {}).get("task_id"), str(sig.get("task"))


def _chord_body(envelope: Envelope) -> dict[str, Any] | None:
    """The ``chord`` embedded in the message's body, if any (the message decoded once more:
    only group members pay for it)."""
    embed = _embed(envelope)
    chord = embed.get("chord") if embed else None
    return chord if isinstance(chord, dict) else None


def _embed(envelope: Envelope) -> dict[str, Any] | None:
    """The message body's embedded workflow fields (None when it does not decode)."""
    codec = serializers.get(envelope.content_type)
    try:
        body = serializers.loads(envelope.body, envelope.content_type, envelope.content_encoding,
                                 (codec.name,))
    except Exception:  # noqa: BLE001 - the run already decoded it; a bad one has none
        return None
    return body[2] if isinstance(body, (list, tuple)) and len(body) == 3 \
        and isinstance(body[2], dict) else None


def record_dead(backend: ResultBackend, broker: Broker, letters: list[DeadLetter], hostname: str,
                now: datetime) -> None:
    """Store FAILURE (WorkerLostError) for messages dead-lettered after lost workers; a dead
    header task still counts, so its chord fails instead of waiting for ever."""
    dead = [letter for letter in letters if letter.envelope.message_id]
    outcomes = [failure(letter.envelope.message_id, letter.envelope.task_name,
                        WorkerLostError(f"worker lost {letter.attempts} times; dead-lettered"),
                        date_done=now, worker=hostname) for letter in dead]
    for letter in letters:
        logger.error("message dead-lettered id=%s task=%s: worker lost %d times",
                     letter.envelope.message_id, letter.envelope.task_name, letter.attempts)
    if not outcomes:
        return
    backend.store_many(outcomes)
    pairs = list(zip([letter.envelope for letter in dead], outcomes, strict=True))
    bodies, done = follow_ups(backend, pairs)
    bodies.extend(envelope for pair in pairs for envelope in _errbacks_of(*pair))
    if bodies:
        broker.enqueue_many(bodies)
    for group_id in done:
        backend.chord_sent(group_id)


def revoked_rest(request: Any, now: datetime, hostname: str) -> list[Outcome]:
    """REVOKED for the later steps of a revoked task's chain: they are never sent, so their
    results say so instead of staying PENDING."""
    outcomes = []
    for step in request.chain or ():
        task_id, name = result_id(step)
        if task_id:
            outcomes.append(failure(task_id, name, TaskRevokedError(
                f"not run: an earlier step of its chain ({request.id}) was revoked"),
                state=states.REVOKED, date_done=now, worker=hostname))
    return outcomes


def _errbacks_of(envelope: Envelope, outcome: Outcome) -> list[Envelope]:
    """A dead-lettered task's errbacks (Celery calls them for a lost worker's task too)."""
    embed = _embed(envelope)
    errbacks = embed.get("errbacks") if embed else None
    if not errbacks:
        return []
    request = _Parent(outcome.task_id, envelope.headers.get("root_id"), outcome.task_name,
                      errbacks)
    try:
        return list(followups.after_failure(request, WorkerLostError(outcome.error or ""), None))
    except Exception:  # noqa: BLE001 - the failure stands; the errbacks are logged
        logger.exception("%s[%s]: its errbacks cannot be sent", outcome.task_name, outcome.task_id)
        return []
