"""The metric egress policy: which addresses a ScaledApp's metric sources may make the operator reach.

ScaledApps are written by application teams, but their metric URLs are fetched from the
operator's Pod, with the operator's network position. Without a policy a tenant could point a
metric at the cloud metadata service, the API server, or a kubelet, and use the operator as a
proxy. This module is the pure half of the defence: typed settings and a decision function.
The I/O half (``kopfscale.scaledapp.sources.fetch``) calls :func:`check_url` before a request
and :func:`check_address` on every address DNS returns, just before it connects, so a name
that resolves (or re-resolves) to a refused address is refused too.

Order of the decision for one address (the first rule that matches wins):

1. the admin's deny CIDRs (``--egress-deny-cidr``): refused;
2. the admin's allow CIDRs (``--egress-allow-cidr``): allowed (holes in the rules below);
3. loopback (127.0.0.0/8, ::1): refused unless loopback is allowed;
4. the built-in deny list (link-local, cloud metadata, unspecified, multicast), the API
   server's own addresses, and the denied ports (the kubelet's 10250, 10255): refused;
5. anything else: allowed.

Host names are checked before any DNS lookup, against the built-in and the admin's deny host
patterns (``metadata.google.internal``, ``metadata.*``, ``kubernetes.default.svc*``, ...).
IP literals are normalised first, the way resolvers read them: ``2130706433``, ``0x7f.1``,
``0177.0.0.1``, ``[::ffff:127.0.0.1]`` and NAT64/6to4 embeddings are all 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import fnmatch
import ipaddress
import os
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MESSAGE_PREFIX = "blocked by the operator's metric egress policy"

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))

#: Built-in refusals: (network, why). Cloud metadata services live at these addresses; link-local
#: covers AWS/GCP/Azure/OpenStack's 169.254.169.254 and ECS's 169.254.170.2.
DEFAULT_DENY_CIDRS: tuple[tuple[str, str], ...] = (
    ("169.254.169.254/32", "is the cloud metadata address"),
    ("169.254.170.2/32", "is the cloud metadata address of containers (AWS ECS credentials)"),
    ("fd00:ec2::254/128", "is the cloud metadata address (AWS IPv6)"),
    ("fd20:ce::254/128", "is the cloud metadata address (GCP IPv6)"),
    ("100.100.100.200/32", "is the cloud metadata address (Alibaba Cloud)"),
    ("168.63.129.16/32", "is a cloud platform address (Azure WireServer)"),
    ("169.254.0.0/16", "is in the link-local range"),
    ("fe80::/10", "is in the link-local range"),
    ("0.0.0.0/8", "is an unspecified address (this host)"),
    ("::/128", "is an unspecified address (this host)"),
    ("224.0.0.0/4", "is in the multicast range"),
    ("ff00::/8", "is in the multicast range"),
    ("255.255.255.255/32", "is the broadcast address"),
)

#: Built-in refused host names (glob patterns, matched case-insensitively, trailing dot ignored).
DEFAULT_DENY_HOSTS: tuple[tuple[str, str], ...] = (
    ("metadata.google.internal", "cloud metadata name"),
    ("metadata", "cloud metadata name"),
    ("metadata.*", "cloud metadata name"),
    ("instance-data", "cloud metadata name (AWS)"),
    ("instance-data.*", "cloud metadata name (AWS)"),
    ("kubernetes", "the Kubernetes API server"),
    ("kubernetes.default", "the Kubernetes API server"),
    ("kubernetes.default.svc*", "the Kubernetes API server"),
)

#: Built-in refused ports: the kubelet's API (10250) and its read-only port (10255).
DEFAULT_DENY_PORTS: tuple[tuple[int, str], ...] = ((10250, "kubelet port"), (10255, "kubelet read-only port"))


@dataclass(frozen=True)
class Verdict:
    """The outcome of a check: allowed, or the rule that refused (for status and events)."""

    allowed: bool
    rule: str = ""

    @property
    def message(self) -> str:
        return f"{MESSAGE_PREFIX}: {self.rule}"


ALLOWED = Verdict(True)


def refused(rule: str) -> Verdict:
    return Verdict(False, rule)


@dataclass(frozen=True)
class ApiServerEndpoint:
    """An address of the API server; ``port`` None means every port of that address."""

    address: IPAddress
    port: int | None = None


@dataclass(frozen=True)
class EgressPolicy:
    """The operator-wide policy. The defaults are the safe ones; see :func:`from_env`."""

    allow_loopback: bool = False
    allow_cidrs: tuple[IPNetwork, ...] = ()
    deny_cidrs: tuple[IPNetwork, ...] = ()
    deny_hosts: tuple[str, ...] = ()
    deny_ports: tuple[int, ...] = ()
    api_server: tuple[ApiServerEndpoint, ...] = ()
    api_server_hosts: tuple[tuple[str, int | None], ...] = ()  # names of the API server (kubeconfig)
    builtin: bool = True  # the built-in deny lists (addresses, names, ports)
    _default_nets: tuple[tuple[IPNetwork, str], ...] = field(
        default_factory=lambda: tuple((ipaddress.ip_network(c), why) for c, why in DEFAULT_DENY_CIDRS),
        repr=False,
        compare=False,
    )

    def describe(self) -> str:
        """One line for the startup log."""
        parts = [f"loopback {'allowed' if self.allow_loopback else 'refused'}"]
        if self.allow_cidrs:
            parts.append("allow " + ",".join(map(str, self.allow_cidrs)))
        if self.deny_cidrs:
            parts.append("deny " + ",".join(map(str, self.deny_cidrs)))
        if self.deny_hosts:
            parts.append("deny hosts " + ",".join(self.deny_hosts))
        if self.deny_ports:
            parts.append("deny ports " + ",".join(map(str, self.deny_ports)))
        if self.api_server:
            parts.append(
                "API server "
                + ",".join(f"{e.address}" + (f":{e.port}" if e.port else "") for e in self.api_server)
            )
        return "; ".join(parts)


# --- normalisation -------------------------------------------------------------------------------


def _inet_aton_part(text: str) -> int | None:
    """One part of a dotted IPv4 in inet_aton(3) syntax: decimal, 0x hex, or 0-prefixed octal."""
    if not text:
        return None
    try:
        if text[:2] in ("0x", "0X"):
            return int(text[2:], 16) if text[2:] else 0
        if len(text) > 1 and text[0] == "0":
            return int(text[1:], 8)
        if text.isdigit():
            return int(text, 10)
    except ValueError:
        return None
    return None


def parse_ipv4_loose(text: str) -> ipaddress.IPv4Address | None:
    """An IPv4 address in any spelling inet_aton(3) (and so getaddrinfo) accepts, else None.

    ``2130706433``, ``0x7f000001``, ``0177.0.0.1``, ``127.1``, ``127.0.1`` are all 127.0.0.1.
    """
    parts = text.split(".")
    if text.endswith(".") and len(parts) > 1:  # a trailing dot is the DNS root
        parts = parts[:-1]
    if not 1 <= len(parts) <= 4:
        return None
    values = [_inet_aton_part(p) for p in parts]
    if any(v is None for v in values):
        return None
    nums = [v for v in values if v is not None]
    *head, last = nums
    if any(v > 255 for v in head) or last >= 256 ** (5 - len(nums)):
        return None
    value = 0
    for v in head:
        value = value * 256 + v
    value = value * 256 ** (5 - len(nums)) + last
    return ipaddress.IPv4Address(value)


def parse_address(host: str) -> IPAddress | None:
    """The IP address a URL host or a resolved address denotes, if it is an IP literal."""
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if "%" in text:  # an IPv6 zone (fe80::1%eth0, or percent-encoded %25eth0)
        text = text.split("%", 1)[0]
    if ":" in text:
        try:
            return ipaddress.IPv6Address(text)
        except ValueError:
            return None
    return parse_ipv4_loose(text)


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_COMPAT = ipaddress.ip_network("::/96")


def normalise(address: IPAddress) -> IPAddress:
    """The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4), else itself."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address in _NAT64 or address in _NAT64_LOCAL:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address in _COMPAT and int(address) > 1:  # ::a.b.c.d (deprecated), not :: and ::1
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def normalise_host(host: str) -> str:
    """A host name as DNS sees it: lower case, no trailing dot, IDNA (punycode) for non-ASCII."""
    name = host.strip().rstrip(".").lower()
    with contextlib.suppress(UnicodeError):
        name = name.encode("idna").decode("ascii")
    return name


