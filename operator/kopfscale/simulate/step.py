"""TEMPORARY: one autoscaling round as the operator runs it, until ``policy.step`` lands (#10, M2).

Same signature and meaning as the coming ``kopfscale.scaledapp.policy.step``: the decision, with
``decision.history`` already holding the scale event when the mode is Auto and the count changes
(Observe: no scale event). Deleted when the real one is merged.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import replace

from kopfscale.scaledapp import policy
from kopfscale.scaledapp.history import History
from kopfscale.scaledapp.policy import Decision, Reading
from kopfscale.scaledapp.spec import ScaledAppSpec


def step(
    spec: ScaledAppSpec,
    current: int,
    readings: Sequence[Reading],
    history: History,
    *,
    now: datetime.datetime,
    created: datetime.datetime | None = None,
) -> Decision:
    decision = policy.decide(spec, current, readings, history, now=now, created=created)
    if spec.mode == "Auto" and decision.desired != current:
        history = decision.history.record_scale_event(
            now, decision.desired - current, policy.keep_seconds(spec)[1]
        )
        decision = replace(decision, history=history)
    return decision
