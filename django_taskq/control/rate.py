"""Rate limits as Celery writes them (``"100/m"``), read into a :class:`Rate` value."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..exceptions import RateLimitError

#: Seconds per unit of a rate string: ``n/s``, ``n/m``, ``n/h`` (Celery's units).
UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
ACCEPTED = ('a number of tasks per second (e.g. 10 or 0.5), or "<number>/s", "<number>/m" or '
            '"<number>/h" (e.g. "100/m"); None, "" or 0 mean no limit')


@dataclass(frozen=True, slots=True)
class Rate:
    """``count`` tasks per ``per`` seconds, e.g. ``Rate(100, 60.0)`` for ``"100/m"``."""

    count: int
    per: float

    def __post_init__(self) -> None:
        if isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1:
            raise RateLimitError(f"Rate count must be a whole number of at least 1, not "
                                 f"{self.count!r}.")
        if not math.isfinite(self.per) or self.per <= 0:
            raise RateLimitError(f"Rate period must be a positive number of seconds, not "
                                 f"{self.per!r}.")

    @property
    def interval(self) -> float:
        """Seconds between two tasks at this rate (one token is added every ``interval``)."""
        return self.per / self.count

    def __str__(self) -> str:
        return f"{self.count}/{self.per:g}s"


def _rate(count: float, per: float, text: object) -> Rate | None:
    if not math.isfinite(count) or count < 0:
        raise RateLimitError(f"Bad rate limit {text!r}: the number must be 0 or more. "
                             f"Use {ACCEPTED}.")
    if count == 0:
        return None  # Celery: a zero rate means "no limit"
    if count.is_integer():
        return Rate(int(count), per)
    return Rate(1, per / count)  # "0.5/s" is one task every two seconds


def parse_rate(text: str | int | float | None) -> Rate | None:
    """Read a rate limit in any form Celery accepts.

    Args:
        text: ``"100/s"``, ``"100/m"``, ``"100/h"``, a bare number (tasks per second, also as a
            string), or None / ``""`` / 0 for no limit.

    Returns:
        The rate, or None when there is no limit.

    Raises:
        RateLimitError: ``text`` is not one of the forms above.
    """
    if text is None:
        return None
    if isinstance(text, bool):
        raise RateLimitError(f"Bad rate limit {text!r}: use {ACCEPTED}.")
    if isinstance(text, (int, float)):
        return _rate(float(text), 1.0, text)
    if not isinstance(text, str):
        raise RateLimitError(f"Bad rate limit {text!r}: use {ACCEPTED}.")
    stripped = text.strip()
    if not stripped:
        return None
    number, _, unit = stripped.partition("/")
    per = UNITS.get(unit.strip() or "s")
    try:
        count = float(number.strip())
    except ValueError:
        count = math.nan
    if per is None or math.isnan(count) or (_ and not unit.strip()):
        raise RateLimitError(f"Bad rate limit {text!r}: use {ACCEPTED}.")
    return _rate(count, per, text)
