"""Periodic tasks declared in the project's settings, and when each one fires (pure: no I/O, no clock).

```python
TASKPOOL_SCHEDULES = {
    "nightly-report": {"task": "shop.tasks.build_report", "cron": "0 3 * * *", "timezone": "Europe/Berlin"},
    "heartbeat": {"task": "shop.tasks.ping", "every": 30, "queue": "default", "priority": 10},
}
```

A schedule has either `cron` (5 fields, or 6 with seconds first; evaluated with `cronsim` in `timezone`,
default UTC) or `every` (seconds, or a `timedelta`; fires on multiples of it counted from the Unix epoch, so
every scheduler computes the same instants). Optional: `args` (list), `kwargs` (dict), `queue`, `priority`,
`missed` (what a scheduler that was down does with the fires it missed: `latest`, the default, enqueues the
latest of them once; `skip` enqueues none).

Daylight saving time follows Debian cron (cronsim): a fixed-time job whose local time does not exist (the
spring-forward gap) runs once right after the gap; one whose local time happens twice (fall back) runs once,
at the first; jobs that run every hour (a `*` or step in the hour field) run in both repeated hours.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

MissedFirePolicy = Literal["latest", "skip"]
MISSED_FIRE_POLICIES: tuple[MissedFirePolicy, ...] = ("latest", "skip")
# Schedule names are metric label values and keys of the fires table (its column is 100 characters).
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
_KEYS = {"task", "cron", "timezone", "every", "args", "kwargs", "queue", "priority", "missed"}
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
# How far a missed-fire count goes for a cron schedule (an interval's is arithmetic): beyond it the count is
# reported as this many, and finding the latest missed fire stays cheap after any downtime.
MAX_COUNTED_FIRES = 100_000


class ScheduleError(ValueError):
    """A schedule in settings.TASKPOOL_SCHEDULES cannot be used; the message names it and says why."""


@dataclasses.dataclass(frozen=True)
class Schedule:
    name: str
    task_path: str
    cron: str | None
    timezone: str
    every: datetime.timedelta | None
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]
    queue: str | None
    priority: int | None
    missed: MissedFirePolicy

    def next_fire(self, after: datetime.datetime) -> datetime.datetime:
        """The first fire strictly after `after` (an aware datetime), in UTC."""
        return next(self._fires_after(after))

    def period(self, at: datetime.datetime) -> datetime.timedelta:
        """The gap between the next fire after `at` and the one after it (a cron schedule's varies)."""
        first = self.next_fire(at)
        return self.next_fire(first) - first

    def latest_due(self, after: datetime.datetime, until: datetime.datetime) -> tuple[datetime.datetime, int]:
        """(the latest fire in (after, until], how many fires that interval holds); (after, 0) when none.
        The count stops at MAX_COUNTED_FIRES for cron schedules."""
        if self.every is not None:
            step = self.every.total_seconds()
            first = _steps_until(after, step) + 1
            last = _steps_until(until, step)
            if last < first:
                return after, 0
            return _EPOCH + datetime.timedelta(seconds=last * step), last - first + 1
        latest, count = after, 0
        for fire in self._fires_after(after):
            if fire > until:
                break
            latest, count = fire, count + 1
            if count == MAX_COUNTED_FIRES:
                # Jump to the latest fire by walking back from `until` instead of counting the rest.
                return self._latest_at_or_before(until), count
        return latest, count

    def _latest_at_or_before(self, until: datetime.datetime) -> datetime.datetime:
        local = (until + datetime.timedelta(seconds=1)).astimezone(ZoneInfo(self.timezone))
        return next(iter(CronSim(self._require_cron(), local, reverse=True))).astimezone(datetime.UTC)

    def _fires_after(self, after: datetime.datetime) -> Iterator[datetime.datetime]:
        if self.every is not None:
            step = self.every.total_seconds()
            index = _steps_until(after, step) + 1
            while True:
                yield _EPOCH + datetime.timedelta(seconds=index * step)
                index += 1
        for fire in CronSim(self._require_cron(), after.astimezone(ZoneInfo(self.timezone))):
            yield fire.astimezone(datetime.UTC)

    def _require_cron(self) -> str:
        assert self.cron is not None, "a schedule has cron or every"
        return self.cron


def _steps_until(moment: datetime.datetime, step: float) -> int:
    """How many whole `step`s lie between the epoch and `moment` (the index of the last fire <= moment)."""
    elapsed = (moment - _EPOCH) / datetime.timedelta(microseconds=1)
    return int(elapsed // round(step * 1_000_000))


def parse_schedule(name: str, options: Any) -> Schedule:
    """One entry of TASKPOOL_SCHEDULES, checked (its task is resolved by `django_taskpool.scheduling`)."""

    def fail(why: str) -> ScheduleError:
        return ScheduleError(f"TASKPOOL_SCHEDULES[{name!r}]: {why}")

    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise fail("the name must be 1-100 characters of letters, digits and _ . : - (starting alnum)")
    if not isinstance(options, Mapping):
        raise fail(f"must be a dict of options, not {type(options).__name__}")
    unknown = set(options) - _KEYS
    if unknown:
        raise fail(
            f"unknown option(s) {', '.join(sorted(map(str, unknown)))}; known: {', '.join(sorted(_KEYS))}"
        )
    task_path = options.get("task")
    if not isinstance(task_path, str) or "." not in task_path:
        raise fail("'task' must be the dotted path of a task, like 'shop.tasks.send_digest'")
    cron, every, timezone = options.get("cron"), options.get("every"), options.get("timezone", "UTC")
    if (cron is None) == (every is None):
        raise fail("give exactly one of 'cron' (a cron expression) and 'every' (seconds)")
    if every is not None:
        every = _interval(every, fail)
        if "timezone" in options:
            raise fail("'timezone' applies to 'cron' only ('every' counts seconds, which have no time zone)")
    else:
        _check_cron(cron, timezone, fail)
    args, kwargs = _arguments(options, fail)
    queue, priority = options.get("queue"), options.get("priority")
    if queue is not None and (not isinstance(queue, str) or not queue):
        raise fail("'queue' must be a queue name")
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
        raise fail("'priority' must be a whole number")
    missed = options.get("missed", "latest")
    if missed not in MISSED_FIRE_POLICIES:
        raise fail(f"'missed' must be one of {', '.join(MISSED_FIRE_POLICIES)}, not {missed!r}")
    return Schedule(
        name=name,
        task_path=task_path,
        cron=cron,
        timezone=timezone,
        every=every,
        args=tuple(args),
        kwargs=dict(kwargs),
        queue=queue,
        priority=priority,
        missed=missed,
    )


def _arguments(options: Mapping[str, Any], fail: Callable[[str], ScheduleError]) -> tuple[Any, Any]:
    args, kwargs = options.get("args", ()), options.get("kwargs", {})
    if not isinstance(args, list | tuple):
        raise fail("'args' must be a list")
    if not isinstance(kwargs, Mapping) or not all(isinstance(key, str) for key in kwargs):
        raise fail("'kwargs' must be a dict with string keys")
    try:
        json.dumps([list(args), dict(kwargs)])
    except (TypeError, ValueError) as exc:
        raise fail(f"'args' and 'kwargs' must be JSON-serializable (stored as JSON): {exc}") from None
    return args, kwargs


def _interval(every: Any, fail: Callable[[str], ScheduleError]) -> datetime.timedelta:
    if isinstance(every, datetime.timedelta):
        interval = every
    elif isinstance(every, int | float) and not isinstance(every, bool):
        interval = datetime.timedelta(seconds=every)
    else:
        raise fail("'every' must be seconds (a number) or a timedelta")
    if interval < datetime.timedelta(seconds=1):
        raise fail("'every' must be at least 1 second")
    return interval


def _check_cron(cron: Any, timezone: Any, fail: Callable[[str], ScheduleError]) -> None:
    if not isinstance(cron, str):
        raise fail("'cron' must be a string like '*/15 * * * *'")
    if not isinstance(timezone, str):
        raise fail("'timezone' must be an IANA time zone name like 'Europe/Berlin'")
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise fail(f"unknown time zone {timezone!r} (an IANA name like 'Europe/Berlin')") from None
    try:
        next(iter(CronSim(cron, datetime.datetime.now(zone))))
    except CronSimError as exc:
        raise fail(f"invalid cron expression {cron!r}: {exc}") from None
    except StopIteration:
        raise fail(f"cron expression {cron!r} never fires") from None


def parse_schedules(declared: Any) -> list[Schedule]:
    """Every schedule of TASKPOOL_SCHEDULES (a dict of name -> options), checked."""
    if declared is None:
        return []
    if not isinstance(declared, Mapping):
        raise ScheduleError("TASKPOOL_SCHEDULES must be a dict of schedule name -> options")
    return [parse_schedule(name, options) for name, options in declared.items()]


@dataclasses.dataclass(frozen=True)
class FireDecision:
    """What a scheduler records for a schedule: one fire time (the key of the fires table), whether it
    enqueues the task, and how many fires it gives up (misfires)."""

    fire_time: datetime.datetime
    enqueue: bool
    missed: int


def decide(
    schedule: Schedule,
    last_fire: datetime.datetime | None,
    now: datetime.datetime,
    grace: datetime.timedelta,
) -> FireDecision | None:
    """The next fire to record at `now`, given the latest fire recorded for the schedule (None: never
    recorded; then only a fire that is not late counts). Called again until it returns None.

    A fire is missed when it is later than `grace` or than the schedule's period: no scheduler ran at its
    instant. Missed fires are settled first, in one decision on the latest of them: with `missed="latest"`
    its task is enqueued and the earlier ones are misfires; with `"skip"` all are misfires and the latest is
    recorded without a task. Then each fire that is not late is enqueued, one decision each. Every scheduler
    looking at the same table and moment tries the same key."""
    lateness = min(grace, schedule.period(now - grace if last_fire is None else last_fire))
    # A schedule never recorded starts now: the fires before it were never owed.
    after = now - lateness if last_fire is None else last_fire
    latest_missed, missed = schedule.latest_due(after, now - lateness)
    if missed:
        if schedule.missed == "latest":
            return FireDecision(fire_time=latest_missed, enqueue=True, missed=missed - 1)
        return FireDecision(fire_time=latest_missed, enqueue=False, missed=missed)
    upcoming = schedule.next_fire(after)
    if upcoming > now:
        return None
    return FireDecision(fire_time=upcoming, enqueue=True, missed=0)