# --- decisions -----------------------------------------------------------------------------------


def check_address(policy: EgressPolicy, address: str | IPAddress, port: int) -> Verdict:
    """May the operator connect to ``address`` (an IP, after DNS) on ``port``?"""
    parsed = address if not isinstance(address, str) else parse_address(address)
    if parsed is None:
        return refused(f"{address!r} is not an IP address")
    ip = normalise(parsed)
    shown = str(ip) if ip == parsed else f"{parsed} (= {ip})"
    for net in policy.deny_cidrs:
        if ip.version == net.version and ip in net:
            return refused(f"{shown} is in the denied range {net}")
    for net in policy.allow_cidrs:
        if ip.version == net.version and ip in net:
            return ALLOWED
    if any(ip.version == net.version and ip in net for net in LOOPBACK) and not policy.allow_loopback:
        return refused(
            f"{shown} is a loopback address (loopback is refused in a cluster: it is the operator)"
        )
    if policy.builtin:
        for net, why in policy._default_nets:
            if ip.version == net.version and ip in net:
                return refused(f"{shown} {why} ({net})")
    for endpoint in policy.api_server:
        if normalise(endpoint.address) == ip and endpoint.port in (None, port):
            return refused(f"{shown}:{port} is the Kubernetes API server")
    return _check_port(policy, port)


