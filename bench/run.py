"""``make bench``: kopfscale's benchmarks against the local control plane, with the naive baseline.

Prints a table and writes it (results.md, results.json, results.png) under bench/results/. These
are benchmarks, not tests: they print numbers and assert nothing.

    python -m bench.run            # the full run (about 30 minutes on 2 cores)
    python -m bench.run --quick    # small N, short windows: a smoke run of every scenario

One control plane serves the whole run (kwok nodes, so Pods become Ready without containers).
The process under test is kopfscale (``kopfscale run -A --standalone``) or the baseline
(bench/baseline.py), started as a subprocess whose kubeconfig points at the counting proxy
(bench/proxy.py): every request the proxy counts is one the process made. The driver creates
objects and watches for the results directly on the apiserver.
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

from bench import report
from bench.common import REPO, core_path, custom_path
from bench.harness import Bench, Subject, wait_quiet
from bench.scenarios import burst, reaction, steady


@dataclass
class Config:
    quick: bool
    nodes: int
    burst_sizes: dict[int, int]  # N -> runs
    reaction_sizes: dict[int, int]  # N -> step pairs (up and down)
    polling_interval: int
    footprint_each: list[int]  # Greeters (= ScaledApps) at each footprint level; the middle one is steady
    footprint_windows: tuple[int, float]  # count, seconds
    steady_windows: tuple[int, float]
    quiet: float  # seconds without writes that count as settled
    baseline: bool = True
    scenarios: list[str] = field(default_factory=lambda: ["burst", "reaction", "steady"])


def config(quick: bool) -> Config:
    if quick:
        return Config(
            quick=True,
            nodes=2,
            burst_sizes={1: 2, 10: 2, 30: 1},
            reaction_sizes={1: 1, 10: 1, 30: 1},
            polling_interval=5,
            footprint_each=[10, 20, 50],
            footprint_windows=(2, 5.0),
            steady_windows=(2, 10.0),
            quiet=3.0,
        )
    return Config(
        quick=False,
        nodes=8,
        burst_sizes={1: 3, 100: 3, 1000: 1},
        reaction_sizes={1: 3, 100: 2, 1000: 1},
        polling_interval=5,
        footprint_each=[500, 1000, 2500],
        footprint_windows=(3, 15.0),
        steady_windows=(4, 30.0),
        quiet=10.0,
    )


async def footprint(
    bench: Bench, subject: Subject, cfg: Config, watched: steady.Watched | None
) -> dict[str, Any]:
    count, seconds = cfg.footprint_windows
    dummy = watched or steady.Watched(bench)
    return await steady.windows(bench, subject, dummy, count, seconds)


async def floor_footprint(
    bench: Bench, kopfscale: Subject, floor: Subject, cfg: Config, watched: steady.Watched | None
) -> dict[str, Any]:
    """The floor on the same objects: kopfscale stopped, kopf alone with kopfscale's watches
    (bench/floor.py) measured the same way, then kopfscale started again."""
    await kopfscale.stop()
    await floor.start(within=300)
    await asyncio.sleep(cfg.quiet)  # its lists are done and every event dispatched
    measured = await footprint(bench, floor, cfg, watched)
    await floor.stop()
    await kopfscale.start(within=300)
    return measured


async def main_async(cfg: Config, out: Path) -> dict[str, Any]:
    results: dict[str, Any] = {
        "config": asdict(cfg),
        "footprint": {},
        "footprint_floor": {},
        "environment": environment(),
    }
    started = time.monotonic()
    loads: dict[str, float] = {}  # 1-minute load average when each scenario ended (others share the machine)
    async with Bench(cfg.nodes) as bench:
        kopfscale = Subject(bench, "kopfscale")
        baseline = Subject(bench, "baseline")
        floor = Subject(bench, "floor")
        print(f"bench: logs in {bench.workdir}")

        # -- footprint with no objects, then the create burst --------------------------------------
        ready_in = await kopfscale.start()
        print(f"kopfscale watching after {ready_in:.1f} s; footprint with 0 objects")
        await asyncio.sleep(3)
        results["footprint"]["0"] = await footprint(bench, kopfscale, cfg, None)
        results["footprint_floor"]["0"] = await floor_footprint(bench, kopfscale, floor, cfg, None)
        checkpoint(out, results)
        if "burst" in cfg.scenarios:
            print("== burst: N Greeters created at once")
            results["burst"] = {"kopfscale": await burst.run(bench, kopfscale, cfg.burst_sizes)}
            if cfg.baseline:
                await kopfscale.stop()
                await baseline.start()
                results["burst"]["baseline"] = await burst.run(bench, baseline, cfg.burst_sizes)
                await baseline.stop()
                await kopfscale.start()
            loads["burst"] = os.getloadavg()[0]
            checkpoint(out, results)

        # -- reaction -----------------------------------------------------------------------------------
        if "reaction" in cfg.scenarios:
            print(f"== reaction: metric steps, pollingInterval {cfg.polling_interval} s")
            results["reaction"] = {"kopfscale": {}, "baseline": {}}
            state = reaction.Replicas(bench)
            await bench.api.ensure_namespace(reaction.NAMESPACE)
            await state.recorder.start()
            for n, runs in cfg.reaction_sizes.items():
                grown = await reaction.grow(bench, state, n, cfg.polling_interval)
                print(f"  {n} ScaledApps settled in {grown:.1f} s")
                results["reaction"]["kopfscale"][str(n)] = await reaction.measure(
                    bench, kopfscale, state, n, runs, cfg.polling_interval
                )
                if cfg.baseline:
                    await kopfscale.stop()
                    await baseline.start(within=300)
                    results["reaction"]["baseline"][str(n)] = await reaction.measure(
                        bench, baseline, state, n, runs, cfg.polling_interval
                    )
                    await baseline.stop()
                    await kopfscale.start()
            await state.recorder.stop()
            # ScaledApps carry kopf's finalizer: delete them while kopfscale runs.
            left = (
                custom_path("scaledapps", reaction.NAMESPACE),
                core_path("deployments", reaction.NAMESPACE),
            )
            if not await bench.api.delete_namespace(reaction.NAMESPACE, wait=300, paths=left):
                print("  ! namespace react: objects still there after 300 s")
            loads["reaction"] = os.getloadavg()[0]
            checkpoint(out, results)

        # -- steady state and footprint -------------------------------------------------------------------
        if "steady" in cfg.scenarios:
            print("== steady state and footprint")
            await kopfscale.stop()
            await kopfscale.start()  # a fresh process: its CPU and peak RSS are this scenario's
            watched = steady.Watched(bench)
            await bench.api.ensure_namespace(steady.NAMESPACE)
            await watched.start()
            low, mid, high = cfg.footprint_each
            grown = await steady.grow(bench, watched, low, cfg.quiet)
            print(f"  {2 * low} objects settled in {grown['settled_seconds']:.0f} s")
            results["footprint"][str(2 * low)] = await footprint(bench, kopfscale, cfg, watched)
            results["footprint_floor"][str(2 * low)] = await floor_footprint(
                bench, kopfscale, floor, cfg, watched
            )
            grown = await steady.grow(bench, watched, mid, cfg.quiet)
            print(f"  {2 * mid} objects settled in {grown['settled_seconds']:.0f} s; steady-state windows")
            count, seconds = cfg.steady_windows
            results["steady"] = {
                "objects": 2 * mid,
                "kopfscale": await steady.windows(bench, kopfscale, watched, count, seconds),
            }
            results["footprint"][str(2 * mid)] = results["steady"]["kopfscale"]
            checkpoint(out, results)
            if cfg.baseline:
                await kopfscale.stop()
                await baseline.start(within=600)
                await wait_quiet(bench, 0, within=5)  # let the first passes run
                results["steady"]["baseline"] = await steady.windows(bench, baseline, watched, count, seconds)
                await baseline.stop()
                await kopfscale.start(within=300)
            results["footprint_floor"][str(2 * mid)] = await floor_footprint(
                bench, kopfscale, floor, cfg, watched
            )
            grown = await steady.grow(bench, watched, high, cfg.quiet)
            print(f"  {2 * high} objects settled in {grown['settled_seconds']:.0f} s")
            results["footprint"][str(2 * high)] = await footprint(bench, kopfscale, cfg, watched)
            results["footprint_floor"][str(2 * high)] = await floor_footprint(
                bench, kopfscale, floor, cfg, watched
            )
            await watched.stop()
            loads["steady"] = os.getloadavg()[0]
        await kopfscale.stop()
    results["seconds"] = time.monotonic() - started
    results["environment"]["loadavg_at_end"] = os.getloadavg()[0]
    results["environment"]["loadavg_by_scenario"] = loads
    return results


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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small N and short windows (a smoke run)")
    parser.add_argument("--no-baseline", action="store_true", help="skip the baseline's runs")
    parser.add_argument(
        "--scenarios", default="burst,reaction,steady", help="comma-separated subset of burst,reaction,steady"
    )
    parser.add_argument("--burst", help="override the burst sizes, e.g. 1:3,100:3 (N:runs)")
    parser.add_argument("--reaction", help="override the reaction sizes, e.g. 1:3,1000:1 (N:step pairs)")
    parser.add_argument(
        "--footprint",
        help="override the footprint levels, Greeters (= ScaledApps) at each, e.g. 200,500,1000;"
        " the middle one is the steady state",
    )
    parser.add_argument("--out", type=Path, help="results directory (default bench/results, or .../quick)")
    parser.add_argument("--report-only", action="store_true", help="re-render results.json in --out")
    args = parser.parse_args()
    out = args.out or (REPO / "bench" / "results" / ("quick" if args.quick else ""))
    out.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        results = json.loads((out / "results.json").read_text())
    else:
        cfg = config(args.quick)
        cfg.baseline = not args.no_baseline
        cfg.scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
        if args.burst:
            cfg.burst_sizes = {int(a): int(b) for a, b in (x.split(":") for x in args.burst.split(","))}
        if args.reaction:
            cfg.reaction_sizes = {int(a): int(b) for a, b in (x.split(":") for x in args.reaction.split(","))}
        if args.footprint:
            cfg.footprint_each = [int(n) for n in args.footprint.split(",")]
            if len(cfg.footprint_each) != 3:
                parser.error("--footprint takes three levels, e.g. 200,500,1000")
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
