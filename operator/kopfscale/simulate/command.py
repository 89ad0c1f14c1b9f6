"""``kopfscale simulate``: what a ScaledApp would have done to a trace, tick by tick.

The click command is thin: it loads (manifest, trace), runs (engine), prints (render) and draws
(plot). Every bad input is an :class:`InputError`, printed as is and exit status 2.
"""

from __future__ import annotations

import datetime
import sys
from pathlib import Path
from typing import Any

import click

from kopfscale.scaledapp.history import parse_time
from kopfscale.simulate import cel, engine, render, replay
from kopfscale.simulate import manifest as manifests
from kopfscale.simulate.errors import InputError
from kopfscale.simulate.trace import Trace, looks_like_json, parse_csv, parse_prometheus

EXIT_BAD_INPUT = 2


def load_trace(path: str, metric: str | None, spec_metrics: list[str]) -> Trace:
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise InputError(f"--trace {path}: cannot read: {e.strerror or e}") from None
    if looks_like_json(text):
        if metric is None:
            if len(spec_metrics) != 1:
                raise InputError(
                    f"{path}: a Prometheus trace feeds one metric; say which with --trace-metric "
                    f"(one of: {', '.join(spec_metrics)})"
                )
            metric = spec_metrics[0]
        if metric not in spec_metrics:
            raise InputError(
                f"--trace-metric {metric!r}: the manifest has no such metric ({', '.join(spec_metrics)})"
            )
        return parse_prometheus(text, metric, path)
    if metric is not None:
        raise InputError(
            "--trace-metric is for a Prometheus query_range JSON trace; a CSV names metrics in its header"
        )
    return parse_csv(text, path)


def check_columns(trace: Trace, m: manifests.Manifest) -> list[str]:
    """Every metric read from the trace must have its column; returns warnings for unused columns."""
    from kopfscale.simulate import sources

    needed = [x.name for x in m.spec.metrics if not sources.from_clock(x, trace)]
    missing = [n for n in needed if n not in trace.columns]
    if missing:
        raise InputError(
            f"{trace.source}: no column for metric(s) {', '.join(missing)} of {m.path} "
            f"(the trace has: {', '.join(trace.columns) or 'none'}; cron metrics come from the clock)"
        )
    known = {x.name for x in m.spec.metrics}
    return [
        f"{trace.source}: column {c!r} feeds no metric of {m.path}: ignored"
        for c in trace.columns
        if c not in known
    ]


@click.command("simulate")
@click.argument("scaledapp", metavar="SCALEDAPP.yaml")
@click.option(
    "--trace", "trace_path", metavar="TRACE", help="CSV (time,<metric>,...) or Prometheus query_range JSON."
)
@click.option("--trace-metric", metavar="NAME", help="The metric a Prometheus JSON trace feeds.")
@click.option(
    "--from-cluster",
    "from_cluster",
    metavar="NAMESPACE/NAME",
    help="Replay a live ScaledApp's recorded status history (read-only, via the kubeconfig).",
)
@click.option(
    "--start-replicas",
    type=click.IntRange(min=0),
    help="Replicas at the start [default: max(minReplicas, 1)].",
)
@click.option(
    "--output", "output", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True
)
@click.option(
    "--plot", "plot_path", metavar="FILE.png", help="Also draw the run as a PNG (needs matplotlib)."
)
@click.option(
    "--compare", "compare_path", metavar="OTHER.yaml", help="Run a second policy over the same trace."
)
@click.option(
    "--start",
    "start_time",
    metavar="RFC3339",
    help="The instant of time 0 of a trace in seconds (cron windows use it) [default: 1970-01-01T00:00:00Z].",
)
def simulate(**options: Any) -> None:
    """Replay TRACE through SCALEDAPP.yaml's policy, as the operator would run it, and show every tick."""
    try:
        text = run_command(**options)
    except InputError as e:
        click.echo(f"kopfscale simulate: {e}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    click.echo(text, nl=False)


def run_command(
    scaledapp: str,
    trace_path: str | None,
    trace_metric: str | None,
    from_cluster: str | None,
    start_replicas: int | None,
    output: str,
    plot_path: str | None,
    compare_path: str | None,
    start_time: str | None,
) -> str:
    if (trace_path is None) == (from_cluster is None):
        raise InputError("give exactly one of --trace TRACE or --from-cluster NAMESPACE/NAME")
    manifest = manifests.load(scaledapp)
    others = [manifests.load(compare_path)] if compare_path else []
    if not cel.available():
        click.echo(
            "kopfscale simulate: note: CEL rules not checked (pip install 'kopfscale[simulate]')", err=True
        )
    now = datetime.datetime.now(datetime.UTC)
    specs = {m.path: m.spec for m in [manifest, *others]}
    if from_cluster is not None:
        from kopfscale.simulate import cluster

        body = cluster.read_scaledapp(from_cluster)
        status = body.get("status") or {}
        trace = replay.trace_from_status(status, from_cluster, now)
        specs = {path: replay.replay_spec(spec) for path, spec in specs.items()}
        if start_replicas is None:
            start_replicas = replay.start_replicas(status, trace, now)
    else:
        assert trace_path is not None
        trace = load_trace(
            trace_path, trace_metric, [x.name for x in manifest.spec.metrics if x.type != "cron"]
        )
        for m in [manifest, *others]:
            for warning in check_columns(trace, m):
                click.echo(f"kopfscale simulate: note: {warning}", err=True)
    if start_time is not None:
        if trace.absolute:
            raise InputError(f"--start: {trace.source} has absolute times already")
        moment = parse_time(start_time)
        if moment is None:
            raise InputError(f"--start {start_time!r}: not an RFC 3339 time like 2026-01-05T08:00:00Z")
        trace = trace.rebased(moment)
    try:
        runs = [
            engine.run(spec, trace, name=Path(path).name, start_replicas=start_replicas)
            for path, spec in specs.items()
        ]
    except ValueError as e:
        raise InputError(f"{trace.source}: {e}") from None
    if plot_path:
        from kopfscale.simulate import plot

        plot.write(runs, plot_path)
    if len(runs) > 1:
        return {"table": render.compare_table, "json": render.compare_json, "csv": _compare_csv}[output](runs)
    return {"table": render.to_table, "json": render.to_json, "csv": render.to_csv}[output](runs[0])


def _compare_csv(runs: list[engine.Run]) -> str:
    parts = [render.to_csv(r) for r in runs]
    return "".join(f"# {r.name}\n{p}" for r, p in zip(runs, parts, strict=True))
