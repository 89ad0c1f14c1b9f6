"""Every HTTP request of the metric sources goes through here (``http`` and ``prometheus``).

The URLs are chosen by tenants (ScaledApp authors) but fetched from the operator's Pod, so this
is where a request is kept to what that author could do alone (see docs/deploy.md, "Tenant model"):

- **Egress policy** (:mod:`kopfscale.egress`): the URL is checked before anything happens, and
  every address DNS returns is checked by the connector's resolver just before it connects — the
  connection goes to exactly the checked addresses, so a name cannot be re-resolved ("rebound")
  around the check. IP literals, which aiohttp does not resolve, are checked on the URL.
- **Redirects** are followed by hand, within the same origin only (scheme, host, port) and at
  most :data:`MAX_REDIRECTS` hops, each hop checked again: headers and credentials never travel
  to a host the author did not name.
- **No cookie jar**: a cookie one endpoint sets is never sent anywhere, to no tenant.
- **Per-ScaledApp budget**: at most :data:`PER_SCALEDAPP` reads of one ScaledApp (and
  :data:`PER_NAMESPACE` of one namespace) in flight at a time, so slow endpoints of one tenant
  cannot hold the whole pool while the others time out. The read path takes a slot
  (:meth:`HttpClient.admit`) before it starts a read; a read shared by several ScaledApps
  (``shared``) holds one slot, of the ScaledApp that started it.
- **No read-back**: an error names the status code, the content type and the size — never bytes
  of the body, nor the server's own reason phrase (also server-chosen text).
"""

from __future__ import annotations

import asyncio
import http
import logging
import socket
import ssl
import urllib.parse
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from kopfscale import egress
from kopfscale.scaledapp.sources import credentials, evaluation
from kopfscale.scaledapp.sources.base import (
    Askers,
    ConfigT,
    Scaler,
    SourceContext,
    SourceError,
    Tenant,
    describe_url,
    redact_url,
)
from kopfscale.settings import OperatorSettings

logger = logging.getLogger(__name__)

#: We read numbers, not data dumps: a larger body is refused before it is parsed, which also
#: bounds what evaluating a valueLocation over it can cost.
MAX_BODY_BYTES = 1024 * 1024
#: Open connections to metric endpoints, per HTTP scaler.
CONNECTIONS = 128
#: Requests in flight per ScaledApp and per namespace (each waits for its turn within its own
#: timeout). 4 per ScaledApp: a ScaledApp's metrics are read concurrently, and more than four
#: HTTP metrics on one ScaledApp is rare; a namespace's ScaledApps together hold at most 32 of 128.
PER_SCALEDAPP = 4
PER_NAMESPACE = 32
MAX_REDIRECTS = 3
REDIRECTS = frozenset({301, 302, 303, 307, 308})


class EgressRefused(SourceError):
    """The egress policy refused the URL or every address it resolved to (nothing was sent)."""


@dataclass(frozen=True)
class Request:
    """One GET resolved for a ScaledApp: everything its response depends on, credentials included
    (``shared`` keys identical reads by it). ``repr`` leaves out the header values and the CA."""

    url: str
    params: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    ca: str | None = field(default=None, repr=False)  # the PEM trusted; None: the system's CAs


@dataclass(frozen=True)
class Response:
    status: int
    reason: str | None  # the standard phrase of the status, never the server's own
    content_type: str
    body: bytes

    @property
    def described(self) -> str:
        """``HTTP 500 Internal Server Error (text/html, 24 bytes)``: what an error may say of it."""
        return f"HTTP {self.status}" + (f" {self.reason}" if self.reason else "") + f" ({shape(self)})"


def shape(response: Response) -> str:
    kind = response.content_type or "no content type"
    return f"{kind}, {len(response.body)} bytes"


def standard_reason(status: int) -> str | None:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return None


# --- the egress policy at connect time ----------------------------------------------------------


