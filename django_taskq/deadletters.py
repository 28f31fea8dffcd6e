"""Dead letters, whatever the broker: list, inspect, requeue and purge them.

The one place ``manage.py taskq dead …`` and the admin go through, so both behave the same on
every broker. A dead letter is named by its ``DeadLetter.id`` (a row id on the database broker,
a hash of the stored message on Redis and RabbitMQ); see docs/dead-letters.md.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import producer, sensitive, signing
from .brokers import get_broker
from .brokers.base import Broker, DeadLetter, DeadLetterStore, dead_letter_store
from .clock import clock_now
from .conf import get_settings
from .exceptions import SignatureError, TaskqError
from .message import Envelope, decode_body

logger = logging.getLogger(__name__)

#: Dead letters read per round trip when filtering by queue.
PAGE = 500


class UnknownDeadLetter(TaskqError, LookupError):
    """No dead letter has this id (it may have been requeued or purged meanwhile)."""

    def __init__(self, letter_ids: Sequence[str]) -> None:
        self.letter_ids = list(letter_ids)
        super().__init__(f"unknown dead letter id(s): {', '.join(self.letter_ids)}")


@dataclass(frozen=True, slots=True)
class Body:
    """A dead letter's body for people: arguments when it is a JSON protocol v2 body."""

    args: Any = None
    kwargs: Any = None
    embed: Any = None
    json: Any = None  # JSON that is not [args, kwargs, embed]
    raw: str | None = None  # anything else, shown as a bytes literal
    #: (argsrepr, kwargsrepr) shown instead of a body whose arguments are hidden (sensitive.py)
    hidden: tuple[str, str] | None = None

    @property
    def decoded(self) -> bool:
        """Whether the body is [args, kwargs, embed]."""
        return self.raw is None and self.json is None and self.hidden is None


def broker_or_default(broker: Broker | None) -> DeadLetterStore:
    """The dead letters of ``broker``, or of the configured one (BROKER_URL).

    Raises:
        BrokerError: that broker keeps no dead letters that can be listed.
    """
    return dead_letter_store(broker if broker is not None else get_broker())


def list_letters(broker: Broker | None = None, *, limit: int = 100, offset: int = 0,
                 queue: str | None = None) -> list[DeadLetter]:
    """The oldest ``limit`` dead letters after ``offset``, only those of ``queue`` if given."""
    store = broker_or_default(broker)
    if queue is None:
        return store.dead_letter_list(limit, offset)
    found: list[DeadLetter] = []
    start = 0
    while True:
        batch = store.dead_letter_list(PAGE, start)
        found.extend(letter for letter in batch if letter.envelope.queue == queue)
        if len(batch) < PAGE or len(found) >= offset + limit:
            return found[offset:offset + limit]
        start += PAGE


def count(broker: Broker | None = None) -> int:
    """How many dead letters there are."""
    return broker_or_default(broker).dead_letter_count()


def get_letter(letter_id: str, broker: Broker | None = None) -> DeadLetter:
    """The dead letter named ``letter_id``.

    Raises:
        UnknownDeadLetter: there is none.
    """
    letter = broker_or_default(broker).dead_letter_get(letter_id)
    if letter is None:
        raise UnknownDeadLetter([letter_id])
    return letter


def check_known(letter_ids: Sequence[str], broker: Broker | None = None) -> None:
    """Make sure every id names a dead letter.

    Raises:
        UnknownDeadLetter: naming every id that does not.
    """
    store = broker_or_default(broker)
    missing = [i for i in dict.fromkeys(letter_ids) if store.dead_letter_get(i) is None]
    if missing:
        raise UnknownDeadLetter(missing)


