"""The live shadow (#13 part 2): kopfscale in mode Observe beside the real HPA and KEDA.

Three pairs at once on the session's control plane with KEDA (bench/shadow, the short trace,
about two minutes): an HPA on CPU without ``behavior``, and KEDA ``metrics-api`` triggers
(AverageValue with fallback, Value with an unready Pod and fallback), each beside a ScaledApp in
mode Observe on the same Pods. Every peer decision is paired with kopfscale's decision on the same
inputs; a divergence that is neither timing nor a documented improvement is a kopfscale bug, and
there must be none. ``make shadow`` runs the longer trace and writes bench/results/shadow.*.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from bench.shadow import live, report, scenarios
from bench.shadow.analyse import analyse
from kopf.testing import KopfRunner

from tests.conftest import Cluster

pytestmark = pytest.mark.integration


def test_observe_mode_decides_as_the_hpa_and_keda_do(
    peers: Cluster, namespace: str, operator: KopfRunner, tmp_path: Path
) -> None:
    chosen = scenarios.short()
    recordings = asyncio.run(live.run(peers.kubeconfig, namespace, chosen))
    results = [analyse(s, recordings[s.name]) for s in chosen]
    meta = {"command": "pytest tests/integration/test_shadow.py", "trace": "short", "seconds": 110}
    text = report.markdown(results, meta)
    (tmp_path / "shadow.md").write_text(text)
    report.write_json(tmp_path / "shadow.json", results, recordings, meta)
    print(text)

    for r in results:
        counts = r.counts()
        rec = recordings[r.scenario.name]
        # On the very Deployment the peer scales: an observer conflicts with nobody, and says beside whom.
        ready = next(c for c in rec.scaledapp[-1][1]["conditions"] if c["type"] == "Ready")
        peer = "HorizontalPodAutoscaler" if r.scenario.peer == "hpa" else "ScaledObject"
        assert ready["status"] == "True", ready
        assert f"beside the {peer} {r.scenario.name} that scales it" in ready["message"], ready
        # The peers really scaled, and both sides decided throughout: a comparison, not a no-op.
        assert len({spec for _, spec, _ in rec.workload}) >= 3, f"{r.scenario.name}: the peer hardly scaled"
        assert counts["paired"] >= 5, f"{r.scenario.name}: too few decisions compared: {counts}"
        assert counts["paired"] >= counts["peer decisions"] / 2, (
            f"{r.scenario.name}: mostly unpaired: {counts}"
        )
        if r.scenario.fallback is not None:  # the onset: the threshold-th failure and the next
            threshold = r.scenario.fallback[0]
            compared = {f.kopf.failures for f in r.fallback}
            assert {threshold, threshold + 1} <= compared, f"{r.scenario.name}: fallback counts {compared}"

    bugs = [(r.scenario.name, v) for r in results for v in r.bugs]
    assert not bugs, "kopfscale decided otherwise than its peer on the same inputs:\n" + "\n".join(
        f"- {name}: {v.rule}: {v.why}" + (f" (known: {v.known})" if v.known else "") for name, v in bugs
    )
