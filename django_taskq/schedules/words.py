"""Schedules in words, for the admin: ``every 15 minutes``, ``At 02:00, Europe/Berlin``."""

from __future__ import annotations

from cron_descriptor import ExpressionDescriptor, Options

_UNITS = (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1))


def interval_words(seconds: int) -> str:
    """``every 90 seconds``, ``every 15 minutes``, ``every day``: the largest unit that divides."""
    for unit, size in _UNITS:
        if seconds % size == 0:
            count = seconds // size
            return f"every {unit}" if count == 1 else f"every {count} {unit}s"
    raise AssertionError("unreachable: every whole number of seconds divides by one second")


def _options() -> Options:
    """English, 24-hour times: cron-descriptor 2 takes them as arguments, 1.x as attributes."""
    try:
        return Options(locale_code="en_US", use_24hour_time_format=True)
    except TypeError:
        options = Options()
        options.locale_code = "en_US"
        options.use_24hour_time_format = True
        return options


def cron_words(expression: str, zone: str) -> str:
    """``At 02:00, Monday through Friday, Europe/Berlin`` for ``0 2 * * mon-fri`` in that zone.

    English with 24-hour times whatever the machine's locale, so every process and the admin
    say the same; an expression cron-descriptor cannot put in words is shown as it is.
    """
    try:
        text = str(ExpressionDescriptor(expression, _options()).get_description())
    except Exception:  # noqa: BLE001 - a description must never break the admin
        return f"cron '{expression}', {zone}"
    return f"{text}, {zone}"
