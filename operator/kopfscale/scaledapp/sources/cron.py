"""``type: cron`` — a fixed replica count during a recurring time window (like KEDA's cron scaler).

The value is ``desiredReplicas`` while "now" (``ctx.now()``, seen in the IANA ``timezone``) is inside
``[start, end)`` and 0 otherwise. "Inside" means: the most recent ``start`` occurrence (at or before
now) is later than the most recent ``end`` occurrence (at or before now). Both expressions are
standard 5-field cron expressions, evaluated by croniter in local wall-clock time of ``timezone``.
Daylight-saving transitions: a wall time skipped by a spring-forward gap happens at the transition
(02:30 on a day that jumps from 02:00 to 03:00 happens at 03:00), and a wall time repeated by a
fall-back happens once, at its first occurrence. So "0 8 * * 1-5" is always 08:00 local time.
"""

from __future__ import annotations

import datetime
import zoneinfo
from dataclasses import dataclass

import croniter

from kopfscale.scaledapp.sources.base import Config, Meaning, Scaler, SourceContext, SourceError, required_str

_ONE_SECOND = datetime.timedelta(seconds=1)


@dataclass(frozen=True)
class CronConfig:
    timezone: zoneinfo.ZoneInfo
    start: str
    end: str
    desired_replicas: int


def parse_config(config: Config) -> CronConfig:
    tz_name = required_str(config, "timezone")
    try:
        timezone = zoneinfo.ZoneInfo(tz_name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise SourceError(f"unknown timezone {tz_name!r}, expected an IANA name like Europe/Berlin") from None
    start = _expression(config, "start")
    end = _expression(config, "end")
    if start == end:
        raise SourceError(f"start and end are the same expression {start!r}; the window is always empty")
    replicas = config.get("desiredReplicas")
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0:
        raise SourceError(f"desiredReplicas must be a non-negative integer, got {replicas!r}")
    return CronConfig(timezone=timezone, start=start, end=end, desired_replicas=replicas)


def _expression(config: Config, field: str) -> str:
    expr = " ".join(required_str(config, field).split())
    if len(expr.split(" ")) != 5 or not croniter.croniter.is_valid(expr):
        raise SourceError(
            f"{field} {expr!r} is not a valid 5-field cron expression "
            "(minute hour day-of-month month day-of-week)"
        )
    return expr


def wall_to_instant(wall: datetime.datetime, tz: zoneinfo.ZoneInfo) -> datetime.datetime:
    """The UTC instant at which the (naive) local wall-clock time ``wall`` happens in ``tz``.

    DST rules: a wall time repeated by a fall-back transition happens once, at its first (summer
    time) occurrence; a wall time skipped by a spring-forward gap happens at the transition itself
    (02:30 on a day that jumps from 02:00 to 03:00 happens at 03:00). The mapping is monotonic.
    """
    first = wall.replace(tzinfo=tz, fold=0).astimezone(datetime.UTC)
    second = wall.replace(tzinfo=tz, fold=1).astimezone(datetime.UTC)
    if first == second or _local_wall(first, tz) == wall:
        return first  # an ordinary time, or the first of two (fold=0 is the earlier instant)
    # A gap: the wall clock jumps over ``wall`` somewhere between the two candidate instants.
    # Find the first whole second at which the wall clock reads ``wall`` or later.
    lo, hi = sorted((first, second))
    lo_s, hi_s = int(lo.timestamp()), int(hi.timestamp()) + 1
    while lo_s < hi_s:
        mid = (lo_s + hi_s) // 2
        if _local_wall(datetime.datetime.fromtimestamp(mid, datetime.UTC), tz) >= wall:
            hi_s = mid
        else:
            lo_s = mid + 1
    return datetime.datetime.fromtimestamp(lo_s, datetime.UTC)


def _local_wall(instant: datetime.datetime, tz: zoneinfo.ZoneInfo) -> datetime.datetime:
    return instant.astimezone(tz).replace(tzinfo=None, fold=0)


_MAX_STEPS = 100_000  # candidates skipped inside a DST shift; a few dozen at most in practice


def last_occurrence(expr: str, now: datetime.datetime, tz: zoneinfo.ZoneInfo) -> datetime.datetime:
    """The latest instant (UTC) at or before ``now`` (aware) at which ``expr`` fires in ``tz``.

    croniter iterates naive wall-clock times (pure calendar arithmetic, no DST surprises); each
    candidate is mapped to an instant by :func:`wall_to_instant`. Comparisons are done in UTC:
    Python compares two datetimes of the same tzinfo by wall clock, which is wrong across DST.
    """
    now_utc = now.astimezone(datetime.UTC)
    local = now_utc.astimezone(tz)
    # The highest wall-clock reading so far: during the second pass of a fall-back hour, the
    # wall clock already read later times (in summer time) than it reads now.
    earlier_offset = local.replace(fold=0).utcoffset() or datetime.timedelta(0)
    wall = max(local.replace(tzinfo=None, fold=0), (now_utc + earlier_offset).replace(tzinfo=None))
    # Cron occurrences fall on whole minutes and croniter's get_prev() is strictly-before: start
    # from the next whole second so that an occurrence exactly at ``now`` counts ([start, end)).
    base = wall.replace(microsecond=0) + _ONE_SECOND
    try:
        iterator = croniter.croniter(expr, base)
        for _ in range(_MAX_STEPS):
            candidate = iterator.get_prev(datetime.datetime)
            assert isinstance(candidate, datetime.datetime)
            instant = wall_to_instant(candidate, tz)
            if instant <= now_utc:
                return instant
    except croniter.CroniterBadDateError:
        pass
    raise SourceError(f"cron expression {expr!r} never occurred before {local.isoformat()}")


def is_inside(cfg: CronConfig, now: datetime.datetime) -> bool:
    """Whether ``now`` is inside the ``[start, end)`` window; a naive ``now`` is taken as UTC."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=datetime.UTC)
    last_start = last_occurrence(cfg.start, now, cfg.timezone)
    last_end = last_occurrence(cfg.end, now, cfg.timezone)
    return last_start > last_end


def window_value(cfg: CronConfig, now: datetime.datetime) -> float:
    return float(cfg.desired_replicas) if is_inside(cfg, now) else 0.0


def describe(config: Config) -> str:
    start, end, tz = config.get("start"), config.get("end"), config.get("timezone")
    if isinstance(start, str) and isinstance(end, str):
        return f"cron [{start}, {end})" + (f" {tz}" if isinstance(tz, str) else "")
    return "cron"


class CronScaler(Scaler[CronConfig]):
    """``desiredReplicas`` inside the window, 0 outside: a floor (KEDA's cron scaler). No I/O."""

    type = "cron"
    meaning = Meaning.FLOOR

    def parse(self, config: Config, target_type: str | None) -> CronConfig:
        return parse_config(config)

    def describe(self, config: Config) -> str:
        return describe(config)

    async def read(self, config: CronConfig, ctx: SourceContext) -> float:
        return window_value(config, ctx.now())


SCALER = CronScaler()
