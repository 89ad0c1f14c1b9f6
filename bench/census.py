"""Memory census of a running kopfscale: live Python objects by type, what kopf's and kopfscale's
per-object state holds, and where the rest of the RSS sits (free pymalloc arenas, free glibc heap).

The operator has no debug endpoint for this, and none is added: kopfscale runs unchanged inside a
wrapper that only installs a SIGUSR1 handler, and the census runs in that process when asked.

    # 1. run kopfscale under the wrapper (same arguments as ``kopfscale ...``)
    python -m bench.census serve -- run --all-namespaces --standalone
    # 2. from another shell, when it has settled: census -> JSON file + a table on stdout
    python -m bench.census take --pid PID --out before.json
    # 3. per object: two censuses at two object counts, the difference divided by the count
    python -m bench.census diff before.json after.json --objects 1000

``make bench`` does the same at each footprint level (scenario ``census``): kopfscale's measured
process is stopped, the wrapper runs on the same objects, a census is taken once it has written
nothing for a while, and the table goes into the report (section "Memory census").

How it counts (inside the operator's process, with the GIL held: the switch interval is raised for
the duration, so kopf's worker threads stand still):

* **by type**: every object ``gc.get_objects()`` returns, plus everything they refer to that the
  GC does not track (str, int, bytes, float, atom-only tuples and dicts), once each, by
  ``sys.getsizeof`` (the object itself, not what it refers to);
* **roots**: what is reachable from kopf's per-object memories, its indexes, every kopfscale module
  global and prometheus_client's registry, without crossing into modules, classes, functions,
  module globals, the event loop, threads, loggers, executors or kopf's settings/registry (each
  root on its own: shared objects count in each root that reaches them);
* **asyncio tasks** by coroutine, **threads**;
* **allocators** (first, before the census allocates anything): pymalloc's arenas
  (``sys._debugmallocstats``: bytes in allocated blocks vs free inside arenas), glibc's
  ``mallinfo2`` (in-use vs free heap), the RSS, then ``malloc_trim(0)`` and the RSS again: what
  glibc gives back (this trims the wrapper's process for good: take the census last).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import ctypes
import gc
import json
import os
import re
import signal
import sys
import tempfile
import threading
import time
import types
from collections.abc import Iterable
from pathlib import Path
from typing import Any

OUT_ENV = "KOPFSCALE_CENSUS_DIR"


def out_path(pid: int, directory: str | None = None) -> Path:
    return (
        Path(directory or os.environ.get(OUT_ENV) or tempfile.gettempdir()) / f"kopfscale-census-{pid}.json"
    )


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --- allocators -----------------------------------------------------------------------------------
def pymalloc_stats() -> dict[str, int]:
    """The arena totals ``sys._debugmallocstats`` writes to the C-level stderr."""
    with tempfile.TemporaryFile() as capture:
        saved = os.dup(2)
        try:
            sys.stderr.flush()
            os.dup2(capture.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        text = capture.read().decode(errors="replace")
    wanted = {
        "arenas allocated current": "arenas",
        "bytes in allocated blocks": "allocated_blocks",
        "bytes in available blocks": "free_blocks",
        "unused pools": "unused_pools",
        "bytes/arena": "arena_total_bytes",
    }
    out: dict[str, int] = {}
    for line in text.splitlines():
        match = re.match(r"^(.*?)\s*=\s*([\d,]+)\s*$", line)
        if not match:
            continue
        for needle, key in wanted.items():
            if needle in match[1] and key not in out:
                out[key] = int(match[2].replace(",", ""))
    return out


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def glibc_stats() -> dict[str, int]:
    """glibc's heap: ``arena`` (from the system, not mmapped), ``hblkhd`` (mmapped), ``uordblks``
    (in use), ``fordblks`` (free in the heap); empty where mallinfo2 is missing."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        info = libc.mallinfo2()
    except (OSError, AttributeError):
        return {}
    return {name: int(getattr(info, name)) for name, _ in _MallInfo2._fields_}


