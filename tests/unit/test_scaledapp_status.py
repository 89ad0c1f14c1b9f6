"""Status building, history persistence, spec defaults and the owned Deployment manifest (all pure)."""

from __future__ import annotations

import datetime

import pytest

from kopfscale.kube.status import merge_patch_between
from kopfscale.scaledapp import status as st
from kopfscale.scaledapp.deployment import deployment_manifest, template_hash
from kopfscale.scaledapp.history import History
from kopfscale.scaledapp.spec import SpecError, parse

from .test_scaledapp_policy import NOW, make, once, seconds, value_metric


def test_spec_defaults_follow_the_hpa_and_keda() -> None:
    spec = parse({"template": {"spec": {"containers": []}}, "maxReplicas": 5, "metrics": [value_metric()]})
    assert (spec.min_replicas, spec.polling_interval, spec.cooldown_period, spec.mode) == (1, 15, 300, "Auto")
    up, down = spec.behavior.scale_up, spec.behavior.scale_down
    assert (up.stabilization_window_seconds, down.stabilization_window_seconds) == (0, 300)
    assert [(p.type, p.value, p.period_seconds) for p in up.policies] == [
        ("Percent", 100, 15),
        ("Pods", 4, 15),
    ]
    assert [(p.type, p.value, p.period_seconds) for p in down.policies] == [("Percent", 100, 15)]
    assert up.tolerance == down.tolerance == 0.1


@pytest.mark.parametrize(
    "bad",
    [
        {"maxReplicas": 5, "metrics": [value_metric()]},
        {"template": {}, "scaleTargetRef": {"name": "x"}, "maxReplicas": 5, "metrics": [value_metric()]},
        {"template": {}, "minReplicas": 6, "maxReplicas": 5, "metrics": [value_metric()]},
        {"template": {}, "maxReplicas": 5, "metrics": []},
        {"template": {}, "maxReplicas": 5, "metrics": [{"name": "x", "type": "kafka"}]},
        {"template": {}, "maxReplicas": 5, "metrics": [{"name": "x", "type": "http"}]},
    ],
)
def test_spec_errors(bad: dict[str, object]) -> None:
    with pytest.raises(SpecError):
        parse(bad)


def test_history_round_trips_through_status_and_only_changes_on_new_segments() -> None:
    h = History()
    h = h.record_recommendation(NOW, 3, 300)
    first = h.to_status()
    h = h.record_recommendation(NOW + seconds(15), 3, 300)
    assert h.to_status() == first  # the same recommendation again: nothing new to write
    h = h.record_recommendation(NOW + seconds(30), 5, 300)
    h = h.record_scale_event(NOW + seconds(30), 2, 60).with_activity(NOW, False)
    restored = History.from_status(h.to_status(), NOW + seconds(40))
    assert [(s.replicas, s.until) for s in restored.recommendations] == [
        (3, NOW + seconds(15)),
        (5, NOW + seconds(40)),  # the open segment counts as seen until the load time
    ]
    assert restored.scale_events == h.scale_events
    assert restored.inactive_since == NOW
    pruned = restored.record_recommendation(NOW + seconds(400), 5, 300)
    assert [s.replicas for s in pruned.recommendations] == [5]


