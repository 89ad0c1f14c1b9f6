"""The metric egress policy as a pure decision: a hostile-input table, spellings, and settings.

Nothing here opens a socket: every non-loopback URL below is only ever passed to the decision
functions, never fetched.
"""

from __future__ import annotations

import ipaddress

import pytest

from kopfscale import egress
from kopfscale.egress import EgressPolicy, check_address, check_url, from_env, parse_address

#: A cluster Pod's view: loopback refused, the in-cluster API server Service at 10.96.0.1.
IN_CLUSTER = from_env(
    {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_PORT_443_TCP_ADDR": "10.96.0.1"},
    kubeconfig_server=None,
)
#: A developer's laptop: loopback allowed, the local control plane at 127.0.0.1:6443.
LOCAL = from_env({}, kubeconfig_server="https://127.0.0.1:6443")

#: (url, refusing rule fragment or None for allowed) under IN_CLUSTER.
HOSTILE: list[tuple[str, str | None]] = [
    # cloud metadata, every spelling
    ("http://169.254.169.254/latest/meta-data/", "cloud metadata address"),
    ("http://169.254.169.254:80/computeMetadata/v1/", "cloud metadata address"),
    ("http://2852039166/latest/meta-data/", "cloud metadata address"),  # decimal
    ("http://0xa9fea9fe/", "cloud metadata address"),  # hex
    ("http://0xA9.0xFE.0xA9.0xFE/", "cloud metadata address"),  # dotted hex
    ("http://0251.0376.0251.0376/", "cloud metadata address"),  # dotted octal
    ("http://169.254.43518/", "cloud metadata address"),  # a.b.c16
    ("http://169.16689662/", "cloud metadata address"),  # a.b24
    ("http://[::ffff:169.254.169.254]/", "cloud metadata address"),  # IPv4-mapped IPv6
    ("http://[::ffff:a9fe:a9fe]/", "cloud metadata address"),  # mapped, hex groups
    ("http://[0:0:0:0:0:ffff:169.254.169.254]/", "cloud metadata address"),
    ("http://[64:ff9b::a9fe:a9fe]/", "cloud metadata address"),  # NAT64
    ("http://[2002:a9fe:a9fe::1]/", "cloud metadata address"),  # 6to4
    ("http://[::169.254.169.254]/", "cloud metadata address"),  # IPv4-compatible
    ("http://169.254.169.254./", "cloud metadata address"),  # trailing dot
    ("http://user:pw@169.254.169.254/", "cloud metadata address"),
    ("https://169.254.169.254/", "cloud metadata address"),
    ("http://%31%36%39.254.169.254/", "cloud metadata address"),  # percent-encoded host
    ("http://[fd00:ec2::254]/latest/meta-data/", "AWS IPv6"),
    ("http://[FD00:EC2:0:0:0:0:0:254]/", "AWS IPv6"),
    ("http://[fd20:ce::254]/", "GCP IPv6"),
    ("http://100.100.100.200/latest/meta-data/", "Alibaba"),
    ("http://1684300000/", None),  # 100.100.10.224: not the metadata address
    ("http://168.63.129.16/machine", "Azure"),
    ("http://metadata.google.internal/computeMetadata/v1/", "cloud metadata name"),
    ("http://METADATA.GOOGLE.INTERNAL./", "cloud metadata name"),
    ("http://metadata/computeMetadata/v1/", "cloud metadata name"),
    ("http://metadata.internal.example/", "cloud metadata name"),
    ("http://instance-data/latest/", "AWS"),
    ("http://instance-data.ec2.internal/latest/", "AWS"),
    # link-local
    ("http://169.254.170.2/v2/credentials", "cloud metadata"),  # ECS: inside 169.254/16 anyway
    ("http://169.254.1.1/", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://[fe80::1%25eth0]/", "link-local"),
    ("http://[febf:ffff::1]/", "link-local"),
    # the API server
    ("https://kubernetes.default.svc/api/v1/secrets", "API server"),
    ("https://kubernetes.default.svc.cluster.local/api", "API server"),
    ("https://Kubernetes.Default.Svc.Cluster.Local./api", "API server"),
    ("https://kubernetes.default/api", "API server"),
    ("https://kubernetes/api", "API server"),
    ("https://10.96.0.1/api", "API server"),
    ("https://10.96.0.1:6443/api", "API server"),
    ("https://[::ffff:10.96.0.1]/api", "API server"),
    ("https://174063617/api", "API server"),  # 10.96.0.1 in decimal
    ("https://10.96.0.2/", None),  # a neighbour Service
    # the kubelet
    ("https://10.0.0.5:10250/pods", "kubelet port"),
    ("https://node-1.example:10250/pods", "kubelet port"),
    ("http://10.0.0.5:10255/pods", "kubelet read-only port"),
    ("https://10.0.0.5:10251/", None),
    # loopback is the operator itself in a Pod
    ("http://127.0.0.1:8080/healthz", "loopback"),
    ("http://127.0.0.2/", "loopback"),
    ("http://127.1/", "loopback"),
    ("http://2130706433/", "loopback"),
    ("http://0x7f000001/", "loopback"),
    ("http://0177.0.0.1/", "loopback"),
    ("http://[::1]/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://[::ffff:7f00:1]/", "loopback"),
    ("http://[0:0:0:0:0:0:0:1]/", "loopback"),
    # "this host", multicast, broadcast
    ("http://0.0.0.0:8080/", "unspecified"),
    ("http://0/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://224.0.0.1/", "multicast"),
    ("http://255.255.255.255/", "broadcast"),
    # not http(s), or no host at all
    ("file:///etc/passwd", "scheme 'file'"),
    ("gopher://10.0.0.1:70/", "scheme 'gopher'"),
    ("ftp://example.com/", "scheme 'ftp'"),
    ("http:///path", "no host"),
    ("http://[::1/", "cannot be parsed"),
    ("http://host:99999/", "cannot be parsed"),
    ("http://[not-an-ip]/", "cannot be parsed"),
    ("http://[1.2.3.4]/", "cannot be parsed"),
    # ordinary endpoints stay allowed
    ("http://prometheus.monitoring:9090", None),
    ("http://prometheus.monitoring.svc.cluster.local:9090/api/v1/query", None),
    ("https://queue-stats.default/stats", None),
    ("http://10.1.2.3:8080/metrics", None),
    ("http://192.168.1.10/", None),
    ("http://[2001:db8::1]:8080/", None),
    ("http://metadata-service.team-a/", None),  # only metadata.* and metadata itself are refused
    ("http://kubernetes-dashboard.kube-system/", None),
    ("http://256.1.1.1/", None),  # not an address: a (strange) host name, resolved and checked later
    ("http://1.2.3.4.5/", None),  # likewise
]


@pytest.mark.parametrize(("url", "rule"), HOSTILE, ids=[u for u, _ in HOSTILE])
def test_hostile_urls_in_a_cluster(url: str, rule: str | None) -> None:
    verdict = check_url(IN_CLUSTER, url)
    if rule is None:
        assert verdict.allowed, verdict.message
    else:
        assert not verdict.allowed, f"{url} was allowed"
        assert rule in verdict.rule, verdict.rule
        assert verdict.message == f"blocked by the operator's metric egress policy: {verdict.rule}"


def test_the_table_is_big_enough() -> None:
    assert len(HOSTILE) >= 60
    assert sum(rule is not None for _, rule in HOSTILE) >= 50


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://127.0.0.1:8080/stats", True),
        ("http://localhost:8080/stats", True),
        ("http://[::1]:8080/stats", True),
        ("https://127.0.0.1:6443/api/v1/secrets", False),  # the local control plane itself
        ("https://2130706433:6443/api", False),
        ("http://169.254.169.254/", False),  # still refused on a laptop
        ("http://metadata.google.internal/", False),
        ("http://127.0.0.1:10250/", False),
    ],
)
def test_outside_a_cluster_loopback_is_allowed_but_not_the_api_server(url: str, allowed: bool) -> None:
    verdict = check_url(LOCAL, url)
    assert verdict.allowed is allowed, verdict.rule


