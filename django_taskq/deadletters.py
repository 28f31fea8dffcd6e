"""Dead letters, whatever the broker: list, inspect, requeue and purge them.

The one place ``manage.py taskq dead …`` and the admin go through, so both behave the same on
every broker. A dead letter is named by its ``DeadLetter.id`` (a row id on the database broker,
a hash of the stored message on Redis and RabbitMQ); see docs/dead-letters.md.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .brokers import get_broker
from .brokers.base import Broker, DeadLetter, DeadLetterStore, dead_letter_store
from .exceptions import TaskqError

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

    @property
    def decoded(self) -> bool:
        """Whether the body is [args, kwargs, embed]."""
        return self.raw is None and self.json is None


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
    """Send dead letters (None: all) back to their queues as fresh messages; how many went."""
    if letter_ids is not None and not letter_ids:
        return 0
    unique = None if letter_ids is None else list(dict.fromkeys(letter_ids))
    return broker_or_default(broker).dead_letter_requeue(unique)


def purge(letter_ids: Sequence[str] | None, broker: Broker | None = None) -> int:
    """Delete dead letters (None: all); how many went."""
    if letter_ids is not None and not letter_ids:
        return 0
    unique = None if letter_ids is None else list(dict.fromkeys(letter_ids))
    return broker_or_default(broker).dead_letter_purge(unique)


def body_of(letter: DeadLetter) -> Body:
    """The body decoded for display. Only JSON is decoded: nothing else is ever deserialized
    here (a pickle body stays bytes)."""
    envelope = letter.envelope
    if envelope.content_type == "application/json":
        try:
            data = json.loads(envelope.body.decode(envelope.content_encoding or "utf-8"))
        except (ValueError, LookupError):
            pass
        else:
            if isinstance(data, list) and len(data) == 3 and isinstance(data[0], list) \
                    and isinstance(data[1], dict):
                return Body(args=data[0], kwargs=data[1], embed=data[2])
            return Body(json=data)
    return Body(raw=repr(envelope.body[:4000]) + (" …" if len(envelope.body) > 4000 else ""))


def one_line(text: str, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[:width - 1] + "…"


def to_json(value: Any) -> str:
    """Pretty JSON for display (values JSON cannot hold are shown as text)."""
    return json.dumps(value, indent=2, sort_keys=True, default=str, ensure_ascii=False)
