"""The control store interface: global rate limit buckets and durable revocations.

Every worker of a deployment shares one control store, so a rate limit holds across all of
them (Celery's ``rate_limit`` is per worker) and a revocation survives worker restarts.

Buckets follow the generic cell rate algorithm (GCRA), an exact token bucket kept as a single
number per bucket: the time ``full_at`` at which the bucket is full again. A bucket of ``burst``
tokens refilled at ``rate`` grants a token at ``now`` when ``full_at - now <= (burst - 1) *
interval``, and then moves ``full_at`` on by one ``interval``. A bucket whose ``full_at`` has
passed is simply full, so idle buckets can be forgotten (TTL, ``prune()``) without any effect.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

from .mailbox import Mailbox
from .rate import Rate

#: Seconds of float rounding forgiven: a caller that sleeps exactly the wait it was told then
#: finds its token, even when ``full_at - tolerance - now`` comes out as 1e-16.
EPSILON = 1e-6


def check_burst(burst: int) -> None:
    """Refuse a burst that is not a whole number of at least 1."""
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        raise ValueError(f"burst must be a whole number of at least 1, not {burst!r}")


def gcra(full_at: float | None, now: float, rate: Rate, burst: int) -> tuple[float, float]:
    """One take on a bucket: ``(wait, new_full_at)``; ``wait`` is 0.0 when a token was taken.

    ``full_at`` None (an unknown bucket) is a full bucket. When nothing is taken the returned
    ``full_at`` is the one given.
    """
    start = now if full_at is None or full_at < now else full_at
    wait = start - (burst - 1) * rate.interval - now
    if wait > EPSILON:
        return wait, start if full_at is None else full_at
    return 0.0, start + rate.interval


class ControlStore(Mailbox, abc.ABC):
    """Shared state every worker reads: rate limit buckets, revoked task ids, and the remote
    control mailbox (control/mailbox.py)."""

    @abc.abstractmethod
    def take(self, bucket: str, rate: Rate, burst: int = 1) -> float:
        """Take one token from ``bucket``, atomically across every process using the store.

        Args:
            bucket: the bucket's name (e.g. the task name); buckets are independent.
            rate: how fast tokens come back.
            burst: how many tokens a full bucket holds (tasks that may start at once).

        Returns:
            0.0 when a token was taken; otherwise the seconds until one is available (> 0),
            and nothing was taken.
        """

    @abc.abstractmethod
    def revoke(self, task_ids: Sequence[str], *, terminate: bool = False,
               expires: float) -> None:
        """Record ``task_ids`` as revoked for ``expires`` seconds from now (durably).

        Revoking an id again keeps the later of the two expiry times, and keeps ``terminate``
        once it was asked for (a plain revoke does not cancel a terminate).
        """

    @abc.abstractmethod
    def revocations(self) -> dict[str, bool]:
        """Every unexpired revoked id, mapped to its terminate flag, in one round trip."""

    @abc.abstractmethod
    def is_revoked(self, task_id: str) -> bool:
        """Whether ``task_id`` is revoked and the revocation has not expired."""

    def prune(self) -> int:
        """Delete full buckets and expired revocations; the number of entries removed.

        Stores whose entries expire by themselves (Redis TTLs) return 0.
        """
        return 0

    def close(self) -> None:
        """Release connections; the store is not used afterwards."""