def test_the_api_server_of_the_kubeconfig_is_refused_on_its_port_only() -> None:
    assert not check_address(LOCAL, "127.0.0.1", 6443).allowed
    assert check_address(LOCAL, "127.0.0.1", 6444).allowed
    named = from_env({}, kubeconfig_server="https://api.example.test:8443")
    assert "API server" in check_url(named, "https://API.example.test:8443/").rule
    assert check_url(named, "https://api.example.test:9090/").allowed


@pytest.mark.parametrize(
    ("spelling", "expected"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("0X7F.0.0.1", "127.0.0.1"),
        ("0177.0.0.01", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),
        ("10.0.0.1.", "10.0.0.1"),
        ("0", "0.0.0.0"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
        ("fe80::1%eth0", "fe80::1"),
        ("256.0.0.1", None),
        ("1.2.3.4.5", None),
        ("08.0.0.1", None),  # 8 is not an octal digit
        ("0x", "0.0.0.0"),
        ("example.com", None),
        ("", None),
        ("4294967296", None),
    ],
)
def test_address_spellings(spelling: str, expected: str | None) -> None:
    parsed = parse_address(spelling)
    assert (str(parsed) if parsed is not None else None) == expected


def test_the_admins_deny_list_wins_over_loopback_and_allow_lists() -> None:
    policy = from_env(
        {"KOPFSCALE_EGRESS_DENY_CIDRS": "127.0.0.2/32", "KOPFSCALE_EGRESS_ALLOW_CIDRS": "127.0.0.0/8"}
    )
    assert policy.allow_loopback
    assert check_url(policy, "http://127.0.0.2:8080/").rule == "127.0.0.2 is in the denied range 127.0.0.2/32"
    assert check_url(policy, "http://[::ffff:127.0.0.2]:8080/").rule.startswith("::ffff:7f00:2 (= 127.0.0.2)")
    assert check_url(policy, "http://127.0.0.1:8080/").allowed


def test_allow_cidrs_open_holes_in_the_builtin_list() -> None:
    policy = from_env(
        {
            "KUBERNETES_SERVICE_HOST": "10.96.0.1",
            "KOPFSCALE_EGRESS_ALLOW_CIDRS": "169.254.10.0/24, 127.0.0.1/32",
        }
    )
    assert check_url(policy, "http://169.254.10.7/").allowed
    assert not check_url(policy, "http://169.254.169.254/").allowed
    assert check_url(policy, "http://127.0.0.1:9090/").allowed  # the one loopback address let in
    assert not check_url(policy, "http://127.0.0.2:9090/").allowed


def test_deny_hosts_and_ports_from_the_environment() -> None:
    policy = from_env(
        {"KOPFSCALE_EGRESS_DENY_HOSTS": "*.corp.example,vault", "KOPFSCALE_EGRESS_DENY_PORTS": "2379"}
    )
    assert "matches '*.corp.example'" in check_url(policy, "http://hr.corp.example/").rule
    assert "matches 'vault'" in check_url(policy, "http://VAULT./v1/").rule
    assert check_url(policy, "http://10.0.0.1:2379/").rule == "port 2379 is a denied port"
    assert check_url(policy, "http://corp.example/").allowed


@pytest.mark.parametrize(
    ("env", "complaint"),
    [
        (
            {"KOPFSCALE_EGRESS_DENY_CIDRS": "10.0.0.0/33"},
            "KOPFSCALE_EGRESS_DENY_CIDRS: '10.0.0.0/33' is not a CIDR",
        ),
        ({"KOPFSCALE_EGRESS_ALLOW_CIDRS": "ten"}, "'ten' is not a CIDR"),
        ({"KOPFSCALE_EGRESS_ALLOW_LOOPBACK": "maybe"}, "'maybe' is not true or false"),
        ({"KOPFSCALE_EGRESS_DENY_PORTS": "http"}, "'http' is not a port number"),
        ({"KOPFSCALE_EGRESS_DENY_PORTS": "70000"}, "'70000' is not a port number"),
    ],
)
def test_malformed_settings_are_refused(env: dict[str, str], complaint: str) -> None:
    with pytest.raises(
        egress.PolicyError, match=complaint.replace("/", ".").replace("(", ".").replace(")", ".")
    ):
        from_env(env)


def test_loopback_defaults_follow_where_the_operator_runs() -> None:
    assert from_env({}).allow_loopback is True
    assert from_env({"KUBERNETES_SERVICE_HOST": "10.96.0.1"}).allow_loopback is False
    assert from_env(
        {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KOPFSCALE_EGRESS_ALLOW_LOOPBACK": "true"}
    ).allow_loopback
    assert not from_env({"KOPFSCALE_EGRESS_ALLOW_LOOPBACK": "false"}).allow_loopback


def test_every_address_a_name_resolves_to_is_checked() -> None:
    # What the connector does after DNS: a public-looking name resolving to metadata is refused.
    assert "cloud metadata" in check_address(IN_CLUSTER, "169.254.169.254", 80).rule
    assert "loopback" in check_address(IN_CLUSTER, "::1", 80).rule
    assert "API server" in check_address(IN_CLUSTER, ipaddress.ip_address("10.96.0.1"), 443).rule
    assert check_address(IN_CLUSTER, "93.184.216.34", 443).allowed
    assert "not an IP address" in check_address(IN_CLUSTER, "example.com", 80).rule


def test_the_builtin_lists_can_be_switched_off_only_in_code() -> None:
    bare = EgressPolicy(allow_loopback=True, builtin=False)
    assert check_url(bare, "http://169.254.169.254/").allowed
    assert check_url(bare, "http://metadata.google.internal:10250/").allowed