def malloc_trim() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


# --- objects --------------------------------------------------------------------------------------
def _type_name(obj: Any) -> str:
    t = type(obj)
    module = getattr(t, "__module__", "?")
    return t.__qualname__ if module == "builtins" else f"{module}.{t.__qualname__}"


def by_type() -> tuple[dict[str, list[int]], int]:
    """type -> [count, bytes] over every live object (GC-tracked ones and the untracked ones they
    hold); and the number of GC-tracked objects."""
    tracked = gc.get_objects()
    seen: set[int] = {id(tracked)}
    counts: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])

    def account(obj: Any) -> None:
        entry = counts[_type_name(obj)]
        entry[0] += 1
        entry[1] += sys.getsizeof(obj, 0)

    for obj in tracked:
        seen.add(id(obj))
    pending: list[Any] = []
    for obj in tracked:
        account(obj)
        for ref in gc.get_referents(obj):
            if id(ref) not in seen and not gc.is_tracked(ref):
                seen.add(id(ref))
                pending.append(ref)
    while pending:
        obj = pending.pop()
        account(obj)
        for ref in gc.get_referents(obj):  # untracked containers hold atoms only
            if id(ref) not in seen:
                seen.add(id(ref))
                pending.append(ref)
    return dict(counts), len(tracked)


def _stop_types() -> tuple[type, ...]:
    import logging

    stops: list[type] = [
        types.ModuleType,
        type,
        types.FunctionType,
        types.BuiltinFunctionType,
        types.CodeType,
        asyncio.AbstractEventLoop,
        threading.Thread,
        logging.Logger,
        logging.Handler,
    ]
    try:
        import concurrent.futures

        stops.append(concurrent.futures.Executor)
    except ImportError:
        pass
    try:
        import kopf

        stops += [kopf.OperatorSettings, kopf.OperatorRegistry]
    except (ImportError, AttributeError):
        pass
    try:
        import aiohttp

        stops.append(aiohttp.ClientSession)
    except ImportError:
        pass
    return tuple(stops)


def deep_size(roots: Iterable[Any], stops: tuple[type, ...], fences: set[int]) -> tuple[int, int]:
    """(bytes, objects) reachable from ``roots`` without entering ``stops`` types or ``fences`` ids."""
    seen: set[int] = set()
    stack = list(roots)
    size = count = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or id(obj) in fences or isinstance(obj, stops):
            continue
        seen.add(id(obj))
        size += sys.getsizeof(obj, 0)
        count += 1
        stack.extend(gc.get_referents(obj))
    return size, count


def _instances(names: set[str]) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = collections.defaultdict(list)
    for obj in gc.get_objects():
        name = type(obj).__name__
        if name in names:
            found[name].append(obj)
    return found


#: kopf's per-object and per-resource state, by class name (kopf 1.4x).
KOPF_ROOTS = ("ResourceMemories", "OperatorIndexers", "OperatorIndex", "Memo")


def roots() -> list[dict[str, Any]]:
    """Deep sizes of kopf's memories and indexes, kopfscale's module globals, Prometheus' registry."""
    stops = _stop_types()
    fences = {id(vars(m)) for m in list(sys.modules.values()) if m is not None}
    fences.add(id(sys.modules))
    out: list[dict[str, Any]] = []
    instances = _instances(set(KOPF_ROOTS))
    for name in KOPF_ROOTS:
        objs = instances.get(name, [])
        if objs:
            size, count = deep_size(objs, stops, fences)
            out.append({"root": f"kopf {name} (x{len(objs)})", "bytes": size, "objects": count})
    registry = getattr(sys.modules.get("prometheus_client"), "REGISTRY", None)
    reported = {id(registry)}  # a module global that is an object already reported is not repeated
    if registry is not None:
        size, count = deep_size([registry], stops, fences)
        out.append({"root": "prometheus_client.REGISTRY", "bytes": size, "objects": count})
    for module_name, module in sorted(sys.modules.items()):
        if module is None or not module_name.startswith("kopfscale"):
            continue
        for attr, value in vars(module).items():
            if isinstance(value, stops) or attr.startswith("__") or isinstance(value, str | int | float):
                continue
            if id(value) in reported:
                continue
            reported.add(id(value))
            size, count = deep_size([value], stops, fences)
            if size >= 16 * 1024:
                out.append({"root": f"{module_name}.{attr}", "bytes": size, "objects": count})
    return sorted(out, key=lambda r: -int(r["bytes"]))