def _check_port(policy: EgressPolicy, port: int) -> Verdict:
    builtin = dict(DEFAULT_DENY_PORTS) if policy.builtin else {}
    if port in builtin:
        return refused(f"port {port} is the {builtin[port]}")
    if port in policy.deny_ports:
        return refused(f"port {port} is a denied port")
    return ALLOWED


def check_host(policy: EgressPolicy, host: str, port: int) -> Verdict:
    """May the operator look up and reach the host name ``host`` on ``port``? (Before DNS.)"""
    name = normalise_host(host)
    if not name:
        return refused("the URL has no host")
    patterns: list[tuple[str, str]] = [(p.lower(), "a denied host") for p in policy.deny_hosts]
    if policy.builtin:
        patterns += list(DEFAULT_DENY_HOSTS)
    for pattern, why in patterns:
        if fnmatch.fnmatchcase(name, pattern.rstrip(".")):
            return refused(f"host {name} matches {pattern!r} ({why})")
    for api_host, api_port in policy.api_server_hosts:
        if normalise_host(api_host) == name and api_port in (None, port):
            return refused(f"{name}:{port} is the Kubernetes API server")
    return _check_port(policy, port)


DEFAULT_PORTS = {"http": 80, "https": 443}


def check_url(policy: EgressPolicy, url: str) -> Verdict:
    """May the operator fetch ``url``? Checks the scheme, then the host as a name or an IP literal.

    For a name this is only the first half: the addresses it resolves to are checked with
    :func:`check_address` when connecting.
    """
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return refused("the URL cannot be parsed")
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        return refused(f"scheme {scheme or '(none)'!r} is not http or https")
    host = urllib.parse.unquote(parts.hostname or "")
    if not host:
        return refused("the URL has no host")
    effective_port = port if port is not None else DEFAULT_PORTS[scheme]
    address = parse_address(host)
    if address is not None:
        return check_address(policy, address, effective_port)
    if ":" in host or "[" in host:
        return refused(f"host {host!r} is not a valid address")
    return check_host(policy, host, effective_port)


# --- settings ------------------------------------------------------------------------------------

