"""When schedules fire (cron across DST, epoch-aligned intervals), the missed-fire decision, and the
clear errors for bad declarations. Pure: django_taskpool.schedules imports nothing of Django."""

from __future__ import annotations

import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from django_taskpool.schedules import (
    MAX_COUNTED_FIRES,
    ScheduleError,
    decide,
    parse_schedule,
    parse_schedules,
)

pytestmark = pytest.mark.unit

BERLIN = ZoneInfo("Europe/Berlin")
UTC = datetime.UTC


def utc(*args: int) -> datetime.datetime:
    return datetime.datetime(*args, tzinfo=UTC)


def fires(expr: str, start: datetime.datetime, count: int, timezone: str = "Europe/Berlin") -> list[str]:
    schedule = parse_schedule("s", {"task": "app.tasks.t", "cron": expr, "timezone": timezone})
    found, moment = [], start
    for _ in range(count):
        moment = schedule.next_fire(moment)
        assert moment.tzinfo is not None
        found.append(moment.astimezone(UTC).strftime("%m-%d %H:%M"))
    return found


def test_daily_cron_in_berlin_across_spring_forward_runs_once_right_after_the_gap() -> None:
    # 2026-03-29 02:00 CET jumps to 03:00 CEST: 02:30 local does not exist that day.
    assert fires("30 2 * * *", datetime.datetime(2026, 3, 27, 12, tzinfo=BERLIN), 4) == [
        "03-28 01:30",  # 02:30 CET
        "03-29 01:00",  # 03:00 CEST, the first instant after the gap
        "03-30 00:30",  # 02:30 CEST
        "03-31 00:30",
    ]


def test_daily_cron_in_berlin_across_fall_back_runs_once_at_the_first_of_the_repeated_times() -> None:
    # 2026-10-25 03:00 CEST goes back to 02:00 CET: 02:30 local happens twice that day.
    assert fires("30 2 * * *", datetime.datetime(2026, 10, 24, 12, tzinfo=BERLIN), 3) == [
        "10-25 00:30",  # 02:30 CEST; not again at 02:30 CET (01:30 UTC)
        "10-26 01:30",  # 02:30 CET
        "10-27 01:30",
    ]


def test_hourly_cron_in_berlin_runs_in_both_repeated_hours_and_skips_none_across_the_gap() -> None:
    assert fires("0 * * * *", datetime.datetime(2026, 10, 25, 1, 30, tzinfo=BERLIN), 4) == [
        "10-25 00:00",  # 02:00 CEST
        "10-25 01:00",  # 02:00 CET
        "10-25 02:00",  # 03:00 CET
        "10-25 03:00",
    ]
    assert fires("0 * * * *", datetime.datetime(2026, 3, 29, 0, 30, tzinfo=BERLIN), 3) == [
        "03-29 00:00",  # 01:00 CET
        "03-29 01:00",  # 03:00 CEST (02:00 never happened)
        "03-29 02:00",
    ]


def test_cron_in_utc_is_unaffected_by_any_zone() -> None:
    assert fires("*/15 * * * *", utc(2026, 3, 29, 0, 50), 3, timezone="UTC") == [
        "03-29 01:00",
        "03-29 01:15",
        "03-29 01:30",
    ]


@given(
    st.datetimes(min_value=datetime.datetime(2000, 1, 1), max_value=datetime.datetime(2100, 1, 1)),
    st.integers(min_value=1, max_value=86_400 * 7),
)
def test_interval_fires_are_epoch_multiples_strictly_after_the_moment(moment: Any, every: int) -> None:
    schedule = parse_schedule("s", {"task": "app.tasks.t", "every": every})
    after = moment.replace(tzinfo=UTC)
    fire = schedule.next_fire(after)
    assert fire > after
    assert fire - after <= datetime.timedelta(seconds=every)
    assert fire.timestamp() % every == 0


def test_latest_due_counts_the_fires_of_an_interval_and_of_a_cron_schedule() -> None:
    interval = parse_schedule("s", {"task": "app.tasks.t", "every": 2})
    assert interval.latest_due(utc(2026, 1, 1, 0, 0, 0), utc(2026, 1, 1, 0, 0, 9)) == (
        utc(2026, 1, 1, 0, 0, 8),
        4,
    )
    assert interval.latest_due(utc(2026, 1, 1), utc(2026, 1, 1, 0, 0, 1)) == (utc(2026, 1, 1), 0)
    cron = parse_schedule("c", {"task": "app.tasks.t", "cron": "*/10 * * * *"})
    assert cron.latest_due(utc(2026, 1, 1), utc(2026, 1, 1, 1)) == (utc(2026, 1, 1, 1), 6)


EVERY_2S: dict[str, Any] = {"task": "app.tasks.t", "every": 2}
GRACE = datetime.timedelta(seconds=10)


def test_on_time_fire_is_enqueued_with_no_misfire() -> None:
    schedule = parse_schedule("s", EVERY_2S)
    decision = decide(schedule, utc(2026, 1, 1, 0, 0, 0), utc(2026, 1, 1, 0, 0, 2, 300_000), GRACE)
    assert decision is not None
    assert (decision.fire_time, decision.enqueue, decision.missed) == (utc(2026, 1, 1, 0, 0, 2), True, 0)
    assert decide(schedule, utc(2026, 1, 1, 0, 0, 2), utc(2026, 1, 1, 0, 0, 3), GRACE) is None