def tasks() -> dict[str, int]:
    try:
        running = asyncio.all_tasks(asyncio.get_running_loop())
    except RuntimeError:
        return {}
    counter: collections.Counter[str] = collections.Counter()
    for task in running:
        coro = task.get_coro()
        counter[getattr(coro, "__qualname__", type(coro).__name__)] += 1
    return dict(counter.most_common())


def take(top: int = 60) -> dict[str, Any]:
    """One census of this process (see the module docstring for what it counts)."""
    started = time.monotonic()
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)  # the other threads wait: a consistent snapshot
    try:
        rss = _rss_mib()
        pymalloc, glibc = pymalloc_stats(), glibc_stats()
        malloc_trim()  # before the census allocates: what glibc gives back of the operator's heap
        rss_trimmed = _rss_mib()
        gc.collect()
        kinds, tracked = by_type()
        total_bytes = sum(b for _, b in kinds.values())
        total_objects = sum(c for c, _ in kinds.values())
        ordered = sorted(kinds.items(), key=lambda kv: -kv[1][1])
        result: dict[str, Any] = {
            "pid": os.getpid(),
            "rss_mib": rss,
            "rss_after_trim_mib": rss_trimmed,
            "gc_tracked": tracked,
            "objects": total_objects,
            "object_bytes": total_bytes,
            "by_type": [[name, c, b] for name, (c, b) in ordered[:top]],
            "by_type_all": {name: [c, b] for name, (c, b) in ordered},
            "roots": roots(),
            "tasks": tasks(),
            "threads": threading.active_count(),
            "pymalloc": pymalloc,
            "glibc": glibc,
        }
    finally:
        sys.setswitchinterval(switch)
    del kinds, ordered
    result["seconds"] = time.monotonic() - started
    return result


# --- the wrapper and the client -----------------------------------------------------------------------
def serve(kopfscale_args: list[str]) -> None:
    """Run kopfscale's CLI in this process, with a census on SIGUSR1 written to :func:`out_path`."""

    def on_signal(signum: int, frame: Any) -> None:
        path = out_path(os.getpid())
        data = take()
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data) + "\n")
        tmp.replace(path)
        print(f"census: {data['objects']} objects in {data['seconds']:.1f} s -> {path}", file=sys.stderr)

    signal.signal(signal.SIGUSR1, on_signal)
    from kopfscale.cli import main as kopfscale_main

    kopfscale_main(args=kopfscale_args, prog_name="kopfscale")


def request(pid: int, timeout: float = 300.0, directory: str | None = None) -> dict[str, Any]:
    """Ask the wrapper ``pid`` for a census and wait for it (in ``directory``: the wrapper's
    $KOPFSCALE_CENSUS_DIR, by default this process's, else the temporary directory)."""
    path = out_path(pid, directory)
    before = path.stat().st_mtime if path.exists() else 0.0
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_mtime > before:
            data: dict[str, Any] = json.loads(path.read_text())
            return data
        time.sleep(0.2)
    raise TimeoutError(f"no census from pid {pid} within {timeout:.0f} s (is it `bench.census serve`?)")


