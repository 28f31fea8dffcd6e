"""Solar schedules: sunrise, sunset, dawn, dusk or solar noon at a place (Celery's ``solar``)."""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from typing import Any, ClassVar

from astral import Observer
from astral import sun as astral_sun

from django_taskq.schedules.base import BaseSchedule, ScheduleError, whole_utc_second

SOLAR_EVENTS = (
    "dawn_astronomical", "dawn_nautical", "dawn_civil", "sunrise", "solar_noon", "sunset",
    "dusk_civil", "dusk_nautical", "dusk_astronomical",
)
#: How many days in a row without the event (polar day or night) before there are no more ticks.
SEARCH_DAYS = 370
_DEPRESSION = {"astronomical": 18.0, "nautical": 12.0, "civil": 6.0}
_DAY = timedelta(days=1)


def _calculator(event: str) -> Callable[[Observer, date], datetime]:
    """The astral function computing ``event`` on a UTC date (raises ValueError if none)."""
    if event.startswith(("dawn_", "dusk_")):
        kind, depression = event.split("_")
        function = astral_sun.dawn if kind == "dawn" else astral_sun.dusk
        return lambda observer, day: function(observer, day, depression=_DEPRESSION[depression])
    return {"sunrise": astral_sun.sunrise, "sunset": astral_sun.sunset,
            "solar_noon": astral_sun.noon}[event]


def _coordinate(name: str, value: object, bound: int) -> float:
    """``value`` as a float in [-bound, bound], or ScheduleError naming the fix."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
        if math.isfinite(number) and -bound <= number <= bound:
            return number
    raise ScheduleError(f"solar {name}={value!r}: use degrees between -{bound} and {bound}")


class solar(BaseSchedule):  # noqa: N801 - Celery's name
    """Ticks when ``event`` happens at latitude ``lat``, longitude ``lon`` (degrees, north/east +).

    Times come from the ``astral`` library (dawn and dusk at 18, 12 and 6 degrees below the
    horizon), rounded down to the whole second, in UTC. Days on which the event does not happen
    (polar day or night) have no tick; after :data:`SEARCH_DAYS` such days in a row there are no
    more ticks. ``nowfun`` and ``app`` are Celery's and ignored.

    Raises:
        ScheduleError: an unknown event, or a latitude or longitude out of range.
    """

    __slots__ = ("event", "lat", "lon")
    kind: ClassVar[str] = "solar"
    event: str
    lat: float
    lon: float

    def __init__(self, event: str, lat: float, lon: float, nowfun: Any = None, app: Any = None) -> None:
        if event not in SOLAR_EVENTS:
            raise ScheduleError(f"unknown solar event {event!r}: use one of {', '.join(SOLAR_EVENTS)}")
        self._set(event=event, lat=_coordinate("lat", lat, 90), lon=_coordinate("lon", lon, 180))

    def describe(self) -> str:
        return f"{self.event} at {self.lat:.4f}, {self.lon:.4f}"

    def event_on(self, day: date) -> datetime | None:
        """The event's tick on the UTC date ``day`` (whole seconds, UTC), None if it has none."""
        try:
            when = _calculator(self.event)(Observer(self.lat, self.lon), day)
        except ValueError:  # astral: the sun never reaches that depression on that day
            return None
        return whole_utc_second(when)

    def _ticks_after(self, moment: datetime, anchor: datetime | None) -> Iterator[datetime]:
        # astral fits each event to the asked UTC date, so ticks come out in date order give or
        # take a day: hold each until two days past its date before releasing it.
        pending: list[datetime] = []
        last, day, empty_days = moment, moment.date() - _DAY, 0
        while empty_days <= SEARCH_DAYS:
            tick = self.event_on(day)
            if tick is not None and tick > last:
                heapq.heappush(pending, tick)
                empty_days = 0
            else:
                empty_days += 1
            while pending and pending[0].date() + 2 * _DAY <= day:
                released = heapq.heappop(pending)
                if released > last:
                    last = released
                    yield released
            day += _DAY
        yield from (tick for tick in sorted(set(pending)) if tick > last)

    def _arguments(self) -> dict[str, Any]:
        return {"event": self.event, "lat": self.lat, "lon": self.lon}
