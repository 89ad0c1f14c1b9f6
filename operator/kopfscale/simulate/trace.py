"""Traces: what each metric read, over time, as the simulator replays it.

Two formats, both read by pure functions of their text (no I/O here but :func:`read`):

- CSV with a header ``time,<metric name>,...``. ``time`` is seconds from the start (``0``, ``15``,
  ``30.5``) or RFC 3339 (``2026-01-05T08:00:00Z``), the same kind on every row, strictly increasing.
  An empty cell is a failed read of that metric at that time.
- The JSON of a Prometheus ``/api/v1/query_range`` response (one series, a ``matrix``); it feeds
  one metric (``--trace-metric``). ``NaN`` samples and gaps longer than the query step are failed
  reads, as an instant query over that gap would have been.

A value holds until the next row (sample-and-hold): a tick at time t reads the last row at or before t.
"""

from __future__ import annotations

import bisect
import csv
import datetime
import io
import itertools
import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kopfscale.scaledapp.history import parse_time
from kopfscale.simulate.errors import InputError

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


@dataclass(frozen=True)
class Trace:
    source: str
    times: tuple[float, ...]  # seconds since ``start``, strictly increasing
    columns: Mapping[str, tuple[float | None, ...]]  # one value per time; None: the read failed
    start: datetime.datetime = EPOCH  # the instant of time 0
    absolute: bool = False  # times were instants (RFC 3339, Unix), not offsets
    notes: tuple[str, ...] = field(default=())

    def index_at(self, offset: float) -> int:
        """The last row at or before ``offset`` (-1 before the first row)."""
        return bisect.bisect_right(self.times, offset + 1e-9) - 1

    @property
    def duration(self) -> float:
        return self.times[-1] - self.times[0] if self.times else 0.0

    def at(self, offset: float) -> datetime.datetime:
        return self.start + datetime.timedelta(seconds=offset)

    def rebased(self, start: datetime.datetime) -> Trace:
        """The same offsets starting at ``start`` (for traces of relative times)."""
        return Trace(self.source, self.times, self.columns, start, self.absolute, self.notes)


def _number(raw: str, where: str) -> float | None:
    text = raw.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{where}: not a number: {raw!r}") from None
    if not math.isfinite(value):
        return None  # NaN/Inf: the policy treats a non-finite reading as a failed read too
    return value


def parse_csv(text: str, source: str = "trace.csv") -> Trace:
    rows = list(csv.reader(io.StringIO(text)))
    numbered = [(n, row) for n, row in enumerate(rows, start=1) if any(cell.strip() for cell in row)]
    if not numbered:
        raise InputError(f"{source}: empty trace (expected a header 'time,<metric>,...')")
    header_line, header = numbered[0]
    names = [h.strip() for h in header]
    if not names or names[0] != "time" or len(names) < 2:
        raise InputError(
            f"{source}:{header_line}: the header must be 'time,<metric name>,...', got {','.join(names)!r}"
        )
    duplicates = [n for n, c in Counter(names).items() if c > 1]
    if duplicates or any(not n for n in names):
        raise InputError(f"{source}:{header_line}: column names must be unique and non-empty: {names}")
    raw_times: list[tuple[int, str]] = []
    values: dict[str, list[float | None]] = {n: [] for n in names[1:]}
    for line, row in numbered[1:]:
        if len(row) > len(names):
            raise InputError(f"{source}:{line}: {len(row)} cells, the header has {len(names)} columns")
        cells = row + [""] * (len(names) - len(row))
        raw_times.append((line, cells[0].strip()))
        for name, cell in zip(names[1:], cells[1:], strict=True):
            values[name].append(_number(cell, f"{source}:{line}: column {name!r}"))
    if not raw_times:
        raise InputError(f"{source}: the trace has a header but no rows")
    times, start, absolute = _times(raw_times, source)
    return Trace(source, times, {k: tuple(v) for k, v in values.items()}, start, absolute)


