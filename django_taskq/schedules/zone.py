"""Time zones for crontab schedules: an explicit IANA name, or Django's TIME_ZONE read when used."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from django_taskq.schedules.base import ScheduleError


def zone_named(name: str) -> ZoneInfo:
    """The zone called ``name`` (``Europe/Berlin``).

    Raises:
        ScheduleError: no such zone.
    """
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ScheduleError(
            f"unknown time zone {name!r}: use an IANA name such as 'Europe/Berlin' or 'UTC'"
        ) from None


def explicit_zone_name(tz: object) -> str | None:
    """The name a crontab keeps for its ``tz`` argument: None, or a checked IANA name.

    Raises:
        ScheduleError: ``tz`` is not a known IANA name or a ZoneInfo built from one.
    """
    if tz is None:
        return None
    if isinstance(tz, ZoneInfo):
        if tz.key is None:
            raise ScheduleError("crontab tz: a ZoneInfo read from a file has no name; use an IANA name")
        return zone_named(tz.key).key
    if isinstance(tz, str):
        return zone_named(tz).key
    raise ScheduleError(f"crontab tz={tz!r}: use an IANA name such as 'Europe/Berlin' or a ZoneInfo")


def default_zone() -> ZoneInfo:
    """Django's ``settings.TIME_ZONE`` now (UTC when it is None or settings are not configured).

    Raises:
        ScheduleError: TIME_ZONE names no known zone.
    """
    try:
        name = settings.TIME_ZONE
    except ImproperlyConfigured:
        return ZoneInfo("UTC")
    return zone_named(name or "UTC")