class PolicyResolver(AbstractResolver):
    """Resolves with the default resolver, then keeps only the addresses the policy allows.

    aiohttp connects to exactly what this returns (and caches it for the DNS TTL), so the
    address checked is the address connected to.
    """

    def __init__(self, policy: egress.EgressPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self._inner = inner or aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed: list[ResolveResult] = []
        first_refusal: egress.Verdict | None = None
        for result in results:
            verdict = egress.check_address(self.policy, result["host"], port)
            if verdict.allowed:
                allowed.append(result)
            elif first_refusal is None:
                first_refusal = verdict
        if not allowed:
            rule = first_refusal.rule if first_refusal else "the name resolved to no address"
            raise EgressRefused(egress.refused(f"{host} resolves to {rule}").message)
        return allowed

    async def close(self) -> None:
        await self._inner.close()


# --- per-tenant budgets -------------------------------------------------------------------------


class Budgets:
    """One semaphore per key, alive only while someone holds or waits for it."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._semaphores: weakref.WeakValueDictionary[tuple[str, ...], asyncio.Semaphore] = (
            weakref.WeakValueDictionary()
        )

    def of(self, *key: str) -> asyncio.Semaphore:
        semaphore = self._semaphores.get(key)
        if semaphore is None:
            semaphore = self._semaphores[key] = asyncio.Semaphore(self.size)
        return semaphore


# --- the client ---------------------------------------------------------------------------------


class HttpClient:
    """A connection pool for one scaler; ``get`` before ``open`` is a clear error, not a leak."""

    def __init__(
        self,
        connections: int = CONNECTIONS,
        policy: egress.EgressPolicy | None = None,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self._connections = connections
        self._inner_resolver = resolver  # the DNS below the policy (tests give a fake one)
        self._fixed_policy = policy
        self.policy: egress.EgressPolicy = policy or egress.EgressPolicy()
        self._session: aiohttp.ClientSession | None = None
        self._per_scaledapp = Budgets(PER_SCALEDAPP)
        self._per_namespace = Budgets(PER_NAMESPACE)

    async def open(self, policy: egress.EgressPolicy | None = None) -> None:
        """Start the pool under ``policy`` (the operator's settings; a fixed one given at creation wins)."""
        if self._session is None:
            self.policy = self._fixed_policy or policy or egress.EgressPolicy()
            logger.info("Metric egress policy: %s", self.policy.describe())
            connector = aiohttp.TCPConnector(
                limit=self._connections, resolver=PolicyResolver(self.policy, self._inner_resolver)
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),  # no cookies kept, so none shared between tenants
                trust_env=False,  # no proxy from the environment: the policy checks the real peer
            )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def admit(self, tenant: Tenant) -> Callable[[], None]:
        """A slot of the ScaledApp's and of its namespace's budget for one read in flight; returns
        the function that gives both back (once, from whichever task ends the read)."""
        # The ScaledApp's own slot first: waiting for it must not hold a slot of the namespace
        # (16 queued metrics of two ScaledApps would otherwise hold all 32 and stall the others).
        own = self._per_scaledapp.of(tenant.namespace, tenant.scaledapp)
        await own.acquire()
        try:
            shared = self._per_namespace.of(tenant.namespace)
            await shared.acquire()
        except BaseException:
            own.release()
            raise
        held = [own, shared]  # given back namespace first

        def release() -> None:
            while held:
                held.pop().release()

        return release

    async def get(
        self,
        url: str,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        limit: int = MAX_BODY_BYTES,
    ) -> Response:
        """GET ``url`` within the policy, following same-origin redirects; the final response.

        The caller holds the budget (:meth:`admit`)."""
        if self._session is None:
            raise SourceError("the metric sources are not started (the operator is starting or stopping)")
        session = self._session
        current = url
        query: Mapping[str, str] | None = params
        for _hop in range(MAX_REDIRECTS + 1):
            verdict = egress.check_url(self.policy, current)
            if not verdict.allowed:
                raise EgressRefused(verdict.message)
            kwargs: dict[str, Any] = {"headers": dict(headers), "params": query, "allow_redirects": False}
            if ssl_context is not None:
                kwargs["ssl"] = ssl_context
            async with session.get(current, **kwargs) as response:
                location = response.headers.get("Location")
                if response.status in REDIRECTS and location:
                    target = urllib.parse.urljoin(str(response.url), location)
                    if origin(target) != origin(current):
                        raise SourceError(
                            f"HTTP {response.status} redirect to another origin, not followed "
                            "(redirects are followed within the same scheme, host and port only)"
                        )
                    current, query = target, None  # the Location carries its own query
                    continue
                body = await read_body(response, limit)
                return Response(
                    response.status, standard_reason(response.status), response.content_type, body
                )
        raise SourceError(f"more than {MAX_REDIRECTS} redirects, not followed further")


class HttpScaler(Scaler[ConfigT]):
    """A scaler that reads over HTTP: its :class:`HttpClient` opens and closes with the operator,
    and its label is its type and the URL in ``url_field`` (credentials redacted)."""

    url_field: ClassVar[str]

    def __init__(self) -> None:
        self.client = HttpClient()
        self.evaluate = evaluation.Evaluator()  # parses and searches large responses off the loop

    def describe(self, config: Mapping[str, Any]) -> str:
        return describe_url(self.type, config.get(self.url_field))

    async def request(
        self,
        ctx: SourceContext,
        creds: credentials.Credentials,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Request:
        """The GET of ``url`` for the ScaledApp of ``ctx``, its credentials resolved (Secrets read)."""
        extra = await credentials.resolve(creds, ctx.namespace)
        merged = {"Accept": "application/json", **(headers or {}), **extra}
        return Request(
            url,
            tuple((params or {}).items()),
            tuple(sorted(merged.items())),
            await credentials.ca_bundle(creds, ctx.namespace),
        )

    async def send(self, request: Request) -> Response:
        """Make the request (the caller holds a budget: :meth:`admit`)."""
        return await self.client.get(
            request.url,
            headers=dict(request.headers),
            params=dict(request.params) or None,
            ssl_context=credentials.context_for(request.ca),
        )

    async def admit(self, tenant: Tenant) -> Callable[[], None]:
        return await self.client.admit(tenant)

    async def read(self, config: ConfigT, ctx: SourceContext) -> float:
        """One read for one ScaledApp alone (the operator's read path shares them: ``shared``)."""
        resolved = await self.resolve(config, ctx)
        tenant = Tenant(ctx.namespace, ctx.scaledapp)
        release = await self.admit(tenant)
        try:
            return await self.perform(resolved, Askers(tenant))
        finally:
            release()

    async def open(self, settings: OperatorSettings) -> None:
        await self.client.open(settings.egress)

    async def close(self) -> None:
        await self.client.close()


def origin(url: str) -> tuple[str, str, int | None]:
    try:
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        port = parts.port or egress.DEFAULT_PORTS.get(scheme)
        return scheme, (parts.hostname or "").lower(), port
    except ValueError:
        return ("", url, None)


async def read_body(response: aiohttp.ClientResponse, limit: int = MAX_BODY_BYTES) -> bytes:
    """The whole response body, refusing more than ``limit`` bytes."""
    if response.content_length is not None and response.content_length > limit:
        raise SourceError(
            f"response is too large ({response.content_length} bytes of {response.content_type}, "
            f"limit {limit})"
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise SourceError(f"response is too large (more than {limit} bytes of {response.content_type})")
        chunks.append(chunk)
    return b"".join(chunks)


def http_status_error(status: int, reason: str | None, body: bytes, content_type: str = "") -> SourceError:
    """A :class:`SourceError` for a non-2xx response: status, content type and size, no body bytes."""
    return SourceError(Response(status, standard_reason(status), content_type, body).described)


def client_error(e: aiohttp.ClientError) -> str:
    """What a transport failure may say: where it could not connect, or only the kind of failure.

    A malformed response's parser error quotes the bytes it choked on (an SSH banner, a Redis
    reply): those are the other side's bytes, so only the error's kind is shown.
    """
    if isinstance(e, aiohttp.ClientConnectorCertificateError):
        return "the server's TLS certificate is not trusted (set tls.ca to trust its CA)"
    if isinstance(e, aiohttp.ClientConnectorError):
        reason = (
            e.os_error.strerror
            if e.os_error is not None and e.os_error.strerror
            else type(e.os_error).__name__
        )
        return f"Cannot connect to host {e.host}:{e.port}: {reason}"
    if isinstance(e, aiohttp.ServerDisconnectedError):
        return "the server closed the connection without a response"
    if isinstance(e, aiohttp.ServerTimeoutError):
        return "the server did not answer in time"
    if isinstance(e, aiohttp.InvalidURL):
        return f"invalid URL {redact_url(str(e.url))}"
    if isinstance(e, aiohttp.ClientResponseError | aiohttp.ClientPayloadError):
        return f"malformed HTTP response ({type(e).__name__})"
    if isinstance(e, aiohttp.ClientConnectionError):  # our side's socket errors: no peer bytes
        return " ".join((str(e) or type(e).__name__).split())
    return type(e).__name__