def test_status_reports_metrics_decision_and_conditions() -> None:
    spec = make([value_metric("a"), value_metric("b")], fallback={"failureThreshold": 1, "replicas": 4})
    first = once(spec, 2, {"a": 150, "b": "HTTP 500"})
    conds = {c["type"]: c for c in st.decision_conditions(first, spec, 7, NOW)}
    assert (conds["Fallback"]["status"], conds["Fallback"]["reason"]) == ("False", "MetricsFailing")
    assert conds["Fallback"]["message"] == "b failed 1 time(s) in a row"
    d = once(spec, 2, {"a": 150, "b": "HTTP 500"}, first.history)  # the 2nd failure exceeds 1
    metrics = [st.metric_status(m) for m in d.metrics]
    assert metrics[0] == {
        "name": "a",
        "type": "http",
        "target": {"type": "Value", "value": 100},
        "value": 150,
        "ratio": 1.5,
        "pods": 2,  # the ready Pods the ratio multiplied (here: every replica, as none is known)
        "recommendation": 3,
        "active": True,
    }
    assert metrics[1]["error"] == "HTTP 500" and metrics[1]["fallback"] is True
    conds = {c["type"]: c for c in st.decision_conditions(d, spec, 7, NOW)}
    assert conds["Fallback"]["status"] == "True" and conds["Fallback"]["reason"] == "FallbackActive"
    assert conds["Fallback"]["message"] == (
        "b failed more than fallback.failureThreshold=1 times in a row; counting as fallback.replicas=4"
    )
    assert conds["Active"]["status"] == "True"
    assert conds["Paused"]["status"] == "False"
    assert all(c["observedGeneration"] == 7 for c in conds.values())
    decision = st.decision_status(d)
    assert (decision["from"], decision["to"], decision["drivingMetric"]) == (2, 4, "b")


def test_status_is_written_only_when_something_changed() -> None:
    spec = make()
    d = once(spec, 2, {"m": 150})
    fields = {"replicas": 2, "desiredReplicas": d.desired, "lastDecision": st.decision_status(d)}
    first = st.compose(
        {}, generation=1, now=NOW, conditions=st.decision_conditions(d, spec, 1, NOW), fields=fields
    )
    later = NOW + datetime.timedelta(seconds=15)
    again = st.compose(
        first, generation=1, now=later, conditions=st.decision_conditions(d, spec, 1, later), fields=fields
    )
    assert not st.changed(first, again)
    moved = st.compose(first, generation=1, now=later, conditions=[], fields={**fields, "replicas": 3})
    assert st.changed(first, moved)
    assert merge_patch_between(first, moved) == {"replicas": 3}
    assert merge_patch_between({"history": {"inactiveSince": "x", "a": 1}}, {"history": {"a": 1}}) == {
        "history": {"inactiveSince": None}
    }


def test_entries_aging_out_of_history_wait_for_a_write_with_something_to_say() -> None:
    h = History().record_recommendation(NOW, 3, 60).record_scale_event(NOW, 2, 60)
    h = h.record_recommendation(NOW + seconds(30), 5, 60).record_scale_event(NOW + seconds(30), 2, 60)
    settled = {"replicas": 5, "history": h.to_status()}
    aged = h.record_recommendation(NOW + seconds(100), 5, 60).record_scale_event(NOW + seconds(80), 0, 60)
    assert len(aged.recommendations) == 1 and len(aged.scale_events) == 1  # the first of each aged out
    pruned = {**settled, "history": aged.to_status()}
    assert st.changed(settled, pruned) and not st.worth_writing(settled, pruned)
    assert st.worth_writing(settled, {**pruned, "replicas": 6})  # with news, the prune goes along
    grown = aged.record_recommendation(NOW + seconds(100), 7, 60)
    assert st.worth_writing(settled, {**settled, "history": grown.to_status()})
    failing = {**settled, "history": {**aged.to_status(), "failures": [{"name": "m", "count": 1}]}}
    assert st.worth_writing(settled, failing)


def test_the_owned_deployment_selects_its_pods_by_the_scaledapp_name() -> None:
    template = {
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "nginx"}]},
    }
    manifest = deployment_manifest("web", "ns", template, 1)
    assert manifest["spec"]["selector"] == {"matchLabels": {"kopfscale.dev/scaledapp": "web"}}
    assert manifest["spec"]["template"]["metadata"]["labels"] == {
        "app": "web",
        "kopfscale.dev/scaledapp": "web",
    }
    assert manifest["metadata"]["annotations"]["kopfscale.dev/template-hash"] == template_hash(
        manifest["spec"]["template"]
    )
    assert template == {
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "nginx"}]},
    }
