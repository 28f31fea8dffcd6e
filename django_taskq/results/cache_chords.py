"""Chord counting in a Django cache, with ``add`` (set if absent) and ``incr`` only.

For chord ``<gid>``, under ``celery-taskset-meta-<gid>``: ``.s`` the header's size, ``.j.<i>``
the result of header task ``i`` (written with ``add``: the first write wins, so a redelivered
task is recorded once), ``.c`` a counter bumped after each write, ``.claim`` the task id that
completed the chord (``done`` once the body is sent).

The counter is only a hint of when to look: a part whose bump reaches the size reads every
``.j.<i>`` and completes the chord when all are there. Counting too high (a redelivered task
bumps again) only makes a part look once more; a bump lost with a dying worker is made by its
redelivery; a counter gone (evicted) makes every later part look. A size gone before the body
was sent is logged as an error: the chord cannot complete. Of the parts that find the header
complete, the one whose ``add`` of ``.claim`` succeeds completes the chord; a call for that
same task again (its worker died before sending the body) completes it again, until
``chord_sent`` or CLAIM_TTL. Header tasks without an index (an old Celery client), or with one
outside the header, take the next free place from ``.n``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from ..outcome import Outcome
from .keyvalue import GROUP_KEY_PREFIX, decode_part, encode_part
from .meta import PartResult

logger = logging.getLogger(__name__)

DONE = "done"
#: Seconds a completion claim holds when its body is not sent (as the Redis store's).
CLAIM_TTL = 300


class CacheChords:
    """The chord methods of the cache result backend (mixed into it)."""

    alias: str
    cache: Any
    errors: Callable[[str], contextlib.AbstractContextManager[None]]
    ttl: Callable[[], int]
    stored: Callable[[str, Any], bytes | None]

    @staticmethod
    def chord_key(group_id: str, suffix: str) -> str:
        """The cache key of one of chord ``group_id``'s values."""
        from .cache import _safe

        return f"{GROUP_KEY_PREFIX}{_safe(group_id)}{suffix}"

    def set_chord_size(self, group_id: str, size: int) -> None:
        key = self.chord_key
        with self.errors("set a chord's size"):
            if self.cache.get(key(group_id, ".claim")) == DONE:  # sent again: a new run
                self.cache.delete(key(group_id, ".claim"))
            self.cache.set_many({key(group_id, ".s"): size, key(group_id, ".c"): 0,
                                 key(group_id, ".n"): 0}, self.ttl())

    def add_chord_part(self, group_id: str, index: int | None,
                       outcome: Outcome) -> list[PartResult] | None:
        part = encode_part(self, outcome)  # type: ignore[arg-type]  # a ResultBackend
        with self.errors("count a chord part"):
            size = self.cache.get(self.chord_key(group_id, ".s"))
            if not isinstance(size, int):
                self._lost(group_id)
                return None  # expired, evicted, or its body was sent
            place = index if index is not None and 0 <= index < size \
                else self._place(group_id, f"{outcome.task_id}:{index}")
            if place is None:
                return None
            self.cache.add(self.chord_key(group_id, f".j.{place}"), part, self.ttl())
            count = self._bump(group_id)
            if count is not None and count < size:
                return None
            return self._complete(group_id, size, outcome.task_id)

    def _lost(self, group_id: str) -> None:
        """Log a chord whose size is gone while its body was never sent: it cannot complete."""
        if self.cache.get(self.chord_key(group_id, ".claim")) is None:
            logger.error(
                "chord %s cannot complete: its size is gone from cache %r (expired after "
                "RESULT_EXPIRES, or evicted by a full cache); its body will not run. Give the "
                "cache more memory, or store results in redis:// or db://.", group_id,
                self.alias)

    def _bump(self, group_id: str) -> int | None:
        """The counter after this part's bump; None when it is gone (expired, evicted: then
        every part looks whether the header is complete)."""
        try:
            return int(self.cache.incr(self.chord_key(group_id, ".c")))
        except ValueError:  # Django's incr of a missing key
            return None

    def _place(self, group_id: str, part: str) -> int | None:
        """The place of a header task sent without an index (or with one outside the header):
        the next free one, kept per ``task_id:index`` (None when its first attempt died
        before taking one)."""
        from .cache import _safe

        mine = self.chord_key(group_id, f".u.{_safe(part)}")
        if not self.cache.add(mine, -1, self.ttl()):
            place = self.cache.get(mine)
            return place if isinstance(place, int) and place >= 0 else None
        place = int(self.cache.incr(self.chord_key(group_id, ".n"))) - 1
        self.cache.set(mine, place, self.ttl())
        return place

    def _complete(self, group_id: str, size: int, task_id: str) -> list[PartResult] | None:
        keys = [self.chord_key(group_id, f".j.{place}") for place in range(size)]
        found = self.cache.get_many(keys)
        if len(found) < size:
            return None
        claim = self.chord_key(group_id, ".claim")
        if not self.cache.add(claim, task_id, CLAIM_TTL) and self.cache.get(claim) != task_id:
            return None
        return [decode_part(self, self.stored(key, found[key]) or b"")  # type: ignore[arg-type]
                for key in keys]

    def chord_sent(self, group_id: str) -> None:
        key = self.chord_key
        with self.errors("end a chord"):
            size = self.cache.get(key(group_id, ".s"))
            places = range(size) if isinstance(size, int) else range(0)
            self.cache.delete_many([key(group_id, ".s"), key(group_id, ".c"), key(group_id, ".n"),
                                    *(key(group_id, f".j.{place}") for place in places)])
            self.cache.set(key(group_id, ".claim"), DONE, self.ttl())
