"""``--plot FILE.png``: the run as one picture, readable without the table.

Left axis: each metric's value (solid) and its target (dashed; for ``AverageValue`` on an external
metric the target is per replica, so the line drawn is ``target x replicas``, the total that would
be on target). Right axis: replicas, current (thin), raw desired (dotted) and final (thick), the
min/max band shaded, scale events marked with triangles (up/down). With ``--compare`` the second
policy's final replicas are drawn too.

matplotlib is an optional dependency (``pip install 'kopfscale[simulate]'``): imported only here,
and a clear :class:`InputError` names the extra when it is missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kopfscale.scaledapp.sources import Meaning
from kopfscale.simulate.engine import Run
from kopfscale.simulate.errors import InputError


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only; never a display
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError(
            "--plot needs matplotlib, which is not installed: pip install 'kopfscale[simulate]'"
        ) from None
    return plt


def write(runs: Sequence[Run], path: str) -> None:
    plt = _pyplot()
    run = runs[0]
    ticks = run.ticks
    minutes = [t.offset / 60.0 for t in ticks]
    fig, left = plt.subplots(figsize=(10, 5.5), dpi=80)
    right = left.twinx()

    for m_index, metric in enumerate(run.spec.metrics):
        if metric.target is None:
            continue  # a floor (cron): its replicas show in "raw desired"
        values = [t.decision.metrics[m_index].value for t in ticks]
        color = f"C{m_index}"
        left.step(
            minutes,
            [float("nan") if v is None else v for v in values],
            where="post",
            color=color,
            label=f"{metric.name}",
        )
        if metric.target is not None:
            external = metric.target.type == "AverageValue" and metric.meaning is Meaning.TOTAL
            target = [metric.target.value * (t.current if external else 1) for t in ticks]
            label = f"{metric.name} target" + (" x replicas" if external else "")
            left.step(minutes, target, where="post", color=color, linestyle="--", alpha=0.7, label=label)
    left.set_xlabel("minutes")
    left.set_ylabel("metric value")

    spec = run.spec
    right.axhspan(
        spec.min_replicas, spec.max_replicas, color="C7", alpha=0.12, zorder=0, label="min..max replicas"
    )
    right.step(minutes, [t.current for t in ticks], where="post", color="0.5", linewidth=1, label="current")
    right.step(
        minutes, [t.raw_desired for t in ticks], where="post", color="k", linestyle=":", label="raw desired"
    )
    right.step(
        minutes,
        [t.replicas for t in ticks],
        where="post",
        color="C3",
        linewidth=2.5,
        label=f"replicas ({run.name})",
    )
    for other_index, other in enumerate(runs[1:], start=4):
        right.step(
            [t.offset / 60.0 for t in other.ticks],
            [t.replicas for t in other.ticks],
            where="post",
            color=f"C{other_index}",
            linewidth=2,
            label=f"replicas ({other.name})",
        )
    ups = [(t.offset / 60.0, t.replicas) for t in ticks if t.replicas > t.current]
    downs = [(t.offset / 60.0, t.replicas) for t in ticks if t.replicas < t.current]
    if ups:
        right.scatter(*zip(*ups, strict=True), marker="^", color="C3", zorder=5, label="scale up")
    if downs:
        right.scatter(*zip(*downs, strict=True), marker="v", color="C2", zorder=5, label="scale down")
    right.set_ylabel("replicas")
    right.set_ylim(0, spec.max_replicas * 1.1 + 0.5)
    left.set_ylim(bottom=0)

    handles = [h for ax in (left, right) for h in ax.get_legend_handles_labels()[0]]
    labels = [lab for ax in (left, right) for lab in ax.get_legend_handles_labels()[1]]
    left.set_zorder(right.get_zorder() + 1)  # metric lines above the replica band
    left.patch.set_visible(False)
    fig.legend(handles, labels, loc="lower center", fontsize="small", ncol=5, frameon=False)
    left.set_title(f"kopfscale simulate: {run.name} over {run.trace.source}")
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    try:
        fig.savefig(path)
    except OSError as e:
        raise InputError(f"--plot {path}: cannot write: {e.strerror or e}") from None
    finally:
        plt.close(fig)
