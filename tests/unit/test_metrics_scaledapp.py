"""The per-ScaledApp series: what one round sets, and that a deleted ScaledApp leaves none."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import REGISTRY

from kopfscale import metrics


@dataclass
class Target:
    type: str
    value: float


@dataclass
class Metric:
    name: str
    value: float | None
    target: Target | None
    error: str | None = None


@dataclass
class Decision:
    desired: int
    metrics: tuple[Metric, ...]


@dataclass
class Spec:
    min_replicas: int
    max_replicas: int


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_a_round_sets_the_gauges_and_delete_forgets_them() -> None:
    app = {"namespace": "ns-metrics", "scaledapp": "web"}
    decision = Decision(4, (Metric("rps", 120.0, Target("AverageValue", 50)), Metric("hours", None, None)))
    conditions = [{"type": "Ready", "status": "True"}, {"type": "Fallback", "status": "False"}]
    metrics.record_round("ns-metrics", "web", Spec(1, 10), decision, 3, conditions)
    metrics.record_decision("ns-metrics", "web", 3, 4, "Auto")
    assert sample("kopfscale_scaledapp_replicas", **app) == 3
    assert sample("kopfscale_scaledapp_desired_replicas", **app) == 4
    assert (
        sample("kopfscale_scaledapp_min_replicas", **app),
        sample("kopfscale_scaledapp_max_replicas", **app),
    ) == (1, 10)
    assert sample("kopfscale_scaledapp_metric_value", **app, metric="rps") == 120
    assert sample("kopfscale_scaledapp_metric_target", **app, metric="rps") == 50
    assert sample("kopfscale_scaledapp_metric_value", **app, metric="hours") is None
    assert sample("kopfscale_scaledapp_condition", **app, condition="Ready", status="True") == 1
    assert sample("kopfscale_scaledapp_condition", **app, condition="Ready", status="False") == 0
    assert sample("kopfscale_scaling_decisions_total", **app, direction="up", mode="Auto") == 1
    metrics.record_source_error("ns-metrics", "web", "http")
    metrics.record_source_error("ns-metrics", "web", "http")
    assert sample("kopfscale_metric_source_errors_total", **app, source="http") == 2

    # The metric fails: its value goes (no stale number), its target stays.
    failing = Decision(4, (Metric("rps", None, Target("AverageValue", 50), error="timeout"),))
    metrics.record_round("ns-metrics", "web", Spec(1, 10), failing, 3)
    assert sample("kopfscale_scaledapp_metric_value", **app, metric="rps") is None
    assert sample("kopfscale_scaledapp_metric_target", **app, metric="rps") == 50
    metrics.record_not_ready("ns-metrics", "web")
    assert sample("kopfscale_scaledapp_condition", **app, condition="Ready", status="False") == 1

    metrics.forget("ns-metrics", "web")
    exposed = [
        s
        for family in REGISTRY.collect()
        for s in family.samples
        if s.labels.get("namespace") == "ns-metrics"
    ]
    assert exposed == []


def test_lateness_counts_late_rounds_and_not_early_ones() -> None:
    before = sample("kopfscale_autoscaler_loop_lateness_seconds_count") or 0
    late_before = sample("kopfscale_autoscaler_loop_lateness_seconds_bucket", le="1.0") or 0
    metrics.record_lateness(100.0, None)  # the first round has no due time
    metrics.record_lateness(100.0, 97.0)  # three seconds late
    metrics.record_lateness(100.0, 101.0)  # woken early: not late
    assert (sample("kopfscale_autoscaler_loop_lateness_seconds_count") or 0) - before == 2
    assert (sample("kopfscale_autoscaler_loop_lateness_seconds_bucket", le="1.0") or 0) - late_before == 1
