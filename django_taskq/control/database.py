"""The database control store: tables ``taskq_ratebucket`` and ``taskq_revocation``.

A take is one conditional UPDATE (``full_at = GREATEST(full_at, now) + interval WHERE full_at
<= now + tolerance``): PostgreSQL re-checks the condition on the newest row version after a
lock wait and InnoDB updates the newest committed version, so concurrent takes from any number
of processes never grant more than the bucket holds. Time is the caller's clock (Unix seconds),
so the machines of a deployment need synchronised clocks (NTP), as leases already do.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from django.db import IntegrityError, transaction
from django.db.models import Case, F, FloatField, Value, When
from django.db.models.functions import Greatest

from ..engines import translating
from ..exceptions import ControlStoreError
from .base import EPSILON, ControlStore, check_burst
from .mailboxes import DatabaseMailbox
from .rate import Rate

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from ..models import RateBucket, Revocation

#: Ids per statement when revoking many (SQLite allows 999 parameters in old versions).
CHUNK = 500
#: Attempts of a take that races with a concurrent insert or refill.
ATTEMPTS = 5

_translated = translating(ControlStoreError)  # Django's database errors become ours here


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), CHUNK):
        yield items[start:start + CHUNK]


class DatabaseControlStore(DatabaseMailbox, ControlStore):
    """Buckets and revocations as rows of the database ``alias``."""

    def __init__(self, alias: str = "default", now: Callable[[], float] = time.time) -> None:
        self.alias = alias
        self.now = now

    def _when(self, seconds: float) -> datetime:
        return datetime.fromtimestamp(seconds, tz=timezone.utc)

    def _buckets(self) -> QuerySet[RateBucket]:
        from ..models import RateBucket

        return RateBucket.objects.using(self.alias)

    def _revocations(self) -> QuerySet[Revocation]:
        from ..models import Revocation

        return Revocation.objects.using(self.alias)

    @_translated
    def take(self, bucket: str, rate: Rate, burst: int = 1) -> float:
        check_burst(burst)
        tolerance = (burst - 1) * rate.interval
        for _ in range(ATTEMPTS):
            now = self.now()
            taken = self._buckets().filter(name=bucket, full_at__lte=now + tolerance + EPSILON).update(
                full_at=Greatest(F("full_at"), Value(now, output_field=FloatField()))
                + Value(rate.interval, output_field=FloatField()))
            if taken:
                return 0.0
            full_at = self._buckets().filter(name=bucket).values_list("full_at", flat=True).first()
            if full_at is None:
                if self._create(bucket, now + rate.interval):
                    return 0.0
                continue  # another process created it first: take from that row
            wait = full_at - tolerance - now
            if wait > EPSILON:
                return wait
        return rate.interval  # lost every race: surely no token now; try again a bit later

    def _create(self, bucket: str, full_at: float) -> bool:
        """Insert the bucket with its first token taken; False when it already exists."""
        try:
            with transaction.atomic(using=self.alias):
                self._buckets().create(name=bucket, full_at=full_at)
        except IntegrityError:
            return False
        return True

    @_translated
    def revoke(self, task_ids: Sequence[str], *, terminate: bool = False,
               expires: float) -> None:
        from ..models import Revocation

        ids = list(dict.fromkeys(task_ids))
        now = self.now()
        current, until = self._when(now), self._when(now + expires)
        for chunk in _chunks(ids):
            self._revocations().bulk_create(
                [Revocation(task_id=i, terminate=terminate, expires_at=until) for i in chunk],
                ignore_conflicts=True)
            # Existing rows: keep the later expiry and a terminate asked for before, unless the
            # old revocation has expired. terminate is assigned first: MySQL evaluates SET
            # assignments left to right, so it must see the old expires_at.
            kept = Case(When(expires_at__gt=current, then=F("terminate")), default=Value(False))
            self._revocations().filter(task_id__in=chunk).update(
                terminate=Value(True) if terminate else kept,
                expires_at=Case(When(expires_at__gt=until, then=F("expires_at")),
                                default=Value(until)))

    @_translated
    def revocations(self) -> dict[str, bool]:
        rows = self._revocations().filter(expires_at__gt=self._when(self.now()))
        return dict(rows.values_list("task_id", "terminate"))

    @_translated
    def is_revoked(self, task_id: str) -> bool:
        return self._revocations().filter(
            task_id=task_id, expires_at__gt=self._when(self.now())).exists()

    @_translated
    def prune(self) -> int:
        now = self.now()
        buckets, _ = self._buckets().filter(full_at__lte=now).delete()
        revoked, _ = self._revocations().filter(expires_at__lte=self._when(now)).delete()
        return buckets + revoked + self.prune_mailbox()
