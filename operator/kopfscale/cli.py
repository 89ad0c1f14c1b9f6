"""The ``kopfscale`` command: run the operator, serve a greeting, manage the local cluster."""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
from types import ModuleType

import click
import kopf


@click.group()
@click.version_option(package_name="kopfscale")
def main() -> None:
    """kopfscale: Greeter web apps and ScaledApp autoscaling on Kubernetes."""


@main.command()
@click.option(
    "-n", "--namespace", "namespaces", multiple=True, help="Namespace to watch (repeatable; globs allowed)."
)
@click.option("-A", "--all-namespaces", "clusterwide", is_flag=True, help="Watch every namespace.")
@click.option("-v", "--verbose", is_flag=True, help="Log handler activity.")
@click.option("-d", "--debug", is_flag=True, help="Log everything, including API traffic.")
@click.option("-q", "--quiet", is_flag=True, help="Log warnings and errors only.")
@click.option("--log-format", type=click.Choice(["plain", "full", "json"]), default="full", show_default=True)
@click.option(
    "--liveness",
    "liveness_endpoint",
    metavar="URL",
    help="kopf liveness endpoint, e.g. http://0.0.0.0:8080/healthz.",
)
@click.option("--standalone", is_flag=True, help="Do not use kopf peering (only one operator may run).")
@click.option("--peering", "peering_name", metavar="NAME", help="kopf peering object name.")
@click.option("--priority", type=int, default=None, help="Peering priority.")
@click.option(
    "--metrics-port",
    type=int,
    envvar="KOPFSCALE_METRICS_PORT",
    default=None,
    help="Serve Prometheus metrics on this port at /metrics (env KOPFSCALE_METRICS_PORT; 0: off).",
)
@click.option(
    "--metrics-address",
    envvar="KOPFSCALE_METRICS_ADDRESS",
    default="127.0.0.1",
    show_default=True,
    help="Address the /metrics endpoint binds to (env KOPFSCALE_METRICS_ADDRESS; 0.0.0.0 in a Pod).",
)
@click.option(
    "--log-prefix/--no-log-prefix",
    default=True,
    show_default=True,
    help="Start each log line about an object with [namespace/name] (plain and full formats).",
)
@click.option(
    "--egress-allow-cidr",
    "egress_allow",
    multiple=True,
    metavar="CIDR",
    help="Metric sources may reach this range despite the built-in egress deny list (repeatable).",
)
@click.option(
    "--egress-deny-cidr",
    "egress_deny",
    multiple=True,
    metavar="CIDR",
    help="Metric sources may never reach this range (repeatable; wins over every allow).",
)
@click.option(
    "--egress-deny-host",
    "egress_deny_hosts",
    multiple=True,
    metavar="PATTERN",
    help="Metric sources may never reach host names matching this glob, e.g. '*.corp' (repeatable).",
)
@click.option(
    "--egress-allow-loopback/--egress-refuse-loopback",
    "egress_loopback",
    default=None,
    help="Let metric sources reach 127.0.0.0/8 and ::1 (default: allowed outside a cluster, refused in one).",
)
def run(
    namespaces: tuple[str, ...],
    clusterwide: bool,
    verbose: bool,
    debug: bool,
    quiet: bool,
    log_format: str,
    liveness_endpoint: str | None,
    standalone: bool,
    peering_name: str | None,
    priority: int | None,
    metrics_port: int | None,
    metrics_address: str,
    log_prefix: bool,
    egress_allow: tuple[str, ...],
    egress_deny: tuple[str, ...],
    egress_deny_hosts: tuple[str, ...],
    egress_loopback: bool | None,
) -> None:
    """Run the operator until interrupted. The first line says on which cluster, with which scope."""
    from kopfscale import runinfo

    _egress_options(egress_allow, egress_deny, egress_deny_hosts, egress_loopback)
    if metrics_port is not None:
        os.environ["KOPFSCALE_METRICS_PORT"] = str(metrics_port)  # read by kopfscale.metrics at startup
    os.environ["KOPFSCALE_METRICS_ADDRESS"] = metrics_address
    if clusterwide and namespaces:
        raise click.UsageError("use either --namespace or --all-namespaces, not both")
    if priority is None and not standalone:
        from kopfscale.peering import random_priority

        priority = random_priority()  # replicas started alike must differ, or kopf pauses them all
    if not clusterwide and not namespaces:
        env_namespaces = [n for n in os.environ.get("KOPFSCALE_NAMESPACES", "").split(",") if n.strip()]
        if env_namespaces:
            namespaces = tuple(n.strip() for n in env_namespaces)
        else:
            clusterwide = True
    # The operator's settings say which namespaces it watches (its peering objects are there).
    os.environ["KOPFSCALE_NAMESPACES"] = "" if clusterwide else ",".join(namespaces)
    kopf.configure(
        verbose=verbose,
        debug=debug,
        quiet=quiet,
        log_format=kopf.LogFormat[log_format.upper()],
        log_prefix=log_prefix and log_format != "json",  # JSON lines carry the object as fields
    )
    import kopfscale.app  # noqa: F401  (registers the handlers)
    from kopfscale import settings

    try:
        port = settings.load().metrics_port
    except settings.SettingsError as e:
        raise click.UsageError(str(e)) from None
    context, server = runinfo.current_cluster()
    click.echo(
        runinfo.summary(
            context=context,
            server=server,
            clusterwide=clusterwide,
            namespaces=namespaces,
            standalone=standalone,
            peering_name=peering_name,
            priority=priority,
            metrics=f"http://{metrics_address}:{port}/metrics" if port else None,
            liveness=liveness_endpoint,
        ),
        err=True,
    )

    asyncio.run(
        kopf.operator(
            clusterwide=clusterwide,
            namespaces=namespaces,
            liveness_endpoint=liveness_endpoint,
            standalone=standalone or None,
            peering_name=peering_name,
            priority=priority,
        )
    )


