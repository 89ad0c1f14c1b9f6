"""Cron window evaluation: [start, end) in an IANA timezone, including DST transitions."""

from __future__ import annotations

import datetime
import zoneinfo
from typing import Any

import croniter
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kopfscale.scaledapp.sources.base import SourceError
from kopfscale.scaledapp.sources.cron import (
    CronConfig,
    describe,
    is_inside,
    last_occurrence,
    parse_config,
    wall_to_instant,
    window_value,
)

UTC = datetime.UTC
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0
) -> datetime.datetime:
    return datetime.datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


def config(start: str, end: str, tz: str = "Europe/Berlin", replicas: int = 3) -> CronConfig:
    return parse_config({"timezone": tz, "start": start, "end": end, "desiredReplicas": replicas})


BUSINESS = config("0 8 * * 1-5", "0 18 * * 1-5")


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # Winter (CET = UTC+1): Monday 2024-03-04.
        (utc(2024, 3, 4, 6, 59, 59), 0.0),
        (utc(2024, 3, 4, 7, 0, 0), 3.0),  # 08:00 sharp: start is inclusive
        (utc(2024, 3, 4, 7, 0, 0) + datetime.timedelta(microseconds=1), 3.0),
        (utc(2024, 3, 4, 12, 0), 3.0),
        (utc(2024, 3, 4, 16, 59, 59, 999999), 3.0),
        (utc(2024, 3, 4, 17, 0, 0), 0.0),  # 18:00 sharp: end is exclusive
        (utc(2024, 3, 4, 23, 0), 0.0),
        # Summer (CEST = UTC+2): Wednesday 2024-07-10.
        (utc(2024, 7, 10, 5, 59), 0.0),
        (utc(2024, 7, 10, 6, 0), 3.0),
        (utc(2024, 7, 10, 15, 59), 3.0),
        (utc(2024, 7, 10, 16, 0), 0.0),
        # Weekend: Saturday and Sunday noon.
        (utc(2024, 3, 9, 11, 0), 0.0),
        (utc(2024, 3, 10, 11, 0), 0.0),
        # Friday evening → stays out over the weekend; Monday morning → in.
        (utc(2024, 3, 8, 16, 30), 3.0),
        (utc(2024, 3, 8, 17, 30), 0.0),
        (utc(2024, 3, 11, 7, 30), 3.0),
        # The Monday after the spring-forward Sunday (2024-03-31): 08:00 is now 06:00 UTC.
        (utc(2024, 4, 1, 5, 59), 0.0),
        (utc(2024, 4, 1, 6, 0), 3.0),
        # The Monday after the fall-back Sunday (2024-10-27): 08:00 is now 07:00 UTC.
        (utc(2024, 10, 28, 6, 59), 0.0),
        (utc(2024, 10, 28, 7, 0), 3.0),
        (utc(2024, 10, 28, 16, 59), 3.0),
        (utc(2024, 10, 28, 17, 0), 0.0),
    ],
)
def test_business_hours_in_berlin(now: datetime.datetime, expected: float) -> None:
    assert window_value(BUSINESS, now) == expected


def test_now_in_any_timezone_is_the_same_instant() -> None:
    instant = utc(2024, 3, 4, 7, 30)  # 08:30 in Berlin
    for tz in ("UTC", "Asia/Tokyo", "America/Los_Angeles"):
        assert window_value(BUSINESS, instant.astimezone(zoneinfo.ZoneInfo(tz))) == 3.0


def test_naive_now_is_utc() -> None:
    assert window_value(BUSINESS, datetime.datetime(2024, 3, 4, 7, 30)) == 3.0
    assert window_value(BUSINESS, datetime.datetime(2024, 3, 4, 6, 30)) == 0.0


