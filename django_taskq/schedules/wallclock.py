"""Local wall-clock times to UTC ticks, across daylight-saving changes.

A crontab names wall-clock times ("02:00 in Berlin"); beat needs UTC instants. Mapping one to the
other is not one-to-one:

- a wall time in a gap (spring forward: 02:30 in Berlin on the last Sunday of March does not
  exist) maps as zoneinfo does with ``fold=0``: with the offset before the change, so it lands
  as far after the gap as it was into it (02:30 -> 03:30 CEST, 01:30 UTC);
- a wall time that happens twice (fall back) maps to its first occurrence, or to both when the
  caller asks (a crontab that runs every hour runs in both repeated hours).

The map is not monotonic near a gap (02:30 maps after 03:00 does), so ticks are buffered in a
heap and released only once no later wall time can map before them: the search starts a margin
before the moment's wall time and looks a margin past each tick. The margin is an hour plus the
largest change of UTC offset within a day either side, which covers every DST rule and the odd
whole-day jump (Samoa, 2011).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django_taskq.schedules.base import UTC

_NEARBY = (timedelta(hours=-26), timedelta(0), timedelta(hours=26))
_PAD = timedelta(hours=1)


def wall_time(moment: datetime, zone: ZoneInfo) -> datetime:
    """The naive wall-clock time in ``zone`` at the aware ``moment``."""
    return moment.astimezone(zone).replace(tzinfo=None)


def margin(moment: datetime, zone: ZoneInfo) -> timedelta:
    """How far the wall-time-to-UTC map can run backwards near ``moment`` (aware), padded."""
    offsets = [(moment + shift).astimezone(zone).utcoffset() or timedelta(0) for shift in _NEARBY]
    return _PAD + max(offsets) - min(offsets)


def search_start(moment: datetime, zone: ZoneInfo) -> datetime:
    """The naive wall time from which to look for the ticks after ``moment``."""
    return wall_time(moment, zone) - margin(moment, zone)


def to_utc(wall: datetime, zone: ZoneInfo, both_folds: bool) -> list[datetime]:
    """The UTC instants of the naive ``wall`` time in ``zone`` (first occurrence; both if asked)."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if not both_folds:
        return [first]
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    # fold=1 of a gap time maps before fold=0; only a repeated wall time has a later second.
    if second > first and wall_time(second, zone) == wall:
        return [first, second]
    return [first]


def utc_ticks(walls: Iterable[datetime], zone: ZoneInfo, after: datetime,
              both_folds: bool) -> Iterator[datetime]:
    """UTC ticks after ``after``, strictly increasing, from increasing naive ``walls`` in ``zone``.

    ``walls`` must start at :func:`search_start` of ``after``.
    """
    pending: list[tuple[datetime, datetime]] = []  # (tick, the wall time past which it is safe)
    last = after
    for wall in walls:
        for tick in to_utc(wall, zone, both_folds):
            if tick > last:
                heapq.heappush(pending, (tick, wall_time(tick, zone) + margin(tick, zone)))
        while pending and wall > pending[0][1]:
            tick = heapq.heappop(pending)[0]
            if tick > last:
                last = tick
                yield tick
    for tick, _safe in sorted(pending):  # the walls ran out: nothing can come before these
        if tick > last:
            last = tick
            yield tick
