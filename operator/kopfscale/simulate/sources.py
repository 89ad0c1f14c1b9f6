"""Simulated metric reads: trace columns for every metric, the tick clock for cron windows.

A cron metric without a column of its own is evaluated by the cron source's own pure window
function at the tick's time (never a copy of it), so the simulator and the operator agree on
every DST edge. Every other metric reads its column of the trace; an empty cell is a failed read.
"""

from __future__ import annotations

import datetime

from kopfscale.scaledapp.sources import MetricReading
from kopfscale.scaledapp.sources import cron as cron_source
from kopfscale.scaledapp.spec import MetricSpec
from kopfscale.simulate.trace import Trace

NO_VALUE = "trace: no value (a failed read)"


def from_clock(metric: MetricSpec, trace: Trace) -> bool:
    """Whether the metric is computed from the tick clock rather than read from a column."""
    return metric.source.scaler is cron_source.SCALER and metric.name not in trace.columns


def read(metric: MetricSpec, trace: Trace, index: int, now: datetime.datetime) -> MetricReading:
    if from_clock(metric, trace):
        # The config the cron scaler parsed with the spec, evaluated by its own window function.
        return MetricReading(name=metric.name, value=cron_source.window_value(metric.source.config, now))
    value = trace.columns[metric.name][index] if index >= 0 else None
    if value is None:
        return MetricReading(name=metric.name, error=NO_VALUE)
    return MetricReading(name=metric.name, value=value)