def test_the_window_is_in_its_own_timezone() -> None:
    new_york = config("0 8 * * 1-5", "0 18 * * 1-5", tz="America/New_York")
    instant = utc(2024, 3, 4, 12, 0)  # 13:00 Berlin, 07:00 New York
    assert window_value(BUSINESS, instant) == 3.0
    assert window_value(new_york, instant) == 0.0
    assert window_value(new_york, utc(2024, 3, 4, 13, 0)) == 3.0  # 08:00 New York


@pytest.mark.parametrize(
    ("now", "inside"),
    [
        (utc(2024, 1, 10, 20, 59), False),  # 21:59 Berlin
        (utc(2024, 1, 10, 21, 0), True),  # 22:00
        (utc(2024, 1, 10, 23, 30), True),  # 00:30 next day
        (utc(2024, 1, 11, 4, 59), True),  # 05:59
        (utc(2024, 1, 11, 5, 0), False),  # 06:00
        (utc(2024, 1, 11, 11, 0), False),
    ],
)
def test_window_across_midnight(now: datetime.datetime, inside: bool) -> None:
    assert is_inside(config("0 22 * * *", "0 6 * * *"), now) is inside


class TestSpringForward:
    """Berlin, 2024-03-31: 02:00 CET (01:00 UTC) jumps to 03:00 CEST; 02:xx does not exist."""

    def test_skipped_wall_time_happens_at_the_transition(self) -> None:
        assert wall_to_instant(datetime.datetime(2024, 3, 31, 2, 30), BERLIN) == utc(2024, 3, 31, 1, 0)
        assert wall_to_instant(datetime.datetime(2024, 3, 31, 2, 0), BERLIN) == utc(2024, 3, 31, 1, 0)
        assert wall_to_instant(datetime.datetime(2024, 3, 31, 1, 59), BERLIN) == utc(2024, 3, 31, 0, 59)
        assert wall_to_instant(datetime.datetime(2024, 3, 31, 3, 0), BERLIN) == utc(2024, 3, 31, 1, 0)
        assert wall_to_instant(datetime.datetime(2024, 3, 31, 3, 1), BERLIN) == utc(2024, 3, 31, 1, 1)

    @pytest.mark.parametrize(
        ("now", "inside"),
        [
            (utc(2024, 3, 31, 0, 59), False),  # 01:59 CET
            (utc(2024, 3, 31, 1, 0), True),  # 03:00 CEST: the skipped 02:30 start happens now
            (utc(2024, 3, 31, 1, 59), True),  # 03:59 CEST
            (utc(2024, 3, 31, 2, 0), False),  # 04:00 CEST: end
            (utc(2024, 4, 1, 0, 30), True),  # next day 02:30 CEST exists again
        ],
    )
    def test_window_starting_in_the_gap(self, now: datetime.datetime, inside: bool) -> None:
        assert is_inside(config("30 2 * * *", "0 4 * * *"), now) is inside

    @pytest.mark.parametrize("minutes", range(-90, 180, 15))
    def test_window_entirely_in_the_gap_is_empty_that_day_not_all_day(self, minutes: int) -> None:
        now = utc(2024, 3, 31, 1, 0) + datetime.timedelta(minutes=minutes)
        assert is_inside(config("0 2 * * *", "30 2 * * *"), now) is False

    def test_window_ending_in_the_gap_ends_at_the_transition(self) -> None:
        window = config("0 1 * * *", "30 2 * * *")
        assert is_inside(window, utc(2024, 3, 31, 0, 59)) is True  # 01:59 CET
        assert is_inside(window, utc(2024, 3, 31, 1, 0)) is False  # 03:00 CEST


