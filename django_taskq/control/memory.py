"""The in-process control store: for the memory:// broker and for tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from .base import ControlStore, check_burst, gcra
from .mailboxes import MemoryMailbox
from .rate import Rate


class MemoryControlStore(MemoryMailbox, ControlStore):
    """Buckets and revocations in dicts behind a lock; ``now`` returns Unix seconds."""

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self.now = now
        self._lock = threading.Lock()
        self._buckets: dict[str, float] = {}
        self._revoked: dict[str, tuple[float, bool]] = {}  # id -> (expires at, terminate)

    def take(self, bucket: str, rate: Rate, burst: int = 1) -> float:
        check_burst(burst)
        with self._lock:
            wait, self._buckets[bucket] = gcra(self._buckets.get(bucket), self.now(), rate, burst)
        return wait

    def revoke(self, task_ids: Sequence[str], *, terminate: bool = False,
               expires: float) -> None:
        with self._lock:
            now = self.now()
            until = now + expires
            for task_id in task_ids:
                old_until, old_terminate = self._revoked.get(task_id, (now, False))
                if old_until <= now:  # an expired entry not yet pruned counts for nothing
                    old_until, old_terminate = now, False
                self._revoked[task_id] = (max(until, old_until), terminate or old_terminate)

    def revocations(self) -> dict[str, bool]:
        with self._lock:
            now = self.now()
            return {k: terminate for k, (until, terminate) in self._revoked.items() if until > now}

    def is_revoked(self, task_id: str) -> bool:
        with self._lock:
            entry = self._revoked.get(task_id)
            return entry is not None and entry[0] > self.now()

    def prune(self) -> int:
        with self._lock:
            now = self.now()
            full = [k for k, full_at in self._buckets.items() if full_at <= now]
            expired = [k for k, (until, _) in self._revoked.items() if until <= now]
            for k in full:
                del self._buckets[k]
            for k in expired:
                del self._revoked[k]
        return len(full) + len(expired)
