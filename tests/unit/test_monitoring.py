"""The monitoring pack (deploy/monitoring/, docs/runbooks.md, the chart's opt-in objects) is
checked against what the operator exports: promtool accepts the rules and their unit tests pass,
every alert links a complete runbook section, the dashboard only queries exported series, and
the chart's PrometheusRule is the same rules file."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

import kopfscale.metrics  # noqa: F401  (registers the operator's series)
from kopfscale_devcluster.binaries import REPO_ROOT
from tests.unit.test_chart import CHART, objects, render

MONITORING = REPO_ROOT / "deploy" / "monitoring"
RULES_FILE = MONITORING / "rules.yaml"
RULES = yaml.safe_load(RULES_FILE.read_text())
DASHBOARD = json.loads((MONITORING / "dashboard.json").read_text())
RUNBOOKS = (REPO_ROOT / "docs" / "runbooks.md").read_text()
ALERTS = [rule for group in RULES["groups"] for rule in group["rules"] if "alert" in rule]

REQUIRED_ALERTS = {
    "KopfscaleOperatorDown",  # operator down
    "KopfscaleReconcileErrors",  # reconcile errors
    "KopfscaleScaledAppFallbackActive",  # metrics fail, fallback active
    "KopfscaleScaledAppAtMaxReplicas",  # at maxReplicas for long
    "KopfscaleScaledAppFlapping",  # flapping
    "KopfscaleAutoscalingLate",  # loop lateness
}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:  # demanded, never skipped: .ci/run installs it
        pytest.fail("promtool is missing: install Debian's prometheus package (apt-get install prometheus)")
    return found


def exported_series() -> set[str]:
    """Every sample name the operator's registry can expose (counters as _total, histograms'
    _bucket/_sum/_count), whether or not a child exists yet."""
    names: set[str] = set()
    for family in REGISTRY.collect():
        if not family.name.startswith("kopfscale_"):
            continue
        if family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        elif family.type == "histogram":
            names |= {f"{family.name}_{s}" for s in ("bucket", "sum", "count", "created")}
        else:
            names.add(family.name)
    return names


def series_in(expr: str) -> set[str]:
    return set(re.findall(r"\bkopfscale_[a-z0-9_]+", expr))


def dashboard_exprs() -> list[str]:
    exprs = [t["expr"] for p in DASHBOARD["panels"] for t in p["targets"]]
    exprs += [v["definition"] for v in DASHBOARD["templating"]["list"] if v.get("definition")]
    return exprs


def github_anchor(heading: str) -> str:
    return re.sub(r"[^a-z0-9 _-]", "", heading.strip().lower()).replace(" ", "-")


def runbook_sections() -> dict[str, str]:
    parts = re.split(r"^## (.+)$", RUNBOOKS, flags=re.M)
    return {github_anchor(parts[i]): parts[i + 1] for i in range(1, len(parts), 2)}


def test_promtool_accepts_the_rules() -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", str(RULES_FILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(RULES['groups'][0]['rules']) + len(RULES['groups'][1]['rules'])} rules found" in (
        result.stdout + result.stderr
    )


def test_the_alerts_fire_on_the_series_the_operator_exports() -> None:
    """promtool's rule unit tests: each alert fires on sample series, and a healthy set is quiet."""
    tests = Path(__file__).parent / "monitoring" / "rules_test.yaml"
    result = subprocess.run(
        [promtool(), "test", "rules", tests.name],
        cwd=tests.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_required_alerts_exist() -> None:
    assert {a["alert"] for a in ALERTS} >= REQUIRED_ALERTS


@pytest.mark.parametrize("alert", ALERTS, ids=[a["alert"] for a in ALERTS])
def test_each_alert_links_a_complete_runbook_section(alert: dict[str, Any]) -> None:
    url = alert["annotations"]["runbook_url"]
    assert url == f"docs/runbooks.md#{alert['alert'].lower()}"
    section = runbook_sections().get(url.split("#", 1)[1])
    assert section is not None, f"docs/runbooks.md has no section for {alert['alert']}"
    for part in ("**Symptom.**", "**Likely causes.**", "**Confirm.**", "**Fix.**"):
        assert part in section, f"{alert['alert']}: the runbook lacks {part}"
    assert "```bash" in section and "kubectl " in section
    assert alert["annotations"]["summary"] and alert["labels"]["severity"] in {"critical", "warning", "info"}


def test_rules_and_dashboard_use_only_exported_series() -> None:
    exported = exported_series()
    used_by_rules = set().union(*(series_in(a["expr"]) for a in ALERTS))
    used_by_dashboard = set().union(*(series_in(e) for e in dashboard_exprs()))
    assert used_by_rules - exported == set()
    assert used_by_dashboard - exported == set()
    # The per-ScaledApp gauges and the lateness histogram are what the pack is built on.
    assert {
        "kopfscale_scaledapp_replicas",
        "kopfscale_scaledapp_desired_replicas",
        "kopfscale_scaledapp_max_replicas",
        "kopfscale_scaledapp_condition",
        "kopfscale_autoscaler_loop_lateness_seconds_bucket",
        "kopfscale_scaling_decisions_total",
    } <= used_by_rules


def test_the_dashboard_has_the_panels_an_on_call_engineer_needs() -> None:
    titles = {p["title"] for p in DASHBOARD["panels"]}
    assert {
        "Replicas vs desired",
        "Metric value vs target",
        "Scaling decisions per minute",
        "Errors per minute",
        "Autoscaling loop lateness",
    } <= titles
    used = " ".join(dashboard_exprs())
    for name in ("kopfscale_scaledapp_replicas", "kopfscale_scaledapp_desired_replicas",
                 "kopfscale_scaledapp_metric_value", "kopfscale_scaledapp_metric_target",
                 "kopfscale_scaling_decisions_total", "kopfscale_metric_source_errors_total",
                 "kopfscale_autoscaler_loop_lateness_seconds_bucket"):  # fmt: skip
        assert name in used
    for panel in DASHBOARD["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)) and ref_ids
    assert [v["name"] for v in DASHBOARD["templating"]["list"]] == ["datasource", "namespace", "scaledapp"]


def test_the_chart_ships_the_same_rules_file() -> None:
    assert (CHART / "files" / "rules.yaml").read_bytes() == RULES_FILE.read_bytes(), "run make chart-files"


def test_the_chart_renders_servicemonitor_and_prometheusrule_only_when_asked() -> None:
    assert not [o for o in objects(render()) if o["kind"] in ("ServiceMonitor", "PrometheusRule")]
    rendered = objects(
        render(
            "--set", "monitoring.serviceMonitor.enabled=true",
            "--set", "monitoring.prometheusRule.enabled=true",
            "--set", "monitoring.serviceMonitor.labels.release=prom",
        )
    )  # fmt: skip
    (monitor,) = [o for o in rendered if o["kind"] == "ServiceMonitor"]
    (service,) = [
        o for o in rendered if o["kind"] == "Service" and o["metadata"]["name"].endswith("-metrics")
    ]
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    (rule,) = [o for o in rendered if o["kind"] == "PrometheusRule"]
    assert rule["spec"]["groups"] == RULES["groups"]


def test_the_chart_points_runbook_urls_at_the_given_base() -> None:
    base = "https://git.example.com/ops/kopfscale/blob/main/docs/runbooks.md"
    rendered = objects(
        render(
            "--set", "monitoring.prometheusRule.enabled=true", "--set", f"monitoring.runbookBaseUrl={base}"
        )
    )
    (rule,) = [o for o in rendered if o["kind"] == "PrometheusRule"]
    urls = [r["annotations"]["runbook_url"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert urls and all(u.startswith(base + "#") for u in urls)


def test_a_servicemonitor_without_the_metrics_service_is_refused() -> None:
    from tests.unit.test_chart import helm

    result = helm(
        "template", "kopfscale", str(CHART), "--set", "monitoring.serviceMonitor.enabled=true",
        "--set", "metrics.service.enabled=false", check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "monitoring.serviceMonitor.enabled needs metrics.enabled" in result.stderr
