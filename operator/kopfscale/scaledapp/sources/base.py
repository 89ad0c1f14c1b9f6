"""The metric-source interface (KEDA's ``pkg/scalers`` ``Scaler``) and the helpers sources share.

A source type is one module with one :class:`Scaler`: it parses its block of a metric once per
spec generation (``parse``: a bad block makes the ScaledApp ``InvalidSpec``, not an error every
round), names itself for humans (``describe``: the prefix of its errors), says what its number
*means* to the scaling policy (:class:`Meaning`, so the policy never names a source type), reads
one number (``read``) and owns its client (``open``/``close``, run with the operator). The
registry in the package's ``__init__`` lists them; adding a source is one module, one registry
line and one CRD block (a unit test holds the registry and the CRD to each other).
"""

from __future__ import annotations

import abc
import datetime
import enum
import math
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

if TYPE_CHECKING:
    from kopfscale.settings import OperatorSettings

DEFAULT_TIMEOUT = 3.0  # seconds, per source read, unless the source's ``timeout`` field says otherwise


@dataclass(frozen=True)
class PodGroup:
    """Pods of one kind in a per-Pod metric: each one's usage and request in milli-units
    (``MilliValue``, as the HPA sums them; a request is 0 when the target does not need it)."""

    usages: tuple[int, ...] = ()
    requests: tuple[int, ...] = ()

    @property
    def count(self) -> int:
        return len(self.requests)


@dataclass(frozen=True)
class PodSample:
    """A ``resource`` reading's Pods, grouped as the HPA's replica calculator groups them
    (``groupPods`` in replica_calculator.go), for the policy to count them as the HPA does:

    - ``ready``: Pods with metrics that count (for cpu, also past their start-up, see resource.py);
    - ``unready``: set aside: Pending, or (cpu) not yet ready or still starting;
    - ``missing``: set aside: Pods without metrics;
    - ``ignored``: never counted: being deleted, or Failed.

    ``value`` is what the HPA reports over the ready Pods: whole percent of their requests
    (truncated) for ``Utilization``, else their mean usage in base units (milli-units truncated).
    """

    utilization: bool
    ready: PodGroup
    unready: PodGroup = PodGroup()
    missing: PodGroup = PodGroup()
    ignored: int = 0

    @property
    def value(self) -> float:
        return usage_value(
            self.utilization, sum(self.ready.usages), sum(self.ready.requests), self.ready.count
        )


