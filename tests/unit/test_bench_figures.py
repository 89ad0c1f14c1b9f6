"""The benchmark's pure figures (bench/figures.py): what a printed number means."""

from __future__ import annotations

import math

import kopf
import pytest
from bench import census, figures, floor, mirror

METRICS = """\
# HELP kopfscale_autoscaler_loop_lateness_seconds How late.
# TYPE kopfscale_autoscaler_loop_lateness_seconds histogram
kopfscale_autoscaler_loop_lateness_seconds_bucket{le="0.1"} 50.0
kopfscale_autoscaler_loop_lateness_seconds_bucket{le="1.0"} 99.0
kopfscale_autoscaler_loop_lateness_seconds_bucket{le="+Inf"} 100.0
kopfscale_autoscaler_loop_lateness_seconds_count 100.0
kopfscale_autoscaler_loop_lateness_seconds_sum 12.5
rest_client_requests_total{code="200",host="x",method="GET"} 7
rest_client_requests_total{code="201",host="x",method="POST"} 2
rest_client_requests_total{code="404",host="x",method="GET"} 1
"""


def test_histogram_is_read_cumulative_with_inf_last() -> None:
    buckets = figures.histogram(METRICS, "kopfscale_autoscaler_loop_lateness_seconds")
    assert buckets == [(0.1, 50.0), (1.0, 99.0), (math.inf, 100.0)]
    assert figures.histogram(METRICS, "absent_metric") == []


def test_quantile_interpolates_within_a_bucket_like_prometheus() -> None:
    buckets = [(0.1, 50.0), (1.0, 99.0), (math.inf, 100.0)]
    assert figures.histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    # rank 75 lies halfway (25 of 49) between 0.1 and 1.0
    assert figures.histogram_quantile(0.75, buckets) == pytest.approx(0.1 + 0.9 * 25 / 49)
    assert figures.histogram_quantile(0.995, buckets) == 1.0  # in +Inf: the highest finite bound
    assert math.isnan(figures.histogram_quantile(0.5, []))


def test_share_within_a_bucket_edge_is_exact() -> None:
    buckets = [(0.1, 50.0), (1.0, 99.0), (math.inf, 100.0)]
    assert figures.fraction_within(buckets, 1.0) == pytest.approx(0.99)


def test_delta_between_scrapes() -> None:
    before = [(0.1, 10.0), (math.inf, 10.0)]
    after = [(0.1, 15.0), (math.inf, 20.0)]
    assert figures.bucket_delta(after, before) == [(0.1, 5.0), (math.inf, 10.0)]


def test_counter_by_label_sums_the_other_labels() -> None:
    assert figures.counter_by_label(METRICS, "rest_client_requests_total", "method") == {
        "GET": 8.0,
        "POST": 2.0,
    }


def test_slope_of_a_line_and_of_the_tail() -> None:
    flat_then_rising = [(float(x), 100.0) for x in range(10)] + [
        (float(x), 100.0 + (x - 9)) for x in range(10, 15)
    ]
    assert figures.slope([(0.0, 1.0), (1.0, 3.0), (2.0, 5.0)]) == pytest.approx(2.0)
    assert figures.slope(figures.tail(flat_then_rising, 4)) == pytest.approx(1.0)
    assert math.isnan(figures.slope([(1.0, 1.0)]))


def test_writes_per_object_keep_only_writes() -> None:
    by_key = {"POST deployments": 300, "PATCH greeters/status": 450, "LIST greeters": 3, "WATCH services": 1}
    per = figures.writes_per_object(by_key, 300)
    assert per == {"PATCH greeters/status": 1.5, "POST deployments": 1.0, "total": 2.5}
    assert figures.writes_per_object(by_key, 0) == {}


def greeter(ready: int, replicas: int, condition: str) -> dict[str, object]:
    return {
        "status": {
            "readyReplicas": ready,
            "replicas": replicas,
            "conditions": [{"type": "Ready", "status": condition}],
        }
    }


def deployment(ready: int, replicas: int = 1, spec: int = 1) -> dict[str, object]:
    return {
        "spec": {"replicas": spec},
        "status": {"readyReplicas": ready, "replicas": replicas, "updatedReplicas": replicas},
    }


def test_greeter_status_agrees_or_says_why_not() -> None:
    assert figures.greeter_staleness(greeter(1, 1, "True"), deployment(1)) is None
    assert (
        figures.greeter_staleness(greeter(0, 1, "False"), deployment(1))
        == "readyReplicas 0 != Deployment's 1"
    )
    assert "Ready=True" in str(figures.greeter_staleness(greeter(0, 1, "True"), deployment(0)))
    assert (
        figures.greeter_staleness(greeter(0, 0, "False"), None) is None
    )  # no child yet: nothing to agree with


def test_scaledapp_status_replicas_against_the_deployment() -> None:
    app = {"status": {"replicas": 1}}
    assert figures.scaledapp_staleness(app, {"spec": {"replicas": 1}}) is None
    assert figures.scaledapp_staleness(app, {"spec": {"replicas": 2}}) is not None


def test_the_floor_has_kopfscale_settings() -> None:
    """If kopfscale's kopf settings change (operator/kopfscale/app.py ``configure``), the footprint floor
    must follow (bench/floor.py ``configure``): the bench prints any difference, this says it first."""
    assert mirror.floor_differences(mirror.kopfscale_mirror()) == []


def test_a_differing_setting_is_named() -> None:
    ours, theirs = kopf.OperatorSettings(), kopf.OperatorSettings()
    floor.configure(ours, floor.DEFAULT_MIRROR)
    floor.configure(theirs, floor.DEFAULT_MIRROR)
    theirs.watching.server_timeout = 42
    differences = figures.settings_differences(
        figures.settings_fingerprint(ours), figures.settings_fingerprint(theirs)
    )
    assert differences == ["watching.server_timeout: 300 vs 42"]


def test_the_mirror_names_every_kopfscale_watch_and_index() -> None:
    m = mirror.kopfscale_mirror()
    plurals = {plural for _, _, plural in m["watches"]}
    assert {"greeters", "scaledapps", "deployments", "services"} <= plurals
    assert len(m["indexes"]) == len(m["index_names"]) > 0
    assert all(not name.startswith("floor") for name in m["index_names"])


def test_census_per_object_divides_the_growth() -> None:
    before = {"by_type_all": {"dict": [10, 1000], "str": [5, 100]}}
    after = {"by_type_all": {"dict": [30, 3000], "str": [5, 100], "Memo": [2, 200]}}
    rows = census.per_object(before, after, 2)
    assert rows[0] == ("dict", 10.0, 1000.0)
    assert ("Memo", 1.0, 100.0) in rows


def test_the_floor_takes_kopfscale_plain_settings_from_the_mirror() -> None:
    """A timeout or worker count kopfscale changes reaches the floor without an edit of bench/floor.py."""
    m = {**floor.DEFAULT_MIRROR, "settings": {"watching.server_timeout": 99, "queueing.error_delays": [1, 2]}}
    settings = kopf.OperatorSettings()
    floor.configure(settings, m)
    assert settings.watching.server_timeout == 99
    assert list(settings.queueing.error_delays) == [1, 2]
    assert "peering.standalone" not in figures.plain_settings(settings)  # the command line's, not configure's