ENV_ALLOW_LOOPBACK = "KOPFSCALE_EGRESS_ALLOW_LOOPBACK"
ENV_ALLOW_CIDRS = "KOPFSCALE_EGRESS_ALLOW_CIDRS"
ENV_DENY_CIDRS = "KOPFSCALE_EGRESS_DENY_CIDRS"
ENV_DENY_HOSTS = "KOPFSCALE_EGRESS_DENY_HOSTS"
ENV_DENY_PORTS = "KOPFSCALE_EGRESS_DENY_PORTS"


class PolicyError(ValueError):
    """A setting of the egress policy is malformed (the operator refuses to start with it)."""


def _split(raw: str | None) -> list[str]:
    return [item.strip() for item in (raw or "").replace(" ", ",").split(",") if item.strip()]


def parse_cidrs(items: Iterable[str], what: str) -> tuple[IPNetwork, ...]:
    nets: list[IPNetwork] = []
    for item in items:
        try:
            nets.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise PolicyError(f"{what}: {item!r} is not a CIDR (e.g. 10.0.0.0/8 or fd00::/8)") from None
    return tuple(nets)


def parse_bool(raw: str, what: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise PolicyError(f"{what}: {raw!r} is not true or false")


def in_cluster(environ: Mapping[str, str]) -> bool:
    """Running in a Pod: the kubelet sets KUBERNETES_SERVICE_HOST in every container."""
    return bool(environ.get("KUBERNETES_SERVICE_HOST"))


def api_server_endpoints(
    environ: Mapping[str, str], kubeconfig_server: str | None
) -> tuple[tuple[ApiServerEndpoint, ...], tuple[tuple[str, int | None], ...]]:
    """The API server's addresses: the in-cluster Service (every port) and the kubeconfig's server
    (that port only, so a local control plane on 127.0.0.1 does not refuse all of loopback)."""
    addresses: list[ApiServerEndpoint] = []
    names: list[tuple[str, int | None]] = []
    for key in ("KUBERNETES_SERVICE_HOST", "KUBERNETES_PORT_443_TCP_ADDR"):
        value = environ.get(key)
        if value:
            address = parse_address(value)
            if address is not None:
                addresses.append(ApiServerEndpoint(address))
            else:
                names.append((value, None))
    if kubeconfig_server:
        try:
            parts = urllib.parse.urlsplit(kubeconfig_server)
            port = parts.port or DEFAULT_PORTS.get(parts.scheme, 443)
        except ValueError:
            parts, port = None, None
        if parts is not None and parts.hostname:
            address = parse_address(parts.hostname)
            if address is not None:
                addresses.append(ApiServerEndpoint(address, port))
            else:
                names.append((parts.hostname, port))
    return tuple(dict.fromkeys(addresses)), tuple(dict.fromkeys(names))


def from_env(environ: Mapping[str, str] | None = None, kubeconfig_server: str | None = None) -> EgressPolicy:
    """The policy the environment asks for (``kopfscale run`` flags set these variables).

    Loopback defaults to allowed outside a cluster (local development and tests serve metrics
    there) and to refused inside one (in a Pod, loopback is the operator itself).
    """
    env = os.environ if environ is None else environ
    raw_loopback = env.get(ENV_ALLOW_LOOPBACK, "").strip()
    allow_loopback = parse_bool(raw_loopback, ENV_ALLOW_LOOPBACK) if raw_loopback else not in_cluster(env)
    ports: list[int] = []
    for item in _split(env.get(ENV_DENY_PORTS)):
        if not item.isdigit() or not 0 < int(item) < 65536:
            raise PolicyError(f"{ENV_DENY_PORTS}: {item!r} is not a port number")
        ports.append(int(item))
    addresses, names = api_server_endpoints(env, kubeconfig_server)
    return EgressPolicy(
        allow_loopback=allow_loopback,
        allow_cidrs=parse_cidrs(_split(env.get(ENV_ALLOW_CIDRS)), ENV_ALLOW_CIDRS),
        deny_cidrs=parse_cidrs(_split(env.get(ENV_DENY_CIDRS)), ENV_DENY_CIDRS),
        deny_hosts=tuple(h.lower() for h in _split(env.get(ENV_DENY_HOSTS))),
        deny_ports=tuple(ports),
        api_server=addresses,
        api_server_hosts=names,
    )