def requeue(letter_ids: Sequence[str] | None, broker: Broker | None = None) -> int:
    """Send dead letters (None: all) back to their queues as fresh messages; how many went.

    A letter refused for its signature never goes back (that would launder a forged, changed
    or replayed message), nor, with SIGNING_KEYS set, one whose signature does not check out
    with a current key (its age aside), nor one still over MESSAGE_MAX_BYTES: named ones raise
    RequeueRefused before anything is sent; with None they stay where they are (logged). With
    SIGNING_KEYS set the others are signed again, with a fresh time, and sent; then their
    letters are dropped (on the database broker in one transaction; elsewhere a crash in
    between leaves a duplicate, never a loss).

    Raises:
        RequeueRefused: one of ``letter_ids`` may not go back.
    """
    if letter_ids is not None and not letter_ids:
        return 0
    unique = None if letter_ids is None else list(dict.fromkeys(letter_ids))
    chosen = broker if broker is not None else get_broker()
    store = broker_or_default(chosen)
    settings = get_settings()
    keys = settings.SIGNING_KEYS
    letters = _letters(store, unique)
    refused = {letter.id: why for letter in letters
               if (why := _refusal(letter, keys, settings.MESSAGE_MAX_BYTES))}
    if refused and unique is not None:
        raise RequeueRefused(refused)
    if refused:
        logger.warning("requeue: %d dead letter(s) that may not go back stay: %s",
                       len(refused), ", ".join(refused))
    # A letter that names no queue cannot go back (the brokers' own requeue skips it too).
    going = [letter for letter in letters if letter.id not in refused and letter.envelope.queue]
    if not going:
        return 0
    if not keys:
        return store.dead_letter_requeue([letter.id for letter in going])
    fresh = producer.seal_all([_as_sent(letter.envelope) for letter in going])
    with chosen.atomic():
        chosen.enqueue_many(fresh)
        store.dead_letter_purge([letter.id for letter in going])
    return len(fresh)


class RequeueRefused(TaskqError):
    """Dead letters that must not go back to their queues (see ``requeue``)."""

    def __init__(self, refused: dict[str, str]) -> None:
        self.refused = refused
        listed = "; ".join(f"{letter_id}: {why}" for letter_id, why in refused.items())
        super().__init__(f"nothing requeued; these dead letters may not go back: {listed}. "
                         "Purge them (a message refused for its signature must never run); if "
                         "the task should run, send it again from your code.")


def _letters(store: DeadLetterStore, letter_ids: list[str] | None) -> list[DeadLetter]:
    if letter_ids is not None:
        found = (store.dead_letter_get(letter_id) for letter_id in letter_ids)
        return [letter for letter in found if letter is not None]
    letters: list[DeadLetter] = []
    while True:
        batch = store.dead_letter_list(PAGE, len(letters))
        letters.extend(batch)
        if len(batch) < PAGE:
            return letters


def _refusal(letter: DeadLetter, keys: tuple[bytes, ...], limit: int) -> str:
    """Why ``letter`` may not go back ("" when it may)."""
    if signing.is_refusal(letter.reason):
        return letter.reason
    if keys:
        try:
            signing.verify(letter.envelope, keys, None, clock_now().timestamp())
        except SignatureError as exc:
            return f"{signing.REFUSED}: {exc}"
    if len(letter.envelope.body) > limit:  # it would only come back (or, signed, not go)
        return (f"message too large: {len(letter.envelope.body)} bytes, over MESSAGE_MAX_BYTES "
                f"({limit} bytes); raise the setting to requeue it")
    return ""


#: Header prefixes a broker added on the way (bookkeeping, RabbitMQ's dead-lettering): a
#: requeued message starts without them, as it was first sent.
_BROKER_PREFIXES = ("x-taskq-", "x-death", "x-first-death-", "x-last-death-", "x-delivery-count")


def _as_sent(envelope: Envelope) -> Envelope:
    headers = {key: value for key, value in envelope.headers.items()
               if not key.startswith(_BROKER_PREFIXES)}
    return envelope.replace(headers=headers, eta=None)


def purge(letter_ids: Sequence[str] | None, broker: Broker | None = None) -> int:
    """Delete dead letters (None: all); how many went."""
    if letter_ids is not None and not letter_ids:
        return 0
    unique = None if letter_ids is None else list(dict.fromkeys(letter_ids))
    return broker_or_default(broker).dead_letter_purge(unique)


def body_of(letter: DeadLetter) -> Body:
    """The body decoded for display. Only JSON is decoded: nothing else is ever deserialized
    here (a pickle body stays bytes); a body whose arguments are hidden is not shown."""
    envelope = letter.envelope
    if sensitive.hidden(envelope.task_name, envelope.headers):
        return Body(hidden=sensitive.reprs(envelope.task_name, envelope.headers, (), {}))
    if envelope.content_type == "application/json":
        try:  # decompressed (bounded), decoded with the depth limit
            data = decode_body(envelope, ("json",))
        except TaskqError:
            pass
        else:
            if isinstance(data, list) and len(data) == 3 and isinstance(data[0], list) \
                    and isinstance(data[1], dict):
                return Body(args=data[0], kwargs=data[1], embed=sensitive.scrub(data[2]))
            return Body(json=sensitive.scrub(data))
    return Body(raw=repr(envelope.body[:4000]) + (" …" if len(envelope.body) > 4000 else ""))


def one_line(text: str, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[:width - 1] + "…"


def to_json(value: Any) -> str:
    """Pretty JSON for display (values JSON cannot hold are shown as text)."""
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)
