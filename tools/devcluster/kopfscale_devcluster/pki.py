"""Certificates and keys for a throwaway control plane, made with the openssl CLI.

Everything is generated per cluster in its state directory; nothing is reused between
clusters, so a leaked kubeconfig is useless once the cluster is gone.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

DAYS = "30"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _key(name: str, cwd: Path) -> None:
    _openssl(
        "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", f"{name}.key", cwd=cwd
    )


def _ca(name: str, cn: str, cwd: Path) -> None:
    _key(name, cwd)
    _openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        f"{name}.key",
        "-subj",
        f"/CN={cn}",
        "-days",
        DAYS,
        "-out",
        f"{name}.crt",
        cwd=cwd,
    )


def _signed(
    name: str, ca: str, subject: str, cwd: Path, *, server_sans: str | None = None, client_too: bool = False
) -> None:
    """A key and a certificate signed by ``ca``: a server's (with ``server_sans``; ``client_too``
    for mutual TLS with one certificate on both ends) or else a client's."""
    _key(name, cwd)
    _openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=cwd)
    ext = cwd / f"{name}.ext"
    if server_sans:
        usage = "serverAuth,clientAuth" if client_too else "serverAuth"
        ext.write_text(f"subjectAltName={server_sans}\nextendedKeyUsage={usage}\nkeyUsage=digitalSignature\n")
    else:
        ext.write_text("extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        f"{ca}.crt",
        "-CAkey",
        f"{ca}.key",
        "-CAcreateserial",
        "-days",
        DAYS,
        "-extfile",
        ext.name,
        "-out",
        f"{name}.crt",
        cwd=cwd,
    )


@dataclass(frozen=True)
class Pki:
    dir: Path

    def path(self, name: str) -> Path:
        return self.dir / name


def generate(pki_dir: Path) -> Pki:
    pki_dir.mkdir(parents=True, exist_ok=True)
    _ca("ca", "kopfscale-local-ca", pki_dir)
    _ca("front-proxy-ca", "kopfscale-local-front-proxy-ca", pki_dir)
    sans = ",".join(
        [
            "IP:127.0.0.1",
            "IP:10.0.0.1",
            "DNS:localhost",
            "DNS:kubernetes",
            "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc",
            "DNS:kubernetes.default.svc.cluster.local",
        ]
    )
    _signed("apiserver", "ca", "/CN=kube-apiserver", pki_dir, server_sans=sans)
    _signed("kwok", "ca", "/CN=kwok", pki_dir, server_sans="IP:127.0.0.1,DNS:localhost")
    _signed("admin", "ca", "/O=system:masters/CN=kopfscale-admin", pki_dir)
    _signed("front-proxy-client", "front-proxy-ca", "/CN=front-proxy-client", pki_dir)
    # ServiceAccount token signing: RSA, as the apiserver's issuer expects by default (RS256).
    _openssl(
        "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "sa.key", cwd=pki_dir
    )
    _openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki_dir)
    return Pki(pki_dir)
