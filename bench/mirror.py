"""What the floor must mirror of kopfscale, read from kopfscale itself at run time.

The benchmark driver imports ``kopfscale.app`` (it never runs it: only kopf's registry and
``configure`` are read), lists every resource kopfscale has a kopf handler for, every kopf index
it keeps, its server-side label selectors and worker count, and writes them as JSON for
bench/floor.py. So when the operator changes its watches or indexes, the floor follows without
an edit here; :func:`floor_differences` says whether the floor's kopf settings still equal
kopfscale's (the report prints the answer).

    python -m bench.mirror            # print the mirror and the settings check
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kopf

from bench import figures


def _kopfscale_handlers() -> dict[str, list[Any]]:
    import kopfscale.app  # noqa: F401  (registers kopfscale's handlers on kopf's default registry)

    registry = kopf.get_default_registry()
    out: dict[str, list[Any]] = {}
    for kind in ("_indexing", "_watching", "_spawning", "_changing"):
        handlers = getattr(registry, kind).get_all_handlers()
        out[kind] = [h for h in handlers if getattr(h.fn, "__module__", "").startswith("kopfscale")]
    return out


def _labels(labels: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in (labels or {}).items():
        if value is kopf.PRESENT:
            out[key] = {"present": True}
        elif value is kopf.ABSENT:
            out[key] = {"present": False}
        elif isinstance(value, str):
            out[key] = value
        # a callable filter has no JSON form; the floor's index then sees every object of the kind
    return out


def kopfscale_settings() -> kopf.OperatorSettings:
    import kopfscale.app

    settings = kopf.OperatorSettings()
    kopfscale.app.configure(settings=settings)
    return settings


def kopfscale_mirror() -> dict[str, Any]:
    """The JSON bench/floor.py reads (``KOPFSCALE_FLOOR_MIRROR``)."""
    handlers = _kopfscale_handlers()
    watches = sorted(
        {
            (h.selector.group or "", h.selector.version or "", h.selector.any_name or h.selector.plural)
            for hs in handlers.values()
            for h in hs
        }
    )
    indexes = [
        [h.selector.group or "", h.selector.version or "", h.selector.any_name, _labels(h.labels)]
        for h in handlers["_indexing"]
    ]
    settings = kopfscale_settings()
    selectors = [
        [s.group or "", s.version or "", s.any_name or s.plural, value]
        for s, value in settings.watching.label_selectors.items()
    ]
    return {
        "watches": [list(w) for w in watches],
        "indexes": indexes,
        "index_names": [h.id for h in handlers["_indexing"]],
        "label_selectors": selectors,
        "max_workers": settings.execution.max_workers,
        "settings": figures.plain_settings(settings),
        "daemons": [h.id for h in handlers["_spawning"]],
    }


def floor_differences(mirror: dict[str, Any]) -> list[str]:
    """Every kopf setting of the floor (its ``configure`` with this mirror) that is not kopfscale's."""
    from bench import floor

    ours = kopf.OperatorSettings()
    floor.configure(ours, mirror)
    return figures.settings_differences(
        figures.settings_fingerprint(ours), figures.settings_fingerprint(kopfscale_settings())
    )


def describe(mirror: dict[str, Any]) -> str:
    """One sentence for the report: what the floor watches and indexes."""
    watches = ", ".join(f"{p}" for _, _, p in mirror["watches"])
    selectors = "; ".join(f"{p}: `{sel}`" for _, _, p, sel in mirror["label_selectors"]) or "none"
    return (
        f"watches {watches} (server-side label selectors {selectors}); {len(mirror['indexes'])} kopf "
        f"indexes mirroring kopfscale's ({', '.join(mirror['index_names'])}) holding no payload; "
        f"{mirror['max_workers']} sync workers; no change handlers, daemons or timers "
        f"(kopfscale's daemons: {', '.join(mirror['daemons']) or 'none'})"
    )


def write(path: Path) -> dict[str, Any]:
    mirror = kopfscale_mirror()
    path.write_text(json.dumps(mirror, indent=1) + "\n")
    return mirror


def main() -> None:
    mirror = kopfscale_mirror()
    print(json.dumps(mirror, indent=1))
    print("floor:", describe(mirror))
    differences = floor_differences(mirror)
    print("floor settings:", "identical to kopfscale's" if not differences else "; ".join(differences))


if __name__ == "__main__":
    main()