def _egress_options(
    allow: tuple[str, ...], deny: tuple[str, ...], deny_hosts: tuple[str, ...], loopback: bool | None
) -> None:
    """The egress flags become the KOPFSCALE_EGRESS_* variables the operator reads (kopfscale.egress),
    added to what the environment already says; a malformed value stops here, before startup."""
    from kopfscale import egress

    def extend(key: str, values: tuple[str, ...]) -> None:
        if values:
            os.environ[key] = ",".join([*filter(None, [os.environ.get(key, "")]), *values])

    extend(egress.ENV_ALLOW_CIDRS, allow)
    extend(egress.ENV_DENY_CIDRS, deny)
    extend(egress.ENV_DENY_HOSTS, deny_hosts)
    if loopback is not None:
        os.environ[egress.ENV_ALLOW_LOOPBACK] = "true" if loopback else "false"
    try:
        egress.from_env()
    except egress.PolicyError as e:
        raise click.UsageError(f"egress policy: {e}") from None


@main.command()
@click.option(
    "--message", envvar="GREETER_MESSAGE", required=True, help="The greeting to serve (env GREETER_MESSAGE)."
)
@click.option("--port", envvar="GREETER_PORT", type=int, default=8080, show_default=True)
@click.option("--host", envvar="GREETER_HOST", default="0.0.0.0", show_default=True)
def greet(message: str, port: int, host: str) -> None:
    """Serve the greeting over HTTP: GET / (text or JSON) and GET /healthz."""
    from kopfscale_greeting.server import serve

    serve(message=message, host=host, port=port)


@main.command(
    "simulate",
    context_settings={
        "ignore_unknown_options": True,
        "allow_interspersed_args": False,
        "help_option_names": [],
    },
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def simulate(args: tuple[str, ...]) -> None:
    """What a ScaledApp would do to a metric trace, tick by tick (see docs/what-if.md).

    The real command (options, help) lives in kopfscale.simulate.command, imported only here.
    """
    from kopfscale.simulate.command import simulate as command

    command.main(list(args), prog_name="kopfscale simulate")


@main.group()
def cluster() -> None:
    """The local development control plane (etcd, kube-apiserver, ..., kwok)."""


DEVCLUSTER_MISSING = (
    "kopfscale cluster: a development command; the local control plane (kopfscale_devcluster) "
    "is not installed here: run it from a source checkout after `make dev`"
)


def _devcluster() -> ModuleType:
    """The dev-only package behind ``kopfscale cluster``: a source checkout has it, the image has not."""
    try:
        return importlib.import_module("kopfscale_devcluster.cli")
    except ModuleNotFoundError as e:
        if e.name is None or not e.name.startswith("kopfscale_devcluster"):
            raise
        click.echo(DEVCLUSTER_MISSING, err=True)
        sys.exit(2)


@cluster.command("up")
@click.option("--state-dir", default=".cluster", show_default=True)
@click.option("--peers", is_flag=True, help="Also start KEDA (operator + external.metrics.k8s.io server).")
def cluster_up(state_dir: str, peers: bool) -> None:
    """Start it in the background and print the KUBECONFIG export line."""
    sys.exit(_devcluster().up(state_dir, peers=peers))


@cluster.command("down")
@click.option("--state-dir", default=".cluster", show_default=True)
def cluster_down(state_dir: str) -> None:
    """Stop it and every process it started."""
    sys.exit(_devcluster().down(state_dir))


@cluster.command("reachable")
@click.option("--describe", is_flag=True, help="Print the server URL instead of just the exit status.")
def cluster_reachable(describe: bool) -> None:
    """Exit 0 when the current kubeconfig reaches an API server within a few seconds."""
    server = _devcluster().reachable()
    if describe and server:
        click.echo(server)
    sys.exit(0 if server else 1)


@cluster.command(
    "kubectl", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False}
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def cluster_kubectl(args: tuple[str, ...]) -> None:
    """Run the kubectl built with the local control plane (same version as its apiserver)."""
    kubectl = str(_devcluster().ensure_built().kubectl)
    os.execv(kubectl, [kubectl, *args])


if __name__ == "__main__":
    main()
