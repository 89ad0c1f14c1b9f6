"""``make shadow``: kopfscale in mode Observe beside the HPA and KEDA, and the report of both timelines.

    python -m bench.shadow                 # the full trace (about 7 minutes) on a fresh control plane
    python -m bench.shadow --short         # the test's trace (about 2 minutes)
    python -m bench.shadow --kubeconfig .cluster/kubeconfig   # reuse `make cluster-up PEERS=1`
    python -m bench.shadow --from bench/results/shadow.json   # classify a recorded run again

Writes bench/results/shadow.md, shadow.png and shadow.json (``--out`` elsewhere). Exits 1 when
a divergence is a kopfscale bug (the report says which and why), 0 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench import common
from bench.shadow import report, scenarios
from bench.shadow.analyse import analyse
from bench.shadow.model import Recording

from kopfscale_devcluster import LocalCluster
from kopfscale_devcluster.binaries import locate

BIN = Path(sys.executable).parent


def _versions() -> dict[str, str]:
    env = (common.REPO / "tools/controlplane/versions.env").read_text().splitlines()
    pairs = dict(line.split("=", 1) for line in env if "=" in line and not line.startswith("#"))
    return {"kubernetes": pairs.get("KUBERNETES_VERSION", "?"), "keda": pairs.get("KEDA_VERSION", "?")}


def _commit() -> str:
    result = subprocess.run(
        ["git", "describe", "--always", "--dirty"],
        cwd=common.REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() or "?"


def _kubectl(kubeconfig: Path, *args: str) -> None:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    env["PATH"] = os.pathsep.join([*map(str, locate().bin_dirs), env.get("PATH", "")])
    result = subprocess.run(
        ["kubectl", *args], env=env, capture_output=True, text=True, check=False, timeout=120
    )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)}: {result.stderr}")


def record(chosen: list[scenarios.Scenario], kubeconfig: Path | None) -> dict[str, Recording]:
    """Run the scenarios on a control plane (a fresh one with KEDA unless ``kubeconfig``) with
    kopfscale started as ``kopfscale run`` for one namespace; their recordings."""
    cluster: LocalCluster | None = None
    operator: subprocess.Popen[bytes] | None = None
    namespace = f"shadow-{uuid.uuid4().hex[:6]}"
    try:
        if kubeconfig is None:
            print("shadow: starting a local control plane with KEDA ...", flush=True)
            cluster = LocalCluster(peers=True).start()
            kubeconfig = cluster.kubeconfig
            print(f"shadow: control plane ready in {cluster.timings['ready']:.1f} s", flush=True)
        crds = [a for f in sorted((common.REPO / "crds").glob("*.yaml")) for a in ("-f", str(f))]
        _kubectl(kubeconfig, "apply", "--server-side", "--force-conflicts", *crds)
        _kubectl(kubeconfig, "wait", "--for=condition=Established", "--timeout=60s", *crds)
        _kubectl(kubeconfig, "create", "namespace", namespace)
        log = Path(tempfile.mkdtemp(prefix="kopfscale-shadow-")) / "kopfscale.log"
        operator = common.spawn(
            [str(BIN / "kopfscale"), "run", "--standalone", "--namespace", namespace],
            log,
            env={"KUBECONFIG": str(kubeconfig), "PYTHONUNBUFFERED": "1"},
        )
        print(f"shadow: kopfscale runs in namespace {namespace} (log {log})", flush=True)
        from bench.shadow import live

        return asyncio.run(live.run(kubeconfig, namespace, chosen, log=lambda line: print(line, flush=True)))
    finally:
        if operator is not None:
            common.stop(operator)
        if cluster is not None:
            cluster.stop()
        elif kubeconfig is not None:
            _kubectl(kubeconfig, "delete", "namespace", namespace, "--wait=false")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--short", action="store_true", help="the test's short trace")
    parser.add_argument(
        "--kubeconfig", type=Path, help="reuse a running control plane with KEDA (make cluster-up PEERS=1)"
    )
    parser.add_argument(
        "--from", dest="source", type=Path, help="classify the recording of a shadow.json again"
    )
    parser.add_argument("--out", type=Path, default=common.REPO / "bench/results")
    args = parser.parse_args()
    wall = time.monotonic()
    meta: dict[str, Any]
    if args.source:
        document = json.loads(args.source.read_text())
        meta = {**document["meta"], "reclassified": _commit()}
        if "scenarios" in document:
            chosen = [scenarios.from_json(raw) for raw in document["scenarios"]]
        else:  # recorded before the scenarios were kept with it: today's definitions
            chosen = scenarios.short() if meta.get("trace") == "short" else scenarios.full()
        recordings = {name: Recording.from_json(raw) for name, raw in document["recordings"].items()}
    else:
        chosen = scenarios.short() if args.short else scenarios.full()
        commit = _commit()  # the code that runs, before anyone edits the tree meanwhile
        recordings = record(chosen, args.kubeconfig.resolve() if args.kubeconfig else None)
        meta = {
            "command": "make shadow" + (" SHADOW_ARGS=--short" if args.short else ""),
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "trace": "short" if args.short else "full",
            "seconds": max(s.duration for s in chosen),
            "commit": commit,
            "wall": time.monotonic() - wall,
            **_versions(),
        }
    results = [analyse(s, recordings[s.name]) for s in chosen]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "shadow.md").write_text(report.markdown(results, meta))
    report.plot(results, recordings, args.out / "shadow.png")
    report.write_json(args.out / "shadow.json", results, recordings, meta)
    for r in results:
        print(f"shadow: {r.scenario.name}: {r.counts()}")
    bugs = [v for r in results for v in r.bugs]
    print(f"shadow: wrote {args.out}/shadow.{{md,png,json}}; kopfscale bugs: {len(bugs)}")
    for v in bugs:
        print(f"  {v.rule}: {v.why}" + (f" [known: {v.known}]" if v.known else ""))
    return 1 if bugs else 0


if __name__ == "__main__":
    sys.exit(main())
