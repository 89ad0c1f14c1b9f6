"""``make bench``: kopfscale's benchmarks on the local control plane, each figure beside its floor or
peer measured in the same run.

Prints a table and writes it (results.md, results.json, results.png) under bench/results/. These
are benchmarks, not tests: they print numbers and assert nothing.

    python -m bench.run                          # the full run (see README "Benchmarks" for its length)
    python -m bench.run --quick                  # small N, short windows: a smoke run of every scenario
    python -m bench.run --scenarios burst,soak   # a subset (names below)

Scenarios: ``footprint`` (0, 1000, 2000 objects: kopfscale, the floor, a memory census), ``burst``
(Greeters/s and CPU per Greeter beside a raw client and a minimal kopf operator; writes per
Greeter; status staleness), ``reaction`` (metric step -> replicas at 1, 100, 1000 workloads:
kopfscale, a reference polling loop, direct writes, the naive baseline, KEDA+HPA), ``steady``
(kopfscale vs the baseline, nothing changing), ``soak`` (RSS over 10 minutes), ``lateness`` (loop
lateness at 2000 ScaledApps), ``unrelated`` (1000 Deployments + Services that are not ours).

One control plane serves the whole run (kwok nodes, so Pods become Ready without containers; KEDA
too when the reaction includes it). Every process under test runs as a subprocess whose
kubeconfig points at the counting proxy (bench/proxy.py), one at a time: every request the proxy
counts is one it made. The driver creates objects and watches for the results directly on the
apiserver.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import subprocess
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import kopf

from bench import mirror, report
from bench.common import REPO, core_path, custom_path
from bench.harness import Bench, Subject, wait_quiet
from bench.scenarios import burst, reaction, steady
from kopfscale_devcluster.binaries import locate

SCENARIOS = ("footprint", "burst", "reaction", "steady", "soak", "lateness", "unrelated")
REACTION_WHO = ("kopfscale", "poll", "direct", "baseline", "keda")
BURST_WHO = ("raw", "minimal", "kopfscale", "baseline")


@dataclass
class Config:
    quick: bool
    nodes: int
    burst_sizes: dict[int, int]  # N -> runs
    burst_baseline_max: int  # the baseline bursts only up to this N (it adds nothing new above)
    stale_limit: float  # seconds to wait for stale statuses to clear after a burst
    reaction_sizes: dict[int, int]  # N -> step pairs (up and down)
    reaction_steady_seconds: float
    polling_interval: int
    footprint_each: list[int]  # Greeters (= ScaledApps) at each footprint level above 0
    footprint_windows: tuple[int, float]  # count, seconds
    steady_windows: tuple[int, float]
    quiet: float  # seconds without writes that count as settled
    soak: tuple[float, float, float]  # seconds, sample every, tail for the slope
    lateness_scaledapps: int
    lateness_windows: tuple[int, float]
    unrelated_objects: int
    unrelated_windows: tuple[int, float]
    burst_concurrency: int = 0  # the raw client's; 0: kopfscale's worker count
    baseline: bool = True
    peers: bool = True
    reaction_who: list[str] = field(default_factory=lambda: list(REACTION_WHO))
    scenarios: list[str] = field(default_factory=lambda: list(SCENARIOS))


def config(quick: bool) -> Config:
    if quick:
        return Config(
            quick=True,
            nodes=2,
            burst_sizes={1: 1, 20: 1},
            burst_baseline_max=20,
            stale_limit=20,
            reaction_sizes={1: 1, 10: 1},
            reaction_steady_seconds=10,
            polling_interval=5,
            footprint_each=[10, 25],
            footprint_windows=(2, 5.0),
            steady_windows=(2, 10.0),
            quiet=3.0,
            soak=(60, 5, 30),
            lateness_scaledapps=60,
            lateness_windows=(2, 15.0),
            unrelated_objects=30,
            unrelated_windows=(2, 10.0),
        )
    return Config(
        quick=False,
        nodes=8,
        burst_sizes={1: 3, 300: 2, 1000: 1},
        burst_baseline_max=300,
        stale_limit=60,
        reaction_sizes={1: 2, 100: 2, 1000: 1},
        reaction_steady_seconds=60,
        polling_interval=5,
        footprint_each=[500, 1000],
        footprint_windows=(3, 15.0),
        steady_windows=(4, 30.0),
        quiet=10.0,
        soak=(600, 10, 300),
        lateness_scaledapps=2000,
        lateness_windows=(4, 30.0),
        unrelated_objects=1000,
        unrelated_windows=(3, 30.0),
    )


def keda_built() -> bool:
    return all(p.exists() for p in locate().components()["keda"])


async def main_async(cfg: Config, out: Path) -> dict[str, Any]:
    results: dict[str, Any] = {"config": asdict(cfg), "environment": environment(), "notes": []}
    started = time.monotonic()
    loads: dict[str, float] = {}  # 1-minute load average when each scenario ended (others share the machine)
    want_keda = cfg.peers and "reaction" in cfg.scenarios and "keda" in cfg.reaction_who
    if want_keda and not keda_built():
        results["notes"].append("KEDA is not built on this machine (make controlplane): no KEDA+HPA figures.")
        want_keda = False
    if not want_keda:
        cfg.reaction_who = [w for w in cfg.reaction_who if w != "keda"]
    if not cfg.baseline:
        cfg.reaction_who = [w for w in cfg.reaction_who if w != "baseline"]

    def done(name: str) -> None:
        loads[name] = os.getloadavg()[0]
        results["environment"]["loadavg_by_scenario"] = loads
        checkpoint(out, results)

    async with Bench(cfg.nodes, peers=want_keda) as bench:
        results["notes"] += bench.notes
        results["floor"] = {
            "description": mirror.describe(bench.mirror),
            "differences": mirror.floor_differences(bench.mirror),
            "mirror": bench.mirror,
        }
        concurrency = cfg.burst_concurrency or int(bench.mirror.get("max_workers") or 32)
        kopfscale = bench.subject("kopfscale")
        baseline = bench.subject("baseline")
        floor = bench.subject("floor")
        census_subject = bench.subject("census")
        print(f"bench: logs in {bench.workdir}")
        print(f"bench: floor = kopf with {results['floor']['description']}")
        ready_in = await kopfscale.start()
        print(f"kopfscale watching after {ready_in:.1f} s")
        footprint: dict[str, Any] = {}
        results["footprint"] = footprint
        count, seconds = cfg.footprint_windows

        if "footprint" in cfg.scenarios:
            print("== footprint with no objects: kopfscale, the floor, kopfscale fresh + census")
            await asyncio.sleep(3)
            footprint["0"] = await steady.footprint_level(
                bench, kopfscale, floor, census_subject, None, count, seconds, cfg.quiet
            )
            done("footprint-0")

        if "burst" in cfg.scenarios:
            print(f"== burst: N Greeters at once; raw client and minimal kopf at concurrency {concurrency}")
            who_at = {
                n: [w for w in BURST_WHO if w != "baseline" or (cfg.baseline and n <= cfg.burst_baseline_max)]
                for n in cfg.burst_sizes
            }
            subjects: dict[str, Subject | None] = {
                "raw": None,
                "minimal": bench.subject("minimal"),
                "kopfscale": kopfscale,
                "baseline": baseline,
            }
            results["burst"] = await burst.run(
                bench, subjects, cfg.burst_sizes, who_at, concurrency, cfg.stale_limit
            )
            results["burst_concurrency"] = concurrency
            done("burst")

        if "reaction" in cfg.scenarios:
            print(
                f"== reaction: metric steps, pollingInterval {cfg.polling_interval} s; "
                f"{', '.join(cfg.reaction_who)}"
            )
            results["reaction"] = {}
            state = reaction.Replicas(bench)
            await bench.api.ensure_namespace(reaction.NAMESPACE)
            await state.start()
            for n, runs in cfg.reaction_sizes.items():
                if not kopfscale.running:
                    await kopfscale.start(within=300)
                grown = await reaction.grow(bench, state, n, cfg.polling_interval)
                print(f"  {n} ScaledApps settled in {grown:.1f} s")
                results["reaction"][str(n)] = await reaction.run_level(
                    bench,
                    kopfscale,
                    baseline,
                    state,
                    n,
                    runs,
                    cfg.polling_interval,
                    cfg.reaction_steady_seconds,
                    cfg.reaction_who,
                    concurrency,
                )
                checkpoint(out, results)
            await state.stop()
            # ScaledApps may carry kopf's finalizer: delete them while kopfscale runs.
            left = (
                custom_path("scaledapps", reaction.NAMESPACE),
                core_path("deployments", reaction.NAMESPACE),
            )
            if not await bench.api.delete_namespace(reaction.NAMESPACE, wait=300, paths=left):
                print("  ! namespace react: objects still there after 300 s")
            done("reaction")

        settled = ("footprint", "steady", "soak", "lateness", "unrelated")
        if any(s in cfg.scenarios for s in settled):
            await settled_scenarios(bench, cfg, results, kopfscale, baseline, floor, census_subject, done)
        await kopfscale.stop()
    results["seconds"] = time.monotonic() - started
    results["environment"]["loadavg_at_end"] = os.getloadavg()[0]
    results["environment"]["loadavg_by_scenario"] = loads
    return results


async def settled_scenarios(
    bench: Bench,
    cfg: Config,
    results: dict[str, Any],
    kopfscale: Subject,
    baseline: Subject,
    floor: Subject,
    census_subject: Subject,
    done: Any,
) -> None:
    """footprint at 1000 and 2000 objects, steady, soak, lateness, unrelated: one namespace, grown."""
    footprint = results["footprint"]
    count, seconds = cfg.footprint_windows
    await kopfscale.stop()
    await kopfscale.start(within=300)  # a fresh process: its CPU and peak RSS are these scenarios'
    watched = steady.Watched(bench)
    await bench.api.ensure_namespace(steady.NAMESPACE)
    await watched.start()
    levels = cfg.footprint_each
    if "footprint" in cfg.scenarios:
        for each in levels[:-1]:
            grown = await steady.grow(bench, watched, each, cfg.quiet)
            print(f"== footprint at {2 * each} objects (settled in {grown['settled_seconds']:.0f} s)")
            footprint[str(2 * each)] = await steady.footprint_level(
                bench, kopfscale, floor, census_subject, watched, count, seconds, cfg.quiet
            )
            done(f"footprint-{2 * each}")
    top = levels[-1]
    grown = await steady.grow(bench, watched, top, cfg.quiet)
    print(f"  {2 * top} objects settled in {grown['settled_seconds']:.0f} s")
    measured: dict[str, Any] | None = None
    if "steady" in cfg.scenarios:
        print(f"== steady state at {2 * top} objects")
        n_windows, window = cfg.steady_windows
        measured = await steady.windows(bench, kopfscale, watched, n_windows, window)
        results["steady"] = {"objects": 2 * top, "kopfscale": measured}
        if cfg.baseline:
            await kopfscale.stop()
            await baseline.start(within=600)
            await wait_quiet(bench, 0, within=5)  # let the first passes run
            results["steady"]["baseline"] = await steady.windows(bench, baseline, watched, n_windows, window)
            await baseline.stop()
            await kopfscale.start(within=300)
            await wait_quiet(bench, cfg.quiet, within=300)
        done("steady")
    if "footprint" in cfg.scenarios:
        print(f"== footprint at {2 * top} objects")
        footprint[str(2 * top)] = await steady.footprint_level(
            bench, kopfscale, floor, census_subject, watched, count, seconds, cfg.quiet, measured
        )
        results["census_per_object"] = steady.census_per_object(footprint)
        done(f"footprint-{2 * top}")
    if "soak" in cfg.scenarios:
        total, every, tail = cfg.soak
        print(f"== soak: RSS every {every:.0f} s for {total / 60:.0f} min at {2 * top} objects")
        await wait_quiet(bench, cfg.quiet, within=300)
        results["soak"] = await steady.soak(bench, kopfscale, total, every, tail)
        results["soak"]["objects"] = 2 * top
        done("soak")
    if "lateness" in cfg.scenarios:
        n_apps = max(cfg.lateness_scaledapps, top)
        grown = await steady.grow(bench, watched, top, cfg.quiet, scaledapps=n_apps)
        n_windows, window = cfg.lateness_windows
        print(
            f"== lateness: {n_apps} ScaledApps (pollingInterval {steady.POLLING_INTERVAL} s) "
            f"settled in {grown['settled_seconds']:.0f} s; {n_windows} windows of {window:.0f} s"
        )
        results["lateness"] = await steady.lateness(bench, kopfscale, n_windows, window)
        results["lateness"].update({"scaledapps": n_apps, "greeters": top})
        done("lateness")
    if "unrelated" in cfg.scenarios:
        n_windows, window = cfg.unrelated_windows
        print(f"== unrelated: {cfg.unrelated_objects} Deployments + Services in namespace {steady.OTHERS}")
        results["unrelated"] = await steady.unrelated(
            bench, kopfscale, watched, cfg.unrelated_objects, n_windows, window
        )
        done("unrelated")
    await watched.stop()
    await steady.cleanup(bench)


def checkpoint(out: Path, results: dict[str, Any]) -> None:
    """Partial results, so a run that fails later still leaves what it measured."""
    (out / "results.partial.json").write_text(json.dumps(results, indent=1, default=str) + "\n")


def environment() -> dict[str, Any]:
    def git(*args: str) -> str:
        proc = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return proc.stdout.strip()

    meminfo = Path("/proc/meminfo").read_text().split("\n")[0].split()
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git("rev-parse", "--short", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "python": platform.python_version(),
        "kopf": kopf.__version__ if hasattr(kopf, "__version__") else "?",
        "cpus": os.cpu_count(),
        "loadavg_at_start": os.getloadavg()[0],
        "memory_gib": round(int(meminfo[1]) / 2**20),
        "cpu_model": next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            "?",
        ),
    }


def sizes(text: str) -> dict[int, int]:
    """``1:3,100:3`` -> {1: 3, 100: 3}."""
    return {int(a): int(b) for a, b in (x.split(":") for x in text.split(","))}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small N and short windows (a smoke run)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the naive baseline's runs")
    parser.add_argument("--no-peers", action="store_true", help="no KEDA (the control plane without peers)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"subset of {','.join(SCENARIOS)}")
    parser.add_argument(
        "--reaction-who", help=f"who scales in the reaction, subset of {','.join(REACTION_WHO)}"
    )
    parser.add_argument("--burst", help="override the burst sizes, e.g. 1:3,300:2 (N:runs)")
    parser.add_argument(
        "--burst-concurrency", type=int, help="the raw client's concurrency (default kopfscale's workers)"
    )
    parser.add_argument("--reaction", help="override the reaction sizes, e.g. 1:3,1000:1 (N:step pairs)")
    parser.add_argument(
        "--footprint",
        help="Greeters (= ScaledApps) at each footprint level above 0, e.g. 500,1000; the last is steady",
    )
    parser.add_argument("--soak", type=float, help="soak seconds (default 600; --quick 60)")
    parser.add_argument("--out", type=Path, help="results directory (default bench/results, or .../quick)")
    parser.add_argument("--report-only", action="store_true", help="re-render results.json in --out")
    args = parser.parse_args()
    out = args.out or (REPO / "bench" / "results" / ("quick" if args.quick else ""))
    out.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        results = json.loads((out / "results.json").read_text())
        if "floor" not in results:  # written before the floors and peers were measured beside kopfscale
            parser.error(
                f"{out / 'results.json'} is from an earlier bench without floors; run the bench again"
            )
    else:
        cfg = config(args.quick)
        cfg.baseline = not args.no_baseline
        cfg.peers = not args.no_peers
        cfg.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
        unknown = set(cfg.scenarios) - set(SCENARIOS)
        if unknown:
            parser.error(f"unknown scenarios {sorted(unknown)}; choose from {','.join(SCENARIOS)}")
        if args.reaction_who:
            cfg.reaction_who = [w.strip() for w in args.reaction_who.split(",") if w.strip()]
        if args.burst:
            cfg.burst_sizes = sizes(args.burst)
        if args.burst_concurrency:
            cfg.burst_concurrency = args.burst_concurrency
        if args.reaction:
            cfg.reaction_sizes = sizes(args.reaction)
        if args.footprint:
            cfg.footprint_each = [int(n) for n in args.footprint.split(",")]
        if args.soak:
            cfg.soak = (args.soak, cfg.soak[1], min(cfg.soak[2], args.soak / 2))
        try:
            results = asyncio.run(main_async(cfg, out))
        except Exception:
            partial = out / "results.partial.json"
            if not partial.exists():
                raise
            traceback.print_exc()
            print("bench: the run failed; reporting what it measured before the failure")
            results = json.loads(partial.read_text())
            results["failed"] = traceback.format_exc(limit=3)
        (out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    markdown = report.markdown(results)
    (out / "results.md").write_text(markdown)
    report.plot(results, out / "results.png")
    print()
    print(markdown)
    print(f"bench: wrote {out / 'results.md'}, results.json and results.png")


if __name__ == "__main__":
    main()