class TestFallBack:
    """Berlin, 2024-10-27: 03:00 CEST (01:00 UTC) falls back to 02:00 CET; 02:xx happens twice."""

    def test_repeated_wall_time_happens_once_at_its_first_occurrence(self) -> None:
        assert wall_to_instant(datetime.datetime(2024, 10, 27, 2, 30), BERLIN) == utc(2024, 10, 27, 0, 30)
        assert wall_to_instant(datetime.datetime(2024, 10, 27, 3, 0), BERLIN) == utc(2024, 10, 27, 2, 0)

    @pytest.mark.parametrize(
        ("now", "inside"),
        [
            (utc(2024, 10, 26, 23, 59), False),  # 01:59 CEST
            (utc(2024, 10, 27, 0, 0), True),  # 02:00 CEST, first pass
            (utc(2024, 10, 27, 0, 29), True),
            (utc(2024, 10, 27, 0, 30), False),  # 02:30 CEST: end
            (utc(2024, 10, 27, 1, 0), False),  # 02:00 CET, second pass: no second start
            (utc(2024, 10, 27, 1, 15), False),
            (utc(2024, 10, 27, 1, 45), False),
        ],
    )
    def test_window_inside_the_repeated_hour(self, now: datetime.datetime, inside: bool) -> None:
        assert is_inside(config("0 2 * * *", "30 2 * * *"), now) is inside

    @pytest.mark.parametrize(
        ("now", "inside"),
        [
            (utc(2024, 10, 27, 0, 29), False),  # 02:29 CEST
            (utc(2024, 10, 27, 0, 30), True),  # 02:30 CEST
            (utc(2024, 10, 27, 1, 10), True),  # 02:10 CET: still inside (wall clock went backwards)
            (utc(2024, 10, 27, 1, 59), True),  # 02:59 CET
            (utc(2024, 10, 27, 2, 0), False),  # 03:00 CET: end
        ],
    )
    def test_window_spanning_the_repeated_hour(self, now: datetime.datetime, inside: bool) -> None:
        assert is_inside(config("30 2 * * *", "0 3 * * *"), now) is inside

    def test_last_occurrence_is_monotonic_through_the_repeated_hour(self) -> None:
        now = utc(2024, 10, 26, 23, 0)
        previous = last_occurrence("*/10 * * * *", now, BERLIN)
        while now < utc(2024, 10, 27, 3, 0):
            now += datetime.timedelta(minutes=1)
            current = last_occurrence("*/10 * * * *", now, BERLIN)
            assert previous <= current <= now
            previous = current


def test_half_hour_dst_shift_lord_howe() -> None:
    # Australia/Lord_Howe moves by 30 minutes: 2024-04-07 02:00 (+11) falls back to 01:30 (+10:30).
    lord_howe = zoneinfo.ZoneInfo("Australia/Lord_Howe")
    first = wall_to_instant(datetime.datetime(2024, 4, 7, 1, 45), lord_howe)
    assert first == datetime.datetime(
        2024, 4, 7, 1, 45, tzinfo=datetime.timezone(datetime.timedelta(hours=11))
    )
    window = config("45 1 * * *", "55 1 * * *", tz="Australia/Lord_Howe")
    assert is_inside(window, first) is True
    assert is_inside(window, first + datetime.timedelta(minutes=10)) is False
    assert is_inside(window, first + datetime.timedelta(minutes=40)) is False  # 01:45 again, second pass


# --- A brute-force reference: walk back minute by minute in UTC. -------------------------------


def reference_last_occurrence(expr: str, now: datetime.datetime, tz: zoneinfo.ZoneInfo) -> datetime.datetime:
    """The latest minute T <= now at which expr fires: T's wall time matches at its first occurrence
    (fold=0), or T ends a spring-forward gap that skipped a matching wall time."""
    one = datetime.timedelta(minutes=1)
    t = now.astimezone(UTC).replace(second=0, microsecond=0)
    for _ in range(60 * 24 * 2):
        local = t.astimezone(tz)
        wall = local.replace(tzinfo=None, fold=0)
        if local.fold == 0 and croniter.croniter.match(expr, wall):
            return t
        before = (t - one).astimezone(tz).replace(tzinfo=None, fold=0)
        skipped = before + one
        while skipped < wall:
            if croniter.croniter.match(expr, skipped):
                return t
            skipped += one
        t -= one
    raise AssertionError("no occurrence found")


