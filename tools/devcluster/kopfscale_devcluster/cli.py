"""``kopfscale cluster up|down``: the local control plane in the background, for humans."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from kopfscale_devcluster.binaries import ensure_built
from kopfscale_devcluster.supervisor import PID_FILE, READY_MARKER


def _running_pid(state_dir: Path) -> int | None:
    try:
        pid = int((state_dir / PID_FILE).read_text().strip())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None
    return pid


def reachable(timeout: float = 3.0) -> str | None:
    """The server URL when the current kubeconfig answers ``/version``, else None."""
    import kubernetes

    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_kube_config(client_configuration=configuration)
    except Exception:
        try:
            kubernetes.config.load_incluster_config(client_configuration=configuration)
        except Exception:
            return None
    try:
        with kubernetes.client.ApiClient(configuration) as client:
            kubernetes.client.VersionApi(client).get_code(_request_timeout=timeout)
    except Exception:
        return None
    return str(configuration.host)


def up(state_dir_arg: str, timeout: float = 120.0, peers: bool = False) -> int:
    state_dir = Path(state_dir_arg).resolve()
    kubeconfig = state_dir / "kubeconfig"
    if _running_pid(state_dir) and (state_dir / READY_MARKER).exists():
        if peers and not (state_dir / "kubeconfig-keda").exists():
            print(f"the local control plane in {state_dir} runs without KEDA: stop it first", file=sys.stderr)
            return 1
        print(f"# the local control plane is already running (state in {state_dir})", file=sys.stderr)
        print(f"export KUBECONFIG={kubeconfig}")
        return 0
    binaries = ensure_built(peers=peers)
    if state_dir.exists():
        shutil.rmtree(state_dir)
    state_dir.mkdir(parents=True)
    env = {**os.environ, "PATH": os.pathsep.join([*map(str, binaries.bin_dirs), os.environ.get("PATH", "")])}
    with (state_dir / "supervisor.log").open("wb") as log:
        supervisor = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kopfscale_devcluster.supervisor",
                "--state-dir",
                str(state_dir),
                *(["--peers"] if peers else []),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
    (state_dir / PID_FILE).write_text(f"{supervisor.pid}\n")
    deadline = time.monotonic() + timeout
    while not (state_dir / READY_MARKER).exists():
        if supervisor.poll() is not None or time.monotonic() > deadline:
            supervisor.kill()
            print((state_dir / "supervisor.log").read_text(errors="replace")[-4000:], file=sys.stderr)
            print("the local control plane did not start; logs are in " + str(state_dir), file=sys.stderr)
            return 1
        time.sleep(0.2)
    print((state_dir / "supervisor.log").read_text().strip().splitlines()[-1], file=sys.stderr)
    print(f"export KUBECONFIG={kubeconfig}")
    return 0


def down(state_dir_arg: str, timeout: float = 30.0) -> int:
    state_dir = Path(state_dir_arg).resolve()
    pid = _running_pid(state_dir)
    if pid is None:
        print("no local control plane is running", file=sys.stderr)
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _running_pid(state_dir) == pid and time.monotonic() < deadline:
        time.sleep(0.2)
    if _running_pid(state_dir) == pid:
        os.kill(pid, signal.SIGKILL)
    (state_dir / PID_FILE).unlink(missing_ok=True)
    print("local control plane stopped", file=sys.stderr)
    return 0
