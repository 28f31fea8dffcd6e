"""Schedule math: intervals, crontabs across DST changes, solar events, clocked; no sleeping."""

from __future__ import annotations

import datetime as dt
import pickle
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from astral import Observer
from astral import sun as astral_sun
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from django_taskq.exceptions import ConfigurationError
from django_taskq.schedules import (
    SOLAR_EVENTS,
    BaseSchedule,
    ScheduleError,
    as_schedule,
    clocked,
    crontab,
    schedule,
    solar,
)
from django_taskq.schedules import words as words_module
from django_taskq.schedules import zone as zone_module

UTC = timezone.utc
BERLIN = ZoneInfo("Europe/Berlin")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def local_day(day: dt.date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """(start, end) of a local calendar day as aware datetimes, for start < t <= end queries."""
    start = datetime(day.year, day.month, day.day, tzinfo=zone)
    after = day + timedelta(days=1)
    end = datetime(after.year, after.month, after.day, tzinfo=zone)
    # ticks_between is (start, end]: shift by a second so midnight belongs to its own day.
    return start - timedelta(seconds=1), end - timedelta(seconds=1)


def assert_whole_utc(ticks: list[datetime]) -> None:
    for tick in ticks:
        assert tick.tzinfo is UTC
        assert tick.microsecond == 0
    assert all(a < b for a, b in zip(ticks, ticks[1:], strict=False)), ticks


# --- the base ------------------------------------------------------------------------------------


def test_schedule_error_is_a_configuration_error():
    assert issubclass(ScheduleError, ConfigurationError)
    assert issubclass(ScheduleError, ImproperlyConfigured)


def test_base_schedule_is_abstract():
    with pytest.raises(TypeError):
        BaseSchedule()  # type: ignore[abstract]


@pytest.mark.parametrize("value, kind", [
    (schedule(60), "interval"), (crontab(), "crontab"), (solar("sunrise", 0, 0), "solar"),
    (clocked(utc(2026, 1, 1)), "clocked"),
])
def test_kinds(value, kind):
    assert value.kind == kind
    assert isinstance(value, BaseSchedule)


@pytest.mark.parametrize("value", [
    schedule(60), crontab(minute=0, hour=2, tz="Europe/Berlin"), solar("sunrise", 52.52, 13.405),
    clocked(utc(2026, 1, 1)),
])
def test_naive_moments_are_refused(value):
    with pytest.raises(ScheduleError, match="naive"):
        value.next_after(datetime(2026, 1, 1))
    with pytest.raises(ScheduleError, match="naive"):
        value.ticks_between(datetime(2026, 1, 1), utc(2026, 1, 2))
    with pytest.raises(ScheduleError, match="naive"):
        value.ticks_between(utc(2026, 1, 1), datetime(2026, 1, 2))
    with pytest.raises(ScheduleError, match="naive"):
        value.next_after(utc(2026, 1, 1), anchor=datetime(2026, 1, 1))


@pytest.mark.parametrize("value", [
    schedule(90), schedule(timedelta(hours=2)), crontab(minute="*/15", hour="9-17", day_of_week="mon-fri"),
    crontab(minute=0, hour=2, tz="Europe/Berlin"), solar("dusk_civil", -33.8688, 151.2093),
    clocked(utc(2026, 12, 1, 10)),
])
def test_repr_round_trips_and_values_compare(value):
    rebuilt = eval(repr(value), {"schedule": schedule, "crontab": crontab, "solar": solar,  # noqa: S307
                                 "clocked": clocked, "datetime": dt})
    assert rebuilt == value
    assert hash(rebuilt) == hash(value)
    assert pickle.loads(pickle.dumps(value)) == value
    assert len({value, rebuilt}) == 1


def test_schedules_are_read_only():
    value = crontab(minute=0)
    with pytest.raises(AttributeError, match="read-only"):
        value.minute = "5"  # type: ignore[misc]


def test_different_kinds_and_values_are_not_equal():
    assert schedule(60) != schedule(61)
    assert crontab(minute=0) != crontab(minute=0, tz="UTC")
    assert crontab(minute=0) != schedule(60)
    assert solar("sunrise", 1, 2) != solar("sunset", 1, 2)


def test_ticks_between_gives_the_first_limit_ticks():
    every_minute = schedule(60)
    ticks = every_minute.ticks_between(utc(2026, 1, 1), utc(2026, 1, 2), limit=3)
    assert ticks == [utc(2026, 1, 1, 0, 1), utc(2026, 1, 1, 0, 2), utc(2026, 1, 1, 0, 3)]
    assert len(every_minute.ticks_between(utc(2026, 1, 1), utc(2026, 1, 2))) == 1000
    assert every_minute.ticks_between(utc(2026, 1, 1), utc(2026, 1, 2), limit=0) == []
    assert every_minute.ticks_between(utc(2026, 1, 2), utc(2026, 1, 1)) == []
    with pytest.raises(ScheduleError, match="limit"):
        every_minute.ticks_between(utc(2026, 1, 1), utc(2026, 1, 2), limit=-1)


# --- schedule: intervals -------------------------------------------------------------------------


def test_interval_counts_from_the_epoch_by_default():
    quarter = schedule(timedelta(minutes=15))
    assert quarter.next_after(utc(2026, 1, 1, 0, 7, 30, 500000)) == utc(2026, 1, 1, 0, 15)
    assert quarter.next_after(utc(2026, 1, 1, 0, 15)) == utc(2026, 1, 1, 0, 30)  # strictly after
    assert quarter.next_after(utc(2026, 1, 1, 0, 14, 59, 999999)) == utc(2026, 1, 1, 0, 15)


def test_interval_counts_from_the_anchor_in_whole_seconds():
    hourly = schedule(3600)
    anchor = utc(2026, 1, 1, 0, 20, 30, 700000)
    assert hourly.next_after(utc(2026, 1, 1, 5), anchor=anchor) == utc(2026, 1, 1, 5, 20, 30)
    assert hourly.next_after(utc(2025, 12, 31, 22), anchor=anchor) == utc(2025, 12, 31, 22, 20, 30)
    berlin_anchor = datetime(2026, 1, 1, 1, 20, 30, tzinfo=BERLIN)  # the same instant
    assert hourly.next_after(utc(2026, 1, 1, 5), anchor=berlin_anchor) == utc(2026, 1, 1, 5, 20, 30)


def test_interval_ticks_between_and_other_zones():
    ticks = schedule(90).ticks_between(datetime(2026, 1, 1, 1, tzinfo=BERLIN), utc(2026, 1, 1, 0, 6))
    assert ticks == [utc(2026, 1, 1, 0, 1, 30), utc(2026, 1, 1, 0, 3), utc(2026, 1, 1, 0, 4, 30),
                     utc(2026, 1, 1, 0, 6)]
    assert_whole_utc(ticks)


def test_interval_run_every_and_seconds():
    assert schedule(30).run_every == timedelta(seconds=30)
    assert schedule(30.0).seconds == 30.0
    assert schedule(30.0) == schedule(timedelta(seconds=30)) == schedule(30)
    assert schedule(60, relative=True, nowfun=lambda: None, app=object()) == schedule(60)


@pytest.mark.parametrize("bad", [0, -5, 0.5, 1.5, timedelta(milliseconds=1500), timedelta(0),
                                 True, "60", None, float("nan"), float("inf")])
def test_interval_must_be_whole_positive_seconds(bad):
    with pytest.raises(ScheduleError, match="run_every"):
        schedule(bad)


@pytest.mark.parametrize("seconds, text", [
    (1, "every second"), (90, "every 90 seconds"), (60, "every minute"), (900, "every 15 minutes"),
    (3600, "every hour"), (7200, "every 2 hours"), (5400, "every 90 minutes"), (86400, "every day"),
    (3 * 86400, "every 3 days"),
])
def test_interval_describe(seconds, text):
    assert schedule(seconds).describe() == text


# --- crontab: fields -----------------------------------------------------------------------------


def test_crontab_normalises_fields():
    value = crontab(minute=[30, 0, 30], hour=range(9, 12), day_of_week=" Mon-Fri ",
                    day_of_month="1, 15", month_of_year={6, 3})
    assert (value.minute, value.hour, value.day_of_week, value.day_of_month, value.month_of_year) == (
        "0,30", "9,10,11", "mon-fri", "1,15", "3,6")
    assert value.expression == "0,30 9,10,11 1,15 3,6 mon-fri"
    assert crontab(day_of_week="Sunday,saturday").day_of_week == "sun,sat"
    assert crontab().expression == "* * * * *"


@pytest.mark.parametrize("kwargs, field", [
    ({"minute": 61}, "minute='61'"), ({"minute": "*/0"}, "minute"), ({"hour": "25"}, "hour='25'"),
    ({"day_of_week": "funday"}, "day_of_week='funday'"), ({"day_of_week": 8}, "day_of_week"),
    ({"day_of_month": 0}, "day_of_month='0'"), ({"month_of_year": 13}, "month_of_year='13'"),
    ({"minute": True}, "minute"), ({"minute": []}, "minute"), ({"minute": ["a"]}, "minute"),
    ({"hour": None}, "hour"), ({"minute": ""}, "minute"),
])
def test_crontab_refuses_bad_fields_naming_them(kwargs, field):
    with pytest.raises(ScheduleError, match=f"crontab {field}"):
        crontab(**kwargs)


def test_crontab_refuses_unknown_time_zones():
    with pytest.raises(ScheduleError, match="unknown time zone 'Europe/Berln'"):
        crontab(tz="Europe/Berln")
    with pytest.raises(ScheduleError, match="tz"):
        crontab(tz=3)  # type: ignore[arg-type]


def test_crontab_time_zone_attributes():
    assert crontab(tz=BERLIN) == crontab(tz="Europe/Berlin")
    assert crontab(tz=BERLIN).tz_name == "Europe/Berlin"
    assert crontab(tz="Asia/Tokyo").tz == ZoneInfo("Asia/Tokyo")
    with override_settings(TIME_ZONE="America/New_York"):
        assert crontab().tz_name is None
        assert crontab().tz == ZoneInfo("America/New_York")


def test_crontab_every_fifteen_minutes():
    ticks = crontab(minute="*/15", tz="UTC").ticks_between(utc(2026, 1, 1, 0, 10), utc(2026, 1, 1, 1))
    assert ticks == [utc(2026, 1, 1, 0, 15), utc(2026, 1, 1, 0, 30), utc(2026, 1, 1, 0, 45),
                     utc(2026, 1, 1, 1)]


def test_crontab_weekdays_ranges_and_lists():
    value = crontab(minute=[0, 30], hour="9-10", day_of_week="mon-fri", tz="UTC")
    # 2026-03-06 is a Friday: Friday's four ticks, then Monday's.
    ticks = value.ticks_between(utc(2026, 3, 6), utc(2026, 3, 9, 9, 30))
    assert ticks == [utc(2026, 3, 6, 9), utc(2026, 3, 6, 9, 30), utc(2026, 3, 6, 10),
                     utc(2026, 3, 6, 10, 30), utc(2026, 3, 9, 9), utc(2026, 3, 9, 9, 30)]


@pytest.mark.parametrize("sunday", [0, 7, "0", "7", "sun", "Sunday", [0]])
def test_crontab_sunday_is_0_and_7(sunday):
    value = crontab(minute=0, hour=12, day_of_week=sunday, tz="UTC")
    # 2026-03-01, 08 and 15 are Sundays.
    assert value.ticks_between(utc(2026, 3, 1), utc(2026, 3, 15, 12)) == [
        utc(2026, 3, 1, 12), utc(2026, 3, 8, 12), utc(2026, 3, 15, 12)]


def test_crontab_days_of_month_and_months():
    twice_a_month = crontab(minute=0, hour=0, day_of_month="1,15", tz="UTC")
    assert twice_a_month.ticks_between(utc(2026, 1, 1), utc(2026, 3, 1)) == [
        utc(2026, 1, 15), utc(2026, 2, 1), utc(2026, 2, 15), utc(2026, 3, 1)]
    quarterly = crontab(minute=0, hour=0, day_of_month=1, month_of_year="*/3", tz="UTC")
    assert quarterly.ticks_between(utc(2026, 1, 1), utc(2027, 1, 1)) == [
        utc(2026, 4, 1), utc(2026, 7, 1), utc(2026, 10, 1), utc(2027, 1, 1)]


def test_crontab_day_of_month_and_day_of_week_must_both_match_as_in_celery():
    friday_13th = crontab(minute=0, hour=0, day_of_month=13, day_of_week="fri", tz="UTC")
    assert friday_13th.ticks_between(utc(2026, 1, 1), utc(2027, 12, 31)) == [
        utc(2026, 2, 13), utc(2026, 3, 13), utc(2026, 11, 13), utc(2027, 8, 13)]


def test_crontab_that_never_fires_has_no_next_tick():
    assert crontab(minute=0, hour=0, day_of_month=30, month_of_year=2).next_after(utc(2026, 1, 1)) is None


# --- crontab: time zones and DST -----------------------------------------------------------------


def test_crontab_daily_at_two_in_berlin_across_spring_forward():
    at_two = crontab(minute=0, hour=2, tz="Europe/Berlin")
    expected = {
        dt.date(2026, 3, 27): utc(2026, 3, 27, 1),  # 02:00 CET
        dt.date(2026, 3, 28): utc(2026, 3, 28, 1),
        dt.date(2026, 3, 29): utc(2026, 3, 29, 1),  # 02:00 does not exist: 03:00 CEST
        dt.date(2026, 3, 30): utc(2026, 3, 30, 0),  # 02:00 CEST
        dt.date(2026, 3, 31): utc(2026, 3, 31, 0),
    }
    for day, tick in expected.items():
        assert at_two.ticks_between(*local_day(day, BERLIN)) == [tick], day
    ticks = at_two.ticks_between(*local_day(dt.date(2026, 3, 27), BERLIN)[:1],
                                 local_day(dt.date(2026, 3, 31), BERLIN)[1])
    assert ticks == list(expected.values())
    assert at_two.next_after(utc(2026, 3, 28, 1)) == utc(2026, 3, 29, 1)


def test_crontab_daily_at_two_in_berlin_across_fall_back():
    at_two = crontab(minute=0, hour=2, tz="Europe/Berlin")
    expected = {
        dt.date(2026, 10, 23): utc(2026, 10, 23, 0),  # 02:00 CEST
        dt.date(2026, 10, 24): utc(2026, 10, 24, 0),
        dt.date(2026, 10, 25): utc(2026, 10, 25, 0),  # 02:00 happens twice: the first, CEST
        dt.date(2026, 10, 26): utc(2026, 10, 26, 1),  # 02:00 CET
        dt.date(2026, 10, 27): utc(2026, 10, 27, 1),
    }
    for day, tick in expected.items():
        assert at_two.ticks_between(*local_day(day, BERLIN)) == [tick], day
    assert at_two.next_after(utc(2026, 10, 25, 0)) == utc(2026, 10, 26, 1)  # not 01:00Z (CET)


def test_crontab_in_the_gap_runs_as_far_after_it_as_it_was_into_it():
    half_past_two = crontab(minute=30, hour=2, tz="Europe/Berlin")
    # 03:10 CEST (01:10Z) is after the gap, yet 02:30 -> 03:30 CEST (01:30Z) is still to come.
    assert half_past_two.next_after(utc(2026, 3, 29, 1, 10)) == utc(2026, 3, 29, 1, 30)
    assert half_past_two.next_after(utc(2026, 3, 29, 1, 30)) == utc(2026, 3, 30, 0, 30)
    assert half_past_two.next_after(utc(2026, 3, 28, 23)) == utc(2026, 3, 29, 1, 30)


def test_crontab_new_york_fall_back_runs_once_at_the_first_half_past_one():
    value = crontab(minute=30, hour=1, tz="America/New_York")
    new_york = ZoneInfo("America/New_York")
    assert value.ticks_between(*local_day(dt.date(2026, 11, 1), new_york)) == [utc(2026, 11, 1, 5, 30)]
    assert value.next_after(utc(2026, 11, 1, 5, 30)) == utc(2026, 11, 2, 6, 30)
    assert value.ticks_between(utc(2026, 10, 31), utc(2026, 11, 3)) == [
        utc(2026, 10, 31, 5, 30), utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]


def test_crontab_hourly_runs_25_times_on_fall_back_day_and_23_on_spring_forward_day():
    hourly = crontab(minute=0, hour="*", tz="Europe/Berlin")
    fall_back = hourly.ticks_between(*local_day(dt.date(2026, 10, 25), BERLIN))
    assert len(fall_back) == 25
    assert fall_back == [utc(2026, 10, 24, 22) + timedelta(hours=n) for n in range(25)]
    spring_forward = hourly.ticks_between(*local_day(dt.date(2026, 3, 29), BERLIN))
    assert len(spring_forward) == 23
    assert spring_forward == [utc(2026, 3, 28, 23) + timedelta(hours=n) for n in range(23)]
    # In the repeated hour: 02:00 CEST (00:00Z), then 02:00 CET (01:00Z).
    assert hourly.next_after(utc(2026, 10, 25, 0)) == utc(2026, 10, 25, 1)
    assert hourly.next_after(utc(2026, 10, 25, 0, 30)) == utc(2026, 10, 25, 1)


@pytest.mark.parametrize("every_hour", ["*", "0-23", "*/1", "0-23/1", list(range(24))])
def test_every_hour_however_spelled_runs_in_both_copies_of_the_repeated_hour(every_hour):
    hourly = crontab(minute=0, hour=every_hour, tz="Europe/Berlin")
    assert len(hourly.ticks_between(*local_day(dt.date(2026, 10, 25), BERLIN))) == 25


def test_crontab_every_fifteen_minutes_through_the_gap_and_the_repeated_hour():
    quarter = crontab(minute="*/15", tz="Europe/Berlin")
    spring = quarter.ticks_between(utc(2026, 3, 28, 23), utc(2026, 3, 29, 4))
    assert_whole_utc(spring)
    assert spring == [utc(2026, 3, 28, 23, 15) + timedelta(minutes=15 * n) for n in range(20)]
    autumn = quarter.ticks_between(utc(2026, 10, 24, 23), utc(2026, 10, 25, 3))
    assert autumn == [utc(2026, 10, 24, 23, 15) + timedelta(minutes=15 * n) for n in range(16)]
    # Asked one at a time, next_after walks the same ticks.
    tick, walked = utc(2026, 3, 28, 23), []
    while (tick := quarter.next_after(tick)) <= utc(2026, 3, 29, 4):  # type: ignore[operator]
        walked.append(tick)
    assert walked == spring


def test_crontab_every_other_hour_keeps_only_the_first_of_a_repeated_hour():
    value = crontab(minute=0, hour="*/2", tz="Europe/Berlin")
    ticks = value.ticks_between(*local_day(dt.date(2026, 10, 25), BERLIN))
    assert len(ticks) == 12
    assert utc(2026, 10, 25, 0) in ticks and utc(2026, 10, 25, 1) not in ticks


@override_settings(TIME_ZONE="UTC")
def test_crontab_runs_at_the_wall_time_of_its_own_zone():
    tokyo_nine = crontab(minute=0, hour=9, tz="Asia/Tokyo")
    assert tokyo_nine.next_after(utc(2026, 4, 30, 12)) == utc(2026, 5, 1, 0)
    assert crontab(minute=0, hour=9).next_after(utc(2026, 4, 30, 12)) == utc(2026, 5, 1, 9)


def test_crontab_without_tz_follows_time_zone_setting_when_evaluated():
    nine = crontab(minute=0, hour=9)
    with override_settings(TIME_ZONE="Asia/Tokyo"):
        assert nine.next_after(utc(2026, 4, 30, 12)) == utc(2026, 5, 1, 0)
        assert nine.describe() == "At 09:00, Asia/Tokyo"
    with override_settings(TIME_ZONE="UTC"):
        assert nine.next_after(utc(2026, 4, 30, 12)) == utc(2026, 5, 1, 9)
    with override_settings(TIME_ZONE=None):
        assert nine.tz == ZoneInfo("UTC")


def test_crontab_without_django_settings_uses_utc(monkeypatch):
    class Unconfigured:
        def __getattr__(self, name):
            raise ImproperlyConfigured("settings are not configured")

    monkeypatch.setattr(zone_module, "settings", Unconfigured())
    assert crontab().tz == ZoneInfo("UTC")
    assert crontab(minute=0, hour=9).next_after(utc(2026, 4, 30, 12)) == utc(2026, 5, 1, 9)


def test_crontab_describe():
    assert crontab(minute=0, hour=2, day_of_week="mon-fri", tz="Europe/Berlin").describe() == (
        "At 02:00, Monday through Friday, Europe/Berlin")
    assert crontab(minute="*/15", tz="UTC").describe() == "Every 15 minutes, UTC"
    assert crontab(minute=30, hour=14, tz="UTC").describe() == "At 14:30, UTC"


def test_crontab_describe_falls_back_to_the_expression(monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("cannot describe")

    monkeypatch.setattr(words_module, "ExpressionDescriptor", broken)
    assert crontab(minute=0, hour=2, tz="Europe/Berlin").describe() == "cron '0 2 * * *', Europe/Berlin"


# --- solar ---------------------------------------------------------------------------------------


def test_solar_berlin_sunrise_at_midsummer():
    sunrise = solar("sunrise", 52.52, 13.405)
    tick = sunrise.next_after(utc(2026, 6, 21))
    assert tick is not None
    assert abs(tick - utc(2026, 6, 21, 2, 43, 28)) < timedelta(minutes=1)
    exact = astral_sun.sunrise(Observer(52.52, 13.405), dt.date(2026, 6, 21))
    assert tick == exact.replace(microsecond=0)  # rounded down to the whole second
    assert_whole_utc([tick])


def test_solar_events_come_in_order_over_a_day():
    day = utc(2026, 3, 20)
    ticks = [solar(event, 52.52, 13.405).next_after(day) for event in SOLAR_EVENTS]
    assert all(t is not None and day < t < day + timedelta(days=1) for t in ticks), ticks
    assert ticks == sorted(ticks)  # type: ignore[type-var]
    assert len(set(ticks)) == len(SOLAR_EVENTS)


def test_solar_one_tick_a_day_strictly_increasing():
    sunset = solar("sunset", 52.52, 13.405)
    ticks = sunset.ticks_between(utc(2026, 1, 1), utc(2026, 1, 11))
    assert len(ticks) == 10
    assert [t.date() for t in ticks] == [dt.date(2026, 1, d) for d in range(1, 11)]
    assert_whole_utc(ticks)
    tick, walked = utc(2026, 1, 1), []
    for _ in range(10):
        tick = sunset.next_after(tick)  # type: ignore[assignment]
        walked.append(tick)
    assert walked == ticks


def test_solar_skips_polar_day():
    longyearbyen = solar("sunrise", 78.22, 15.65)
    tick = longyearbyen.next_after(utc(2026, 6, 21))
    assert tick is not None
    assert utc(2026, 8, 15) < tick < utc(2026, 9, 1)  # the midnight sun lasts into late August
    assert abs(tick - utc(2026, 8, 25, 0, 7, 49)) < timedelta(minutes=1)


def test_solar_without_the_event_for_a_year_has_no_next_tick(monkeypatch):
    monkeypatch.setattr(solar, "event_on", lambda self, day: None)
    assert solar("sunrise", 0, 0).next_after(utc(2026, 1, 1)) is None


def test_solar_refuses_unknown_events_listing_them():
    with pytest.raises(ScheduleError) as caught:
        solar("sunrize", 52.52, 13.405)
    assert str(caught.value) == "unknown solar event 'sunrize': use one of " + ", ".join(SOLAR_EVENTS)


@pytest.mark.parametrize("lat, lon, field", [
    (90.1, 0, "lat"), (-91, 0, "lat"), (0, 180.5, "lon"), (0, -181, "lon"), ("52", 0, "lat"),
    (float("nan"), 0, "lat"), (True, 0, "lat"),
])
def test_solar_refuses_coordinates_out_of_range(lat, lon, field):
    with pytest.raises(ScheduleError, match=f"solar {field}="):
        solar("sunrise", lat, lon)


def test_solar_attributes_and_describe():
    value = solar("sunrise", 52.52, 13.405, nowfun=None, app=None)
    assert (value.event, value.lat, value.lon) == ("sunrise", 52.52, 13.405)
    assert value.describe() == "sunrise at 52.5200, 13.4050"
    assert solar("sunset", 90, -180).describe() == "sunset at 90.0000, -180.0000"


# --- clocked -------------------------------------------------------------------------------------


def test_clocked_ticks_once():
    once = clocked(datetime(2026, 12, 1, 11, 0, 0, 750000, tzinfo=BERLIN))
    assert once.clocked_time == utc(2026, 12, 1, 10)
    assert once.next_after(utc(2026, 11, 1)) == utc(2026, 12, 1, 10)
    assert once.next_after(utc(2026, 12, 1, 9, 59, 59, 999999)) == utc(2026, 12, 1, 10)
    assert once.next_after(utc(2026, 12, 1, 10)) is None
    assert once.next_after(utc(2027, 1, 1)) is None
    assert once.ticks_between(utc(2026, 1, 1), utc(2027, 1, 1)) == [utc(2026, 12, 1, 10)]
    assert once.ticks_between(utc(2026, 1, 1), utc(2026, 12, 1, 9)) == []


def test_clocked_describe_and_naive_time():
    assert clocked(utc(2026, 12, 1, 10)).describe() == "once at 2026-12-01 10:00:00 UTC"
    with pytest.raises(ScheduleError, match="clocked_time .* is naive: give it a tzinfo"):
        clocked(datetime(2026, 12, 1, 10))


# --- as_schedule ---------------------------------------------------------------------------------


def test_as_schedule():
    nightly = crontab(minute=0, hour=2)
    assert as_schedule(nightly) is nightly
    assert as_schedule(timedelta(minutes=5)) == schedule(300)
    assert as_schedule(30) == schedule(30)
    assert as_schedule(30.0) == schedule(30)


@pytest.mark.parametrize("bad", ["x", None, True, [60]])
def test_as_schedule_refuses_other_values(bad):
    with pytest.raises(ScheduleError) as caught:
        as_schedule(bad)
    assert str(caught.value) == (
        "schedule must be crontab(...), solar(...), clocked(...), a timedelta or a number of "
        f"seconds; got {bad!r}")


@pytest.mark.parametrize("bad", [0, -1, 0.5])
def test_as_schedule_refuses_non_positive_or_fractional_seconds(bad):
    with pytest.raises(ScheduleError, match="run_every"):
        as_schedule(bad)
