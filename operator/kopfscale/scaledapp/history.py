"""What the policy remembers between polls: recommendations, scale events, activity, failures.

The HPA keeps this in controller memory and loses it on restart; kopfscale keeps it in the
ScaledApp's ``status.history`` so that a restarted operator honours the stabilization windows
and scale rate limits it had promised. To keep status writes rare, equal consecutive
recommendations are stored as one segment (``replicas``, first and last time seen); the open
(latest) segment is persisted without its last-seen time, which only lives in memory and is
taken as the load time after a restart (conservative: it counts as "seen until now").

Pure: no I/O, the clock is a parameter. Immutable: every change returns a new ``History``.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any


def fmt_time(moment: datetime.datetime) -> str:
    """UTC, millisecond precision, ``Z`` suffix (RFC 3339)."""
    moment = moment.astimezone(datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_time(raw: Any) -> datetime.datetime | None:
    if not isinstance(raw, str) or not raw:
        return None
    try:
        moment = datetime.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment


@dataclass(frozen=True)
class Segment:
    """A run of equal recommendations: seen first at ``since`` and last at ``until``."""

    replicas: int
    since: datetime.datetime
    until: datetime.datetime


@dataclass(frozen=True)
class ScaleEvent:
    time: datetime.datetime
    change: int  # positive: scaled up by that many replicas; negative: scaled down


@dataclass(frozen=True)
class History:
    recommendations: tuple[Segment, ...] = ()
    scale_events: tuple[ScaleEvent, ...] = ()
    inactive_since: datetime.datetime | None = None
    failures: Mapping[str, int] = field(default_factory=dict)

    # -- queries ---------------------------------------------------------------------------
    def recommendations_after(self, cutoff: datetime.datetime) -> list[int]:
        """Recommendations last seen strictly after ``cutoff`` (the HPA's ``timestamp.After``)."""
        return [s.replicas for s in self.recommendations if s.until > cutoff]

    def recommendations_since(self, cutoff: datetime.datetime) -> list[int]:
        """Recommendations last seen at or after ``cutoff``: the HPA's legacy window (used without
        ``behavior``) drops only samples ``Before`` its cutoff, so one exactly a window old counts."""
        return [s.replicas for s in self.recommendations if s.until >= cutoff]

    def change_in_period(self, now: datetime.datetime, period_seconds: int) -> tuple[int, int]:
        """(replicas added, replicas removed) by scale events strictly after ``now - period``."""
        cutoff = now - datetime.timedelta(seconds=period_seconds)
        added = sum(e.change for e in self.scale_events if e.time > cutoff and e.change > 0)
        removed = sum(-e.change for e in self.scale_events if e.time > cutoff and e.change < 0)
        return added, removed

    # -- updates ---------------------------------------------------------------------------
    def record_recommendation(self, now: datetime.datetime, replicas: int, keep_seconds: int) -> History:
        segments = list(self.recommendations)
        if segments and segments[-1].replicas == replicas:
            segments[-1] = replace(segments[-1], until=now)
        else:
            segments.append(Segment(replicas, now, now))
        cutoff = now - datetime.timedelta(seconds=keep_seconds)
        # Keep the latest segment always: it is the one the next sample may extend.
        kept = [s for s in segments[:-1] if s.until > cutoff] + segments[-1:]
        return replace(self, recommendations=tuple(kept))

    def record_scale_event(self, now: datetime.datetime, change: int, keep_seconds: int) -> History:
        cutoff = now - datetime.timedelta(seconds=keep_seconds)
        events = [e for e in self.scale_events if e.time > cutoff]
        if change:
            events.append(ScaleEvent(now, change))
        return replace(self, scale_events=tuple(events))

    def with_activity(self, now: datetime.datetime, active: bool | None) -> History:
        """``active`` None means unknown (a metric failed): the inactivity clock neither starts nor resets."""
        if active is True:
            return replace(self, inactive_since=None) if self.inactive_since is not None else self
        if active is False and self.inactive_since is None:
            return replace(self, inactive_since=now)
        return self

    def with_failures(self, failures: Mapping[str, int]) -> History:
        return replace(self, failures={k: v for k, v in failures.items() if v})

    # -- persistence -----------------------------------------------------------------------
    def to_status(self) -> dict[str, Any]:
        recs: list[dict[str, Any]] = []
        for index, seg in enumerate(self.recommendations):
            item: dict[str, Any] = {"replicas": seg.replicas, "since": fmt_time(seg.since)}
            if index < len(self.recommendations) - 1:
                item["until"] = fmt_time(seg.until)
            recs.append(item)
        result: dict[str, Any] = {
            "recommendations": recs,
            "scaleEvents": [{"time": fmt_time(e.time), "change": e.change} for e in self.scale_events],
            "failures": [{"name": k, "count": v} for k, v in sorted(self.failures.items()) if v],
        }
        if self.inactive_since is not None:
            result["inactiveSince"] = fmt_time(self.inactive_since)
        return result

    @classmethod
    def from_status(cls, raw: Mapping[str, Any] | None, now: datetime.datetime) -> History:
        """Rebuild from ``status.history``; anything malformed is dropped rather than trusted."""
        if not raw:
            return cls()
        segments: list[Segment] = []
        for item in raw.get("recommendations") or []:
            since = parse_time(item.get("since"))
            replicas = item.get("replicas")
            if since is None or not isinstance(replicas, int):
                continue
            until = parse_time(item.get("until")) or now
            segments.append(Segment(replicas, since, max(since, until)))
        events: list[ScaleEvent] = []
        for item in raw.get("scaleEvents") or []:
            moment = parse_time(item.get("time"))
            change = item.get("change")
            if moment is not None and isinstance(change, int):
                events.append(ScaleEvent(moment, change))
        failures = {
            str(item.get("name")): int(item.get("count", 0))
            for item in raw.get("failures") or []
            if isinstance(item.get("count"), int)
        }
        return cls(
            recommendations=tuple(segments),
            scale_events=tuple(events),
            inactive_since=parse_time(raw.get("inactiveSince")),
            failures=failures,
        )
