"""Dead letters on SQS: one dead letter queue (``dead_letter_queue``, default ``taskq-dead``),
listed, requeued and purged for ``manage.py taskq dead`` and the admin.

SQS cannot peek: reading the dead letter queue receives every message in it (hidden for
``SCAN_HIDE`` seconds), and what the operation does not take is made visible again at once.
Two operators reading at the same moment each see only part of the letters. A letter's id is
its SQS message id; the order is the order they died in (``x-taskq-dead-at``).
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any

from .amqp_wire import copy_headers
from .base import DeadLetter, DeadLetterStore
from .sqs_options import SqsOptions, translated
from .sqs_queues import Handle, Outgoing, Queues

#: Seconds a scanned dead letter stays hidden if the scanning process dies before it is done.
SCAN_HIDE = 30
_Letters = list[tuple[DeadLetter, Handle]]


class SqsDeadLetters(DeadLetterStore, abc.ABC):
    """The dead letter queue of an SQS broker (mixed into ``SqsBroker``)."""

    options: SqsOptions
    queues: Queues

    def dead_letter_list(self, limit: int = 100, offset: int = 0) -> list[DeadLetter]:
        if limit <= 0:
            return []
        letters, _ = self._take("dead_letter_list", lambda letter: False)
        return [letter for letter, _ in letters][offset:offset + limit]

    def dead_letter_count(self) -> int:
        with translated("dead_letter_count", self.options.masked):
            located = self.queues.locate("", create=False, dead=True)
            return 0 if located is None else sum(self.queues.counts(*located))

    def dead_letter_get(self, letter_id: str) -> DeadLetter | None:
        letters, _ = self._take("dead_letter_get", lambda letter: False)
        return next((letter for letter, _ in letters if letter.id == letter_id), None)

    def dead_letter_requeue(self, letter_ids: Sequence[str] | None = None) -> int:
        """Send each chosen letter (one that names its queue) back as first sent, then delete
        it from the dead letter queue."""
        chosen = _chooser(letter_ids)
        _, taken = self._take("dead_letter_requeue",
                           lambda letter: chosen(letter) and bool(letter.envelope.queue),
                           self._send_back_letters)
        return len(taken)

    def dead_letter_purge(self, letter_ids: Sequence[str] | None = None) -> int:
        _, taken = self._take("dead_letter_purge", _chooser(letter_ids))
        return len(taken)

    def _send_back_letters(self, letters: _Letters) -> None:
        by_queue: dict[str, _Letters] = {}
        for letter, handle in letters:
            by_queue.setdefault(letter.envelope.queue, []).append((letter, handle))
        # Each queue's letters are deleted once sent: a later failure sends none of them twice.
        for queue, sent in by_queue.items():
            self.queues.send(queue, [Outgoing(letter.envelope, copy_headers(letter.envelope, 0),
                                              copy=True) for letter, _ in sent])
            self.queues.delete([handle for _, handle in sent])

    def _take(self, what: str, pick: Callable[[DeadLetter], bool],
              before: Callable[[_Letters], None] | None = None) -> tuple[_Letters, _Letters]:
        """Read every dead letter; the picked ones go through ``before`` and are deleted, the
        others become visible again. Returns (every letter read, the ones taken)."""
        with translated(what, self.options.masked):
            located = self.queues.locate("", create=False, dead=True)
            if located is None:
                return [], []
            letters = self._scan(*located)
            taken = [(letter, handle) for letter, handle in letters if pick(letter)]
            done = False
            try:
                if taken:  # ``before`` deletes what it settled, as it goes
                    if before is not None:
                        before(taken)
                    else:
                        self.queues.delete([handle for _, handle in taken])
                done = True
            finally:  # on a failure the letters not settled are shown again at once too
                kept = [handle for letter, handle in letters
                        if not pick(letter) or not done]
                self.queues.change_visibility(kept, 0)
            return letters, taken

    def _scan(self, url: str, key: str) -> _Letters:
        """Receive every message of the dead letter queue, oldest death first."""
        from .sqs_wire import to_dead_letter

        seen: dict[str, tuple[DeadLetter, Handle]] = {}
        expected = sum(self.queues.counts(url, key)[:2])
        confirmed = False
        while True:
            messages = self.queues.receive(url, key, 10, SCAN_HIDE, 0)
            if not messages and len(seen) < expected and not confirmed:
                # A short poll may miss some of SQS's servers; a long poll asks them all.
                messages = self.queues.receive(url, key, 10, SCAN_HIDE, 1)
                confirmed = True
            if not messages:
                break
            known = len(seen)
            for message in messages:
                letter = to_dead_letter(message)
                seen[letter.id] = (letter, Handle(url, str(message["ReceiptHandle"]), key))
            if len(seen) == known:  # only letters seen already: their hiding ran out, the
                break  # scan went round (a large queue); what it has is the listing
        return sorted(seen.values(), key=_order)


def _order(item: tuple[DeadLetter, Handle]) -> Any:
    letter = item[0]
    return (letter.dead_at.timestamp() if letter.dead_at else 0.0, letter.id)


def _chooser(letter_ids: Sequence[str] | None) -> Callable[[DeadLetter], bool]:
    if letter_ids is None:
        return lambda letter: True
    wanted = set(letter_ids)
    return lambda letter: letter.id in wanted