def usage_value(utilization: bool, usage: int, requests: int, count: int) -> float:
    """The HPA's numbers (metrics/utilization.go): ``int(100 * usage / requests)`` percent, or the
    mean usage ``usage // count`` milli-units, in base units."""
    if utilization:
        return float(usage * 100 // requests)
    return (usage // count) / 1000


@dataclass(frozen=True)
class MetricReading:
    """The outcome of reading one metric: either ``value`` or ``error`` is set; ``pods`` for a
    per-Pod metric whose Pods were seen (:class:`PodSample`)."""

    name: str
    value: float | None = None
    error: str | None = None
    pods: PodSample | None = field(default=None, compare=False)


@dataclass
class SourceContext:
    """What a read may need besides its own config; built by the autoscaler for each round."""

    namespace: str
    pod_selector: str | None  # label selector of the scaled workload's pods (used by ``resource``)
    now: Callable[[], datetime.datetime]  # injectable clock (used by ``cron``)
    scaledapp: str = ""  # the ScaledApp reading (its per-tenant budgets are keyed by it)
    #: Seconds between the ScaledApp's rounds: a result shared with another ScaledApp's identical
    #: read is given to this one only while it is younger than half of it (and 1 s), see ``shared``.
    polling_interval: float | None = None


@dataclass(frozen=True)
class Tenant:
    """Who a request is made for (a ScaledApp in its namespace): its budgets are keyed by it."""

    namespace: str
    scaledapp: str


class Askers:
    """The ScaledApps one read is made for: the one that started it, then any that joined it.

    A read shared between ScaledApps (``shared``) is charged to one of them at a time: its
    in-flight budget to the one that started it, its evaluation to the first with a free slot
    (``evaluation``). Those waiting for a slot are woken when another ScaledApp joins.
    """

    def __init__(self, first: Tenant) -> None:
        self.tenants: dict[Tenant, None] = {first: None}  # in the order they came (a set, ordered)
        self._watchers: set[Callable[[], None]] = set()

    def join(self, tenant: Tenant) -> None:
        if tenant not in self.tenants:
            self.tenants[tenant] = None
            for notify in list(self._watchers):
                notify()

    def watch(self, notify: Callable[[], None]) -> Callable[[], None]:
        """Call ``notify`` whenever a ScaledApp joins; returns the function that stops it."""
        self._watchers.add(notify)
        return lambda: self._watchers.discard(notify)


class SourceError(Exception):
    """A reading failed for a reason worth showing to the user as is (no traceback needed)."""


class Meaning(enum.Enum):
    """What a source's number means to the scaling policy (the HPA's metric kinds)."""

    #: A value for the whole workload (an HPA External/Object metric): with an ``AverageValue``
    #: target it is divided by the per-replica target, with ``Value`` it is a ratio to the target.
    TOTAL = "total"
    #: Already an average over the workload's pods (an HPA Resource metric): always a ratio.
    PER_POD = "perPod"
    #: A replica count to keep at least (KEDA's cron): no target, the max over metrics makes it a floor.
    FLOOR = "floor"


def _nothing() -> None:
    pass


Config = Mapping[str, Any]
ConfigT = TypeVar("ConfigT")


class Scaler(abc.ABC, Generic[ConfigT]):
    """One metric source type. Subclasses set ``type`` and ``meaning`` and implement the rest."""

    type: ClassVar[str]
    meaning: ClassVar[Meaning]

    @abc.abstractmethod
    def parse(self, config: Config, target_type: str | None) -> ConfigT:
        """The typed config of the metric's ``<type>`` block; :class:`SourceError` if unusable."""

    @abc.abstractmethod
    def describe(self, config: Config) -> str:
        """A short name for humans, from the raw block (it also prefixes the block's parse errors)."""

    @abc.abstractmethod
    async def read(self, config: ConfigT, ctx: SourceContext) -> float | PodSample:
        """One finite number (or, for a per-Pod metric, its Pods: :class:`PodSample`), or
        :class:`SourceError` with a reason fit for status."""

    # --- identical reads once (``shared``): a source whose reads are requests opts in ----------

    async def resolve(self, config: ConfigT, ctx: SourceContext) -> Any | None:
        """The read with everything resolved for this ScaledApp (URL, headers with the values of
        its Secrets, CA): a frozen dataclass on which the result depends and nothing else.

        ScaledApps whose reads resolve equal (and have the same timeout) share one ``perform``.
        None, the default: never shared, ``read`` is called for each. Raise :class:`SourceError`
        for what cannot be resolved (a missing Secret).
        """
        return None

    async def admit(self, tenant: Tenant) -> Callable[[], None]:
        """Take a slot of the in-flight budget of the ScaledApp starting a read; returns the
        function that gives it back (a shared read holds one slot, of the ScaledApp that started
        it, until it ends). No budget by default."""
        return _nothing

    async def perform(self, resolved: Any, askers: Askers) -> float:
        """Do a read ``resolve`` returned, for every ScaledApp in ``askers`` (never their configs)."""
        raise NotImplementedError(f"{self.type}: resolve() returned a read but perform() is missing")

    async def open(self, settings: OperatorSettings) -> None:
        """Start the source's client with the operator's settings (its startup); nothing by default."""

    async def close(self) -> None:
        """Release the client (the operator's cleanup); nothing by default."""


def timeout_of(config: Config) -> float:
    """The source's ``timeout`` field in seconds (default 3 s); must be a positive finite number."""
    raw = config.get("timeout")
    if raw is None:
        return DEFAULT_TIMEOUT
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw) or raw <= 0:
        raise SourceError(f"timeout must be a positive number of seconds, got {raw!r}")
    return float(raw)


def to_number(raw: Any, what: str) -> float:
    """A finite float from a JSON number or a numeric string; :class:`SourceError` otherwise."""
    if isinstance(raw, bool):
        raise SourceError(f"{what} is a boolean ({str(raw).lower()}), expected a number")
    if isinstance(raw, int | float):
        value = float(raw)
    elif isinstance(raw, str):
        try:
            value = float(raw.strip())
        except ValueError:
            # Never the string itself: it is the endpoint's data (docs/deploy.md, "Tenant model").
            raise SourceError(
                f"{what} is a non-numeric string ({len(raw)} characters), expected a number"
            ) from None
    elif raw is None:
        raise SourceError(f"{what} is null, expected a number")
    else:
        raise SourceError(f"{what} is {_json_kind(raw)}, expected a number")
    if not math.isfinite(value):
        raise SourceError(f"{what} is {raw!r}, expected a finite number")
    return value


def required_str(config: Config, field: str) -> str:
    raw = config.get(field)
    if not isinstance(raw, str) or not raw.strip():
        raise SourceError(f"field {field!r} is required and must be a non-empty string")
    return raw.strip()


def http_url(config: Config, field: str) -> str:
    url = required_str(config, field)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SourceError(f"field {field!r} must be an absolute http(s) URL, got {redact_url(url)!r}")
    return url


def describe_url(kind: str, url: Any) -> str:
    """``<kind> <url>`` for a source's label, credentials redacted; just ``<kind>`` without a URL."""
    return f"{kind} {redact_url(url)}" if isinstance(url, str) and url else kind


_AUTHORITY = re.compile(
    r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*:)?(?P<slashes>//)?(?P<authority>[^/?#]*)(?P<rest>.*)$", re.S
)
_CREDENTIAL_PARAM = re.compile(
    r"(?i)([?&;](?:[^=&#;]*(?:token|secret|password|passwd|pwd|apikey|api[-_]key|auth|signature|sig|credential|session)[^=&#;]*)=)([^&#;]*)"
)


def redact_url(url: str) -> str:
    """The URL without credentials, whatever its shape (error messages end up in status).

    Works on the raw text, so a URL that does not parse (a bad port, an unclosed bracket) is
    redacted too: everything before the last ``@`` of the authority becomes ``***``, and the
    values of query parameters named like credentials (``token``, ``api_key``, ...) become ``***``.
    """
    match = _AUTHORITY.match(url)
    if match is None:  # pragma: no cover - the pattern matches every string
        return "***"
    authority = match["authority"]
    if "@" in authority:
        authority = "***@" + authority.rsplit("@", 1)[1]
    rest = _CREDENTIAL_PARAM.sub(lambda m: m.group(1) + "***", match["rest"])
    return f"{match['scheme'] or ''}{match['slashes'] or ''}{authority}{rest}"


def _short(text: str, limit: int = 60) -> str:
    text = _oneline(text)
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _oneline(text: str) -> str:
    return " ".join(text.split())


def _json_kind(raw: Any) -> str:
    if isinstance(raw, Mapping):
        return "an object"
    if isinstance(raw, list | tuple):
        return "a list"
    return f"a {type(raw).__name__}"
