"""The long-lived parent of a background control plane (``make cluster-up``).

The control-plane processes die with their parent (PR_SET_PDEATHSIG), so this process is the
one handle to stop them all: SIGTERM it and everything it started is gone.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from kopfscale_devcluster.cluster import LocalCluster

READY_MARKER = "ready"
PID_FILE = "supervisor.pid"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--peers", action="store_true", help="Start KEDA too (external.metrics.k8s.io).")
    args = parser.parse_args(argv)
    state_dir: Path = args.state_dir.resolve()

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    cluster = LocalCluster(state_dir=state_dir, peers=args.peers)
    try:
        cluster.start()
    except Exception as e:
        print(f"control plane failed to start: {e}", file=sys.stderr, flush=True)
        return 1
    try:
        timings = ", ".join(f"{k}={v:.1f}s" for k, v in cluster.timings.items())
        print(f"control plane ready at {cluster.server} ({timings})", flush=True)
        (state_dir / READY_MARKER).write_text(cluster.server + "\n")
        while not stop.wait(1.0):
            cluster.check_alive()
    except RuntimeError as e:
        print(str(e), file=sys.stderr, flush=True)
        return 1
    finally:
        (state_dir / READY_MARKER).unlink(missing_ok=True)
        cluster.stop()
        (state_dir / PID_FILE).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
