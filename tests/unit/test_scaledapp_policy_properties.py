"""Properties of the scaling policy that must hold for any input (hypothesis)."""

from __future__ import annotations

import datetime
from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kopfscale.scaledapp.history import History
from kopfscale.scaledapp.policy import decide, keep_seconds
from kopfscale.scaledapp.spec import Behavior, ScaledAppSpec, parse

from .test_scaledapp_policy import NOW, R, value_metric

target_types = st.sampled_from(["Value", "AverageValue"])
values = st.one_of(
    st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False),
    st.sampled_from(["timeout", "HTTP 500"]),
)


@st.composite
def policies(draw: st.DrawFn) -> list[dict[str, Any]]:
    return draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "type": st.sampled_from(["Pods", "Percent"]),
                    "value": st.integers(1, 300),
                    "periodSeconds": st.integers(1, 600),
                }
            ),
            min_size=1,
            max_size=3,
        )
    )


@st.composite
def specs(draw: st.DrawFn) -> ScaledAppSpec:
    min_replicas = draw(st.integers(0, 20))
    max_replicas = draw(st.integers(max(min_replicas, 1), 60))
    n = draw(st.integers(1, 3))
    metrics = [
        value_metric(
            f"m{i}",
            target=draw(st.floats(0.5, 1000)),
            type_=draw(target_types),
            activationThreshold=draw(st.floats(0, 50)),
        )
        for i in range(n)
    ]
    rules = {
        direction: {
            "stabilizationWindowSeconds": draw(st.integers(0, 600)),
            "selectPolicy": draw(st.sampled_from(["Max", "Min", "Disabled"])),
            "policies": draw(policies()),
            "tolerance": draw(st.floats(0, 0.5)),
        }
        for direction in ("scaleUp", "scaleDown")
    }
    raw: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x"},
        "minReplicas": min_replicas,
        "maxReplicas": max_replicas,
        "metrics": metrics,
        "cooldownPeriod": draw(st.integers(0, 600)),
        "behavior": rules,
    }
    if draw(st.booleans()):
        raw["fallback"] = {
            "failureThreshold": draw(st.integers(1, 4)),
            "replicas": draw(st.integers(min_replicas, max_replicas)),
        }
    return parse(raw)


def run(
    spec: ScaledAppSpec, replicas: int, steps: list[tuple[int, list[float | str]]]
) -> list[tuple[datetime.datetime, int, int]]:
    """Simulate Auto mode; returns the log of (time, from, to) for every step."""
    history, now, log = History(), NOW, []
    for gap, vals in steps:
        now += datetime.timedelta(seconds=gap)
        readings = [
            R(m.name, error=v) if isinstance(v, str) else R(m.name, value=v)
            for m, v in zip(spec.metrics, vals, strict=False)
        ]
        d = decide(spec, replicas, readings, history, now=now, created=NOW)
        history = d.history
        if d.desired != replicas:
            history = history.record_scale_event(now, d.desired - replicas, keep_seconds(spec)[1])
        log.append((now, replicas, d.desired))
        replicas = d.desired
    return log


step_lists = st.lists(
    st.tuples(st.integers(1, 120), st.lists(values, min_size=3, max_size=3)), min_size=1, max_size=25
)


@settings(max_examples=300, deadline=None)
@given(spec=specs(), start=st.integers(0, 80), steps=step_lists)
def test_never_outside_min_max(spec: ScaledAppSpec, start: int, steps: list[Any]) -> None:
    for _, _before, after in run(spec, start, steps):
        assert spec.min_replicas <= after <= spec.max_replicas


@settings(max_examples=300, deadline=None)
@given(spec=specs(), current=st.integers(1, 60), data=st.data())
def test_no_change_inside_the_tolerance(spec: ScaledAppSpec, current: int, data: st.DataObject) -> None:
    if not spec.min_replicas <= current <= spec.max_replicas:
        return
    up, down = spec.behavior.scale_up.tolerance, spec.behavior.scale_down.tolerance
    readings = []
    for m in spec.metrics:
        assert m.target is not None
        ratio = data.draw(st.floats(1 - down, 1 + up))
        per_pod = m.target.value * ratio
        value = per_pod * current if m.target.type == "AverageValue" else per_pod
        if value <= m.activation_threshold:
            return  # inactive metrics decide 0 <-> 1, not the tolerance
        readings.append(R(m.name, value=value))
    history = History().record_recommendation(NOW - datetime.timedelta(seconds=30), current, 600)
    d = decide(spec, current, readings, history, now=NOW)
    assert d.desired == current, d.explanation


@settings(max_examples=300, deadline=None)
@given(spec=specs(), start=st.integers(1, 80), steps=step_lists)
def test_a_scale_down_never_exceeds_what_the_policies_allow(
    spec: ScaledAppSpec, start: int, steps: list[Any]
) -> None:
    """Checked on the log, independently of the implementation's bookkeeping."""
    log = run(spec, start, steps)
    rules = spec.behavior.scale_down
    for index, (now, before, after) in enumerate(log):
        if after >= before or before > spec.max_replicas:  # above max: bounds first, as in the HPA
            continue
        if spec.min_replicas > 0 and before < spec.min_replicas:
            continue
        assert rules.select_policy != "Disabled"
        allowed: list[int] = []
        for p in rules.policies:
            # The count at the start of the period: undo every change made within it.
            cutoff = now - datetime.timedelta(seconds=p.period_seconds)
            period_start = before - sum(a - b for t, b, a in log[:index] if t > cutoff)
            floor = period_start - p.value if p.type == "Pods" else int(period_start * (1 - p.value / 100))
            allowed.append(floor)
        limit = min(allowed) if rules.select_policy == "Max" else max(allowed)
        assert after >= min(limit, before), (before, after, limit)


@st.composite
def legacy_specs(draw: st.DrawFn) -> ScaledAppSpec:
    """Specs without `behavior`: the HPA controller's legacy rule applies."""
    spec = draw(specs())
    return replace(spec, behavior=replace(Behavior(), legacy=True))


@settings(max_examples=300, deadline=None)
@given(spec=legacy_specs(), start=st.integers(1, 80), steps=step_lists)
def test_without_behavior_a_round_never_scales_up_beyond_twice_or_four(
    spec: ScaledAppSpec, start: int, steps: list[Any]
) -> None:
    """horizontal.go calculateScaleUpLimit: max(2 x current, 4), whatever happened before."""
    for _, before, after in run(spec, start, steps):
        if before < spec.min_replicas or before > spec.max_replicas:
            continue  # bounds first, as in the HPA
        assert after <= max(2 * before, 4), (before, after)
