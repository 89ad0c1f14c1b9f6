"""Credentials of the HTTP metric sources, from the ScaledApp's spec or from Secrets in its namespace.

``headersFrom``, ``basicAuth``, ``bearerToken`` and ``tls.ca`` in an ``http`` or ``prometheus``
block: a value is either in clear (``value``, for non-secrets) or a ``valueFrom.secretKeyRef``
(like a container env var). The references are parsed with the spec (pure); the Secrets are read
when a metric is read, through ``kopfscale.kube``'s transport, and kept for :data:`SECRET_TTL` seconds so a
settled ScaledApp costs no API call per round. Errors name the Secret and the key, never a value.
Only the ScaledApp's own namespace is ever read; the admission policy checks that its author may
get each Secret it names, and the operator needs ``rbac.readSecrets`` to read them at all.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kopfscale.scaledapp.sources.base import Config, SourceError

SECRET_TTL = 30.0  # seconds a Secret's data is reused before it is read again


@dataclass(frozen=True)
class SecretRef:
    name: str
    key: str

    def __str__(self) -> str:
        return f"Secret {self.name} key {self.key}"


@dataclass(frozen=True)
class Value:
    """A value in clear, or where to find it."""

    clear: str | None = None
    ref: SecretRef | None = None


@dataclass(frozen=True)
class Credentials:
    headers: tuple[tuple[str, Value], ...] = ()
    basic_username: Value | None = None
    basic_password: Value | None = None
    bearer_token: Value | None = None
    ca: Value | None = None

    @property
    def empty(self) -> bool:
        return not (self.headers or self.basic_password or self.bearer_token or self.ca)


def _ref(raw: Any, where: str) -> SecretRef:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("secretKeyRef"), Mapping):
        raise SourceError(f"{where}.valueFrom must have a secretKeyRef")
    ref = raw["secretKeyRef"]
    name, key = ref.get("name"), ref.get("key")
    if not isinstance(name, str) or not name or not isinstance(key, str) or not key:
        raise SourceError(f"{where}.valueFrom.secretKeyRef needs a name and a key")
    return SecretRef(name, key)


def _value(raw: Any, where: str, *, clear_allowed: bool) -> Value:
    if not isinstance(raw, Mapping):
        raise SourceError(f"{where} must be an object with value or valueFrom")
    has_clear, has_ref = "value" in raw, "valueFrom" in raw
    if has_clear == has_ref:
        raise SourceError(f"{where}: set exactly one of value and valueFrom")
    if has_clear:
        if not clear_allowed:
            raise SourceError(f"{where} must come from a Secret (valueFrom.secretKeyRef)")
        if not isinstance(raw["value"], str):
            raise SourceError(f"{where}.value must be a string")
        return Value(clear=raw["value"])
    return Value(ref=_ref(raw["valueFrom"], where))


def parse(config: Config) -> Credentials:
    """The credential fields of a block (pure; :class:`SourceError` if malformed)."""
    headers: list[tuple[str, Value]] = []
    raw_headers = config.get("headersFrom") or []
    if not isinstance(raw_headers, list):
        raise SourceError("headersFrom must be a list of {name, valueFrom}")
    for i, item in enumerate(raw_headers):
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str) or not item["name"]:
            raise SourceError(f"headersFrom[{i}] needs a name")
        headers.append((item["name"], Value(ref=_ref(item.get("valueFrom"), f"headersFrom[{i}]"))))
    basic = config.get("basicAuth")
    username = password = None
    if basic is not None:
        if not isinstance(basic, Mapping):
            raise SourceError("basicAuth must be an object with username and password")
        username = _value(basic.get("username"), "basicAuth.username", clear_allowed=True)
        password = _value(basic.get("password"), "basicAuth.password", clear_allowed=False)
    bearer = config.get("bearerToken")
    token = _value(bearer, "bearerToken", clear_allowed=False) if bearer is not None else None
    if token is not None and basic is not None:
        raise SourceError("set basicAuth or bearerToken, not both")
    tls = config.get("tls")
    ca = None
    if tls is not None:
        if not isinstance(tls, Mapping):
            raise SourceError("tls must be an object")
        if tls.get("ca") is not None:
            ca = _value(tls.get("ca"), "tls.ca", clear_allowed=True)
    return Credentials(tuple(headers), username, password, token, ca)


# --- reading Secrets --------------------------------------------------------------------------


@dataclass
class SecretCache:
    """Secret data per (namespace, name), each entry reused for ``ttl`` seconds."""

    ttl: float = SECRET_TTL
    _entries: dict[tuple[str, str], tuple[float, dict[str, str]]] = field(default_factory=dict)

    async def get(self, namespace: str, ref: SecretRef) -> str:
        key = (namespace, ref.name)
        entry = self._entries.get(key)
        if entry is None or time.monotonic() - entry[0] > self.ttl:
            data = await asyncio.to_thread(read_secret, namespace, ref.name)
            entry = self._entries[key] = (time.monotonic(), data)
        if ref.key not in entry[1]:
            raise SourceError(f"Secret {ref.name} has no key {ref.key!r}")
        encoded = entry[1][ref.key]
        try:
            return base64.b64decode(encoded).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            raise SourceError(f"{ref} is not UTF-8 text") from None

    def clear(self) -> None:
        self._entries.clear()


def read_secret(namespace: str, name: str) -> dict[str, str]:
    """The base64 data of a Secret; :class:`SourceError` saying why not (never any value)."""
    from kopfscale.kube import ApiError, path, transport

    try:
        secret = transport().request("GET", path("", "v1", "secrets", namespace, name), timeout=5)
    except ApiError as e:
        if e.status == 404:
            raise SourceError(f"Secret {name} does not exist in namespace {namespace}") from None
        if e.status == 403:
            raise SourceError(
                f"the operator may not read Secret {name} in namespace {namespace} "
                "(install it with rbac.readSecrets=true to use secretKeyRef)"
            ) from None
        if e.status is None:
            raise SourceError(f"reading Secret {name} failed: no answer from the API server") from None
        raise SourceError(f"reading Secret {name} failed: HTTP {e.status}") from None
    data = secret.get("data") or {}
    return {str(k): str(v) for k, v in data.items()}


SECRETS = SecretCache()


async def resolve(creds: Credentials, namespace: str, cache: SecretCache = SECRETS) -> dict[str, str]:
    """The headers the credentials add to a request."""

    async def value(v: Value) -> str:
        if v.ref is not None:
            return await cache.get(namespace, v.ref)
        return v.clear or ""

    headers: dict[str, str] = {}
    for name, v in creds.headers:
        headers[name] = await value(v)
    if creds.basic_password is not None:
        username = await value(creds.basic_username) if creds.basic_username is not None else ""
        pair = f"{username}:{await value(creds.basic_password)}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
    if creds.bearer_token is not None:
        headers["Authorization"] = f"Bearer {(await value(creds.bearer_token)).strip()}"
    for name, text in headers.items():
        if "\r" in text or "\n" in text:
            raise SourceError(f"the value of header {name} has a line break (check the Secret)")
    return headers


_contexts: dict[str, ssl.SSLContext] = {}


async def ca_bundle(creds: Credentials, namespace: str, cache: SecretCache = SECRETS) -> str | None:
    """The PEM of ``tls.ca`` (None: the system's CAs)."""
    if creds.ca is None:
        return None
    return await cache.get(namespace, creds.ca.ref) if creds.ca.ref is not None else creds.ca.clear or ""


def context_for(pem: str | None) -> ssl.SSLContext | None:
    """A TLS context trusting only the CAs of ``pem`` (None: the system's CAs)."""
    if pem is None:
        return None
    digest = hashlib.sha256(pem.encode()).hexdigest()
    context = _contexts.get(digest)
    if context is None:
        try:
            context = ssl.create_default_context(cadata=pem)
        except (ssl.SSLError, ValueError):
            raise SourceError("tls.ca is not a PEM bundle of certificates") from None
        if len(_contexts) > 256:
            _contexts.clear()
        _contexts[digest] = context
    return context