TRANSITIONS = [
    utc(2024, 3, 31, 1, 0),
    utc(2024, 10, 27, 1, 0),
    utc(2024, 3, 10, 7, 0),  # New York spring
    utc(2024, 11, 3, 6, 0),  # New York fall
]
# Frequent expressions keep the brute force cheap; they all fire inside or next to DST shifts.
EXPRESSIONS = ["*/7 * * * *", "0,30 1-3 * * *", "15 2 * * *", "59 1 * * *", "0 3 * * *", "5 * * * *"]
ZONES = ["Europe/Berlin", "America/New_York", "UTC"]


@settings(max_examples=60, deadline=None)
@given(
    base=st.sampled_from(TRANSITIONS),
    offset=st.integers(min_value=-5 * 3600, max_value=5 * 3600),
    expr=st.sampled_from(EXPRESSIONS),
    zone=st.sampled_from(ZONES),
)
def test_last_occurrence_matches_brute_force(
    base: datetime.datetime, offset: int, expr: str, zone: str
) -> None:
    now = base + datetime.timedelta(seconds=offset)
    tz = zoneinfo.ZoneInfo(zone)
    assert last_occurrence(expr, now, tz) == reference_last_occurrence(expr, now, tz)


# --- Config validation. ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"start": "0 8 * * *", "end": "0 18 * * *", "desiredReplicas": 1}, "'timezone' is required"),
        (
            {"timezone": "Mars/Olympus", "start": "0 8 * * *", "end": "0 18 * * *", "desiredReplicas": 1},
            "unknown timezone 'Mars/Olympus'",
        ),
        (
            {"timezone": "../etc/passwd", "start": "0 8 * * *", "end": "0 18 * * *", "desiredReplicas": 1},
            "unknown timezone",
        ),
        (
            {"timezone": "UTC", "start": "bogus", "end": "0 18 * * *", "desiredReplicas": 1},
            "start 'bogus' is not a valid 5-field cron expression",
        ),
        (
            {"timezone": "UTC", "start": "0 25 * * *", "end": "0 18 * * *", "desiredReplicas": 1},
            "not a valid 5-field",
        ),
        (
            {"timezone": "UTC", "start": "0 0 8 * * *", "end": "0 18 * * *", "desiredReplicas": 1},
            "not a valid 5-field",
        ),
        ({"timezone": "UTC", "start": "0 8 * * *", "desiredReplicas": 1}, "'end' is required"),
        (
            {"timezone": "UTC", "start": "0 8 * * *", "end": "0  8 * * *", "desiredReplicas": 1},
            "same expression",
        ),
        ({"timezone": "UTC", "start": "0 8 * * *", "end": "0 18 * * *"}, "desiredReplicas must be"),
        (
            {"timezone": "UTC", "start": "0 8 * * *", "end": "0 18 * * *", "desiredReplicas": -1},
            "desiredReplicas must be",
        ),
        (
            {"timezone": "UTC", "start": "0 8 * * *", "end": "0 18 * * *", "desiredReplicas": 2.5},
            "desiredReplicas must be",
        ),
        (
            {"timezone": "UTC", "start": "0 8 * * *", "end": "0 18 * * *", "desiredReplicas": True},
            "desiredReplicas must be",
        ),
    ],
)
def test_config_errors(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(SourceError) as excinfo:
        parse_config(raw)
    assert message in str(excinfo.value)


def test_expression_that_never_occurs() -> None:
    window = config("0 0 30 2 *", "0 18 * * *", tz="UTC")
    with pytest.raises(SourceError, match="never occurred"):
        is_inside(window, utc(2024, 3, 4, 12, 0))


def test_zero_replicas_and_describe() -> None:
    assert window_value(config("0 8 * * *", "0 18 * * *", replicas=0), utc(2024, 3, 4, 12, 0)) == 0.0
    assert describe({"timezone": "Europe/Berlin", "start": "0 8 * * 1-5", "end": "0 18 * * 1-5"}) == (
        "cron [0 8 * * 1-5, 0 18 * * 1-5) Europe/Berlin"
    )
