"""Benchmark the local control plane: cold build time, start-to-ready, RSS of each process.

Prints numbers; asserts nothing. The build time is the one recorded when the cache was
filled (``build-seconds`` beside each component's binaries); ``--runs`` warm starts follow.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from kopfscale_devcluster import LocalCluster
from kopfscale_devcluster.binaries import cache_root, ensure_built, pinned_versions


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds to idle before reading RSS")
    parser.add_argument("--peers", action="store_true", help="start KEDA too (LocalCluster(peers=True))")
    args = parser.parse_args()

    t0 = time.monotonic()
    ensure_built(peers=args.peers)
    print(f"ensure_built (warm check or build): {time.monotonic() - t0:.1f} s")
    versions = pinned_versions()
    print("\nCold build time, recorded when each component was built:")
    for key, value in versions.items():
        if key.endswith("_VERSION") and key != "KUBERNETES_STAGING_VERSION":
            name = key.removesuffix("_VERSION").lower().replace("_", "-")
            record = cache_root() / f"{name}-{value}" / "build-seconds"
            built = f"{int(record.read_text()):>5d} s" if record.exists() else "    ?"
            print(f"  {name:<16} {value:<10} {built}")

    ready: list[float] = []
    rss: dict[str, list[float]] = {}
    for run in range(args.runs):
        with LocalCluster(peers=args.peers) as cluster:
            ready.append(cluster.timings["ready"])
            if run == args.runs - 1:
                time.sleep(args.settle)
            for name, pid in cluster.pids.items():
                rss.setdefault(name, []).append(rss_mib(pid))
            t = cluster.timings
            peers = f", KEDA {t['peers']:.2f} s of it" if "peers" in t else ""
            print(
                f"  run {run + 1}: ready in {t['ready']:.2f} s "
                f"(certs {t['pki']:.2f} s, apiserver ready {t['apiserver']:.2f} s{peers})"
            )

    print(
        f"\nStart-to-ready, warm cache, {args.runs} runs: median {statistics.median(ready):.2f} s, "
        f"min {min(ready):.2f} s, max {max(ready):.2f} s (target <= 15 s)"
    )
    print(f"\nRSS after {args.settle:.0f} s idle (last run), MiB:")
    total = 0.0
    for name, values in rss.items():
        print(f"  {name:<24} {values[-1]:8.1f}")
        total += values[-1]
    print(f"  {'total':<24} {total:8.1f}")


if __name__ == "__main__":
    main()