def all_decisions(
    schedule: Any, last: datetime.datetime | None, now: datetime.datetime
) -> list[tuple[Any, ...]]:
    """Every decision a scheduler takes at `now`, as (fire second, enqueue, missed)."""
    taken = []
    while (decision := decide(schedule, last, now, GRACE)) is not None:
        taken.append((decision.fire_time.second, decision.enqueue, decision.missed))
        last = decision.fire_time
    return taken


def test_after_downtime_latest_policy_enqueues_the_latest_missed_fire_once_then_the_timely_ones() -> None:
    schedule = parse_schedule("s", {**EVERY_2S, "missed": "latest"})
    # Down from 00:00:00 to 00:00:31: the fires at 2..28 s are more than a period (2 s) late: 14 missed.
    assert all_decisions(schedule, utc(2026, 1, 1), utc(2026, 1, 1, 0, 0, 31)) == [
        (28, True, 13),
        (30, True, 0),
    ]


def test_after_downtime_skip_policy_enqueues_none_of_the_missed_fires() -> None:
    schedule = parse_schedule("s", {**EVERY_2S, "missed": "skip"})
    assert all_decisions(schedule, utc(2026, 1, 1), utc(2026, 1, 1, 0, 0, 31)) == [
        (28, False, 14),
        (30, True, 0),
    ]


def test_a_fire_later_than_the_grace_is_missed_even_with_a_long_period() -> None:
    schedule = parse_schedule("s", {"task": "app.tasks.t", "every": 60, "missed": "skip"})
    late = decide(schedule, utc(2026, 1, 1, 0, 0), utc(2026, 1, 1, 0, 5, 30), GRACE)
    assert late is not None
    assert (late.fire_time, late.enqueue, late.missed) == (utc(2026, 1, 1, 0, 5), False, 5)
    assert decide(schedule, utc(2026, 1, 1, 0, 5), utc(2026, 1, 1, 0, 5, 30), GRACE) is None
    timely = all_decisions(schedule, utc(2026, 1, 1, 0, 0), utc(2026, 1, 1, 0, 5, 5))
    assert timely == [(0, False, 4), (0, True, 0)]  # 00:04 skipped (4 missed), then 00:05 enqueued


def test_a_schedule_never_fired_starts_now_without_misfires() -> None:
    hourly = parse_schedule("s", {"task": "app.tasks.t", "every": 3600})
    assert decide(hourly, None, utc(2026, 1, 1, 0, 30), GRACE) is None
    first = decide(hourly, None, utc(2026, 1, 1, 1, 0, 3), GRACE)
    assert first is not None
    assert (first.fire_time, first.enqueue, first.missed) == (utc(2026, 1, 1, 1), True, 0)
    # Fires of a 2 s schedule before the start were never owed: none missed, the latest timely one runs.
    assert all_decisions(parse_schedule("s", EVERY_2S), None, utc(2026, 1, 1, 0, 1, 1)) == [(0, True, 0)]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"task": "app.tasks.t", "cron": "61 * * * *"}, "invalid cron expression '61 * * * *'"),
        ({"task": "app.tasks.t", "cron": "* * *"}, "invalid cron expression"),
        ({"task": "app.tasks.t", "cron": "0 3 * * *", "timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"task": "app.tasks.t"}, "exactly one of 'cron'"),
        ({"task": "app.tasks.t", "cron": "* * * * *", "every": 5}, "exactly one of 'cron'"),
        ({"task": "app.tasks.t", "every": 0.5}, "at least 1 second"),
        ({"task": "app.tasks.t", "every": 5, "timezone": "UTC"}, "'timezone' applies to 'cron' only"),
        ({"task": "t", "every": 5}, "dotted path"),
        ({"task": "app.tasks.t", "every": 5, "missed": "all"}, "'missed' must be one of latest, skip"),
        ({"task": "app.tasks.t", "every": 5, "args": {"a": 1}}, "'args' must be a list"),
        (
            {"task": "app.tasks.t", "every": 5, "kwargs": {"when": datetime.date(2026, 1, 1)}},
            "JSON-serializable",
        ),
        ({"task": "app.tasks.t", "every": 5, "priority": "high"}, "'priority' must be a whole number"),
        ({"task": "app.tasks.t", "every": 5, "crontab": "x"}, "unknown option(s) crontab"),
    ],
)
def test_bad_declarations_are_rejected_with_the_schedule_named(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ScheduleError) as raised:
        parse_schedules({"nightly": options})
    assert "TASKPOOL_SCHEDULES['nightly']" in str(raised.value)
    assert message in str(raised.value)


def test_bad_names_and_shapes_are_rejected() -> None:
    with pytest.raises(ScheduleError, match="the name must be"):
        parse_schedules({"has space": {"task": "app.tasks.t", "every": 5}})
    with pytest.raises(ScheduleError, match="must be a dict of schedule name"):
        parse_schedules([{"task": "app.tasks.t"}])
    assert parse_schedules(None) == []


def test_a_long_downtime_of_a_cron_schedule_counts_up_to_the_cap_and_still_finds_the_latest_fire() -> None:
    every_minute = parse_schedule(
        "s", {"task": "app.tasks.t", "cron": "* * * * *", "timezone": "Europe/Berlin"}
    )
    latest, count = every_minute.latest_due(utc(2026, 1, 1), utc(2026, 6, 1, 0, 0, 30, 500_000))
    assert (latest, count) == (utc(2026, 6, 1), MAX_COUNTED_FIRES)
