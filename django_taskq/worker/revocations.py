"""The worker's view of revoked task ids: the control store's set, re-read every poll interval.

Revocations are durable in the control store, so a worker that starts later (or restarts) still
skips a task revoked while no worker was running. Between two reads a revocation is not yet
seen; the worker checks each message twice (when it arrives and just before it runs), so only a
task revoked within one interval of starting can still run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)


class RevocationCache:
    """Revoked ids (→ whether to terminate a running execution), refreshed when due."""

    def __init__(self, store: Callable[[], Any], interval: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self.interval = interval
        self._clock = clock
        self._revoked: dict[str, bool] = {}
        self._next = 0.0

    def refresh(self, force: bool = False) -> bool:
        """Re-read the store when due (or ``force``); True when it was read."""
        now = self._clock()
        if not force and now < self._next:
            return False
        self._next = now + self.interval
        try:
            self._revoked = dict(self._store().revocations())
        except Exception as exc:  # noqa: BLE001 - keep running on the last known set
            logger.warning("cannot read revocations (%s); using the last known %d and "
                           "retrying in %.1fs", exc, len(self._revoked), self.interval)
            return False
        return True

    def time_left(self) -> float:
        """Seconds until the next read is due."""
        return max(0.0, self._next - self._clock())

    def is_revoked(self, task_id: str | None) -> bool:
        return bool(task_id) and task_id in self._revoked

    def to_terminate(self, task_ids: list[str]) -> list[str]:
        """Those of ``task_ids`` revoked with ``terminate=True``."""
        return [task_id for task_id in task_ids if self._revoked.get(task_id)]