def per_object(before: dict[str, Any], after: dict[str, Any], objects: int) -> list[tuple[str, float, float]]:
    """(type, count per object, bytes per object) of what grew between two censuses, largest first."""
    a, b = before["by_type_all"], after["by_type_all"]
    rows = []
    for name in set(a) | set(b):
        count = b.get(name, [0, 0])[0] - a.get(name, [0, 0])[0]
        size = b.get(name, [0, 0])[1] - a.get(name, [0, 0])[1]
        rows.append((name, count / objects, size / objects))
    return sorted(rows, key=lambda r: -r[2])


def table(data: dict[str, Any], rows: int = 25) -> str:
    mib = 2**20
    lines = [
        f"RSS {data['rss_mib']:.0f} MiB "
        f"(after malloc_trim {data.get('rss_after_trim_mib', float('nan')):.0f}); "
        f"live Python objects {data['objects']} ({data['object_bytes'] / mib:.1f} MiB by getsizeof), "
        f"{data['gc_tracked']} GC-tracked; {data['threads']} threads; census took {data['seconds']:.1f} s",
    ]
    p, g = data.get("pymalloc") or {}, data.get("glibc") or {}
    if p:
        arenas = p.get("arena_total_bytes", 0)
        lines.append(
            f"pymalloc: {arenas / mib:.0f} MiB in arenas, {p.get('allocated_blocks', 0) / mib:.0f} MiB in "
            f"allocated blocks, "
            f"{(p.get('free_blocks', 0) + p.get('unused_pools', 0)) / mib:.0f} MiB free inside"
        )
    if g:
        lines.append(
            f"glibc: heap {g['arena'] / mib:.0f} MiB ({g['uordblks'] / mib:.0f} in use, "
            f"{g['fordblks'] / mib:.0f} free), mmapped {g['hblkhd'] / mib:.0f} MiB"
        )
    lines += ["", f"{'type':<60} {'count':>10} {'MiB':>8}"]
    lines += [
        f"{name[:60]:<60} {count:>10} {size / mib:>8.2f}" for name, count, size in data["by_type"][:rows]
    ]
    lines += [
        "",
        f"{'root (deep, not crossing modules/classes/loop/threads)':<60} {'objects':>10} {'MiB':>8}",
    ]
    lines += [
        f"{r['root'][:60]:<60} {r['objects']:>10} {r['bytes'] / mib:>8.2f}" for r in data["roots"][:rows]
    ]
    lines += ["", "asyncio tasks: " + ", ".join(f"{k} {v}" for k, v in list(data["tasks"].items())[:12])]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run kopfscale (arguments after --) with the SIGUSR1 census")
    s.add_argument("args", nargs=argparse.REMAINDER)
    t = sub.add_parser("take", help="census of a running `serve`")
    t.add_argument("--pid", type=int, required=True)
    t.add_argument("--out", type=Path)
    t.add_argument("--dir", help="the wrapper's $KOPFSCALE_CENSUS_DIR (default: this shell's, else /tmp)")
    t.add_argument("--rows", type=int, default=25)
    d = sub.add_parser("diff", help="per-object growth between two censuses")
    d.add_argument("before", type=Path)
    d.add_argument("after", type=Path)
    d.add_argument("--objects", type=int, required=True, help="objects added between the two")
    d.add_argument("--rows", type=int, default=25)
    args = parser.parse_args()
    if args.command == "serve":
        serve(args.args[1:] if args.args[:1] == ["--"] else args.args)
    elif args.command == "take":
        data = request(args.pid, directory=args.dir)
        if args.out:
            args.out.write_text(json.dumps(data, indent=1) + "\n")
        print(table(data, args.rows))
    else:
        before, after = json.loads(args.before.read_text()), json.loads(args.after.read_text())
        print(f"{'type':<60} {'per object':>10} {'bytes/object':>12}")
        for name, count, size in per_object(before, after, args.objects)[: args.rows]:
            print(f"{name[:60]:<60} {count:>10.2f} {size:>12.0f}")


if __name__ == "__main__":
    main()