def _times(raw: Sequence[tuple[int, str]], source: str) -> tuple[tuple[float, ...], datetime.datetime, bool]:
    _first_line, first = raw[0]
    absolute = _is_instant(first)
    offsets: list[float] = []
    start = EPOCH
    for line, text in raw:
        where = f"{source}:{line}: time {text!r}"
        if not text:
            raise InputError(f"{where}: the time cell is empty")
        if absolute:
            moment = parse_time(text) if _is_instant(text) else None
            if moment is None:
                raise InputError(f"{where}: not an RFC 3339 time like the first row's ({first!r})")
            if not offsets:
                start = moment
            offsets.append((moment - start).total_seconds())
        else:
            try:
                offset = float(text)
            except ValueError:
                raise InputError(
                    f"{where}: not a number of seconds like the first row's ({first!r})"
                ) from None
            if not math.isfinite(offset) or offset < 0:
                raise InputError(f"{where}: seconds from the start must be a finite number >= 0")
            offsets.append(offset)
        if len(offsets) > 1 and offsets[-1] <= offsets[-2]:
            raise InputError(f"{where}: times must be strictly increasing")
    return tuple(offsets), start, absolute


def _is_instant(text: str) -> bool:
    return "T" in text or (len(text) >= 10 and text[4:5] == "-" and text[7:8] == "-")


def parse_prometheus(text: str, metric: str, source: str = "trace.json") -> Trace:
    try:
        doc: Any = json.loads(text)
    except ValueError as e:
        raise InputError(f"{source}: not JSON: {e}") from None
    if not isinstance(doc, Mapping) or doc.get("status") != "success":
        detail = doc.get("error") if isinstance(doc, Mapping) else None
        raise InputError(
            f"{source}: not a successful Prometheus response" + (f": {detail}" if detail else "")
        )
    data = doc.get("data")
    if not isinstance(data, Mapping) or data.get("resultType") != "matrix":
        kind = data.get("resultType") if isinstance(data, Mapping) else None
        raise InputError(f"{source}: data.resultType must be 'matrix' (a query_range response), got {kind!r}")
    result = data.get("result")
    if not isinstance(result, list) or len(result) != 1:
        count = len(result) if isinstance(result, list) else 0
        raise InputError(
            f"{source}: data.result has {count} series; the query must return exactly one "
            "(aggregate it, e.g. sum(...), as the ScaledApp's query does)"
        )
    samples = result[0].get("values") if isinstance(result[0], Mapping) else None
    if not isinstance(samples, list) or not samples:
        raise InputError(f"{source}: data.result[0].values is empty")
    points: list[tuple[float, float | None]] = []
    for index, sample in enumerate(samples):
        where = f"{source}: data.result[0].values[{index}]"
        if not isinstance(sample, list) or len(sample) != 2:
            raise InputError(f'{where}: expected [<unix time>, "<value>"]')
        stamp, raw = sample
        if isinstance(stamp, bool) or not isinstance(stamp, int | float):
            raise InputError(f"{where}: the time {stamp!r} is not a Unix timestamp")
        points.append((float(stamp), _number(str(raw), where)))
    points.sort()
    steps = Counter(round(b[0] - a[0], 3) for a, b in itertools.pairwise(points))
    step = steps.most_common(1)[0][0] if steps else 0.0
    times: list[float] = []
    values: list[float | None] = []
    first = points[0][0]
    notes: list[str] = []
    for stamp, value in points:
        if times and step > 0 and stamp - first - times[-1] > 1.5 * step:
            times.append(times[-1] + step)  # a gap: the instant query would have found nothing
            values.append(None)
            notes.append(f"gap before {stamp:.0f}: read as a failed read")
        times.append(stamp - first)
        values.append(value)
    start = datetime.datetime.fromtimestamp(first, datetime.UTC)
    return Trace(source, tuple(times), {metric: tuple(values)}, start, True, tuple(notes))


def looks_like_json(text: str) -> bool:
    return text.lstrip().startswith("{")
