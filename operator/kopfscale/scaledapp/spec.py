"""Typed view of a ScaledApp's ``spec``, with every default applied in one place.

The CRD schema applies the same defaults on admission; they are repeated here so that the
policy never sees a missing field (objects created before a default existed, unit tests, and
``kubectl apply --validate=false`` all end up with the same meaning).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from kopfscale.scaledapp.sources import REGISTRY, Meaning, SourceError, SourceSpec, parse_source

TargetType = Literal["AverageValue", "Value", "Utilization"]
PolicyType = Literal["Pods", "Percent"]
SelectPolicy = Literal["Max", "Min", "Disabled"]
Mode = Literal["Auto", "Observe"]

DEFAULT_MIN_REPLICAS = 1
DEFAULT_POLLING_INTERVAL = 15  # seconds (the HPA's sync period; KEDA's default is 30)
DEFAULT_COOLDOWN_PERIOD = 300  # seconds of inactivity before scaling to zero (KEDA's default)
DEFAULT_INITIAL_COOLDOWN_PERIOD = 0  # seconds after creation during which zero is never chosen
DEFAULT_TOLERANCE = 0.1  # the HPA's --horizontal-pod-autoscaler-tolerance
DEFAULT_ACTIVATION_THRESHOLD = 0.0  # a metric is active when its value is strictly greater
DEFAULT_FAILURE_THRESHOLD = 3  # consecutive failures counted when no fallback is configured

# HPA v2 behavior defaults (kubernetes.io/docs/concepts/workloads/autoscaling/horizontal-pod-autoscale/).
DEFAULT_SCALE_DOWN_WINDOW = 300
DEFAULT_SCALE_UP_WINDOW = 0

# Without any ``behavior`` the HPA controller does not use those defaults (the API server fills
# them in only when ``behavior`` is present): ``horizontal.go`` takes its legacy path, a scale-up
# of at most max(2 x current, 4) per round and a scale-down stabilized over the controller's
# --horizontal-pod-autoscaler-downscale-stabilization (5 min), with no scale-down rate limit.
LEGACY_SCALE_UP_FACTOR = 2
LEGACY_SCALE_UP_MINIMUM = 4
LEGACY_DOWNSCALE_WINDOW = 300


@dataclass(frozen=True)
class Target:
    type: TargetType
    value: float


@dataclass(frozen=True)
class MetricSpec:
    name: str
    type: str  # a key of the source registry
    target: Target | None  # None only for floor sources (cron), whose value is a replica count
    activation_threshold: float
    raw: Mapping[str, Any]  # the whole item as written
    source: SourceSpec  # its source block, parsed once with the spec

    @property
    def meaning(self) -> Meaning:
        return self.source.meaning


@dataclass(frozen=True)
class ScalingPolicy:
    type: PolicyType
    value: int
    period_seconds: int


@dataclass(frozen=True)
class ScalingRules:
    stabilization_window_seconds: int
    select_policy: SelectPolicy
    policies: tuple[ScalingPolicy, ...]
    tolerance: float


DEFAULT_SCALE_UP_POLICIES = (ScalingPolicy("Percent", 100, 15), ScalingPolicy("Pods", 4, 15))
DEFAULT_SCALE_DOWN_POLICIES = (ScalingPolicy("Percent", 100, 15),)


@dataclass(frozen=True)
class Behavior:
    """``spec.behavior``. ``legacy``: the spec has no ``behavior`` at all, so the HPA controller's
    legacy rule applies (see :data:`LEGACY_SCALE_UP_FACTOR`); the rules below then only give the
    tolerance (0.1 each way) and the scale-down window (300 s)."""

    scale_up: ScalingRules = field(
        default_factory=lambda: ScalingRules(
            DEFAULT_SCALE_UP_WINDOW, "Max", DEFAULT_SCALE_UP_POLICIES, DEFAULT_TOLERANCE
        )
    )
    scale_down: ScalingRules = field(
        default_factory=lambda: ScalingRules(
            DEFAULT_SCALE_DOWN_WINDOW, "Max", DEFAULT_SCALE_DOWN_POLICIES, DEFAULT_TOLERANCE
        )
    )
    legacy: bool = False


@dataclass(frozen=True)
class Fallback:
    failure_threshold: int
    replicas: int


@dataclass(frozen=True)
class ScaleTargetRef:
    api_version: str
    kind: str
    name: str

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]


@dataclass(frozen=True)
class ScaledAppSpec:
    min_replicas: int
    max_replicas: int
    metrics: tuple[MetricSpec, ...]
    polling_interval: int = DEFAULT_POLLING_INTERVAL
    cooldown_period: int = DEFAULT_COOLDOWN_PERIOD
    initial_cooldown_period: int = DEFAULT_INITIAL_COOLDOWN_PERIOD
    behavior: Behavior = field(default_factory=Behavior)
    fallback: Fallback | None = None
    paused: bool = False
    mode: Mode = "Auto"
    template: Mapping[str, Any] | None = None
    scale_target_ref: ScaleTargetRef | None = None

    @property
    def failure_threshold(self) -> int:
        return self.fallback.failure_threshold if self.fallback else DEFAULT_FAILURE_THRESHOLD


class SpecError(ValueError):
    """The spec cannot be used (normally the CRD schema rejects such objects at admission)."""


def _int(raw: Any, default: int, what: str) -> int:
    if raw is None:
        return default
    if isinstance(raw, bool) or not isinstance(raw, int | float) or int(raw) != raw:
        raise SpecError(f"{what} must be an integer, got {raw!r}")
    return int(raw)


def _float(raw: Any, default: float, what: str) -> float:
    if raw is None:
        return default
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise SpecError(f"{what} must be a number, got {raw!r}")
    return float(raw)


def _rules(raw: Mapping[str, Any] | None, default: ScalingRules, what: str) -> ScalingRules:
    if not raw:
        return default
    raw_policies = raw.get("policies")
    policies = default.policies
    if raw_policies:
        policies = tuple(
            ScalingPolicy(
                type=p.get("type", "Pods"),
                value=_int(p.get("value"), 1, f"{what}.policies.value"),
                period_seconds=_int(p.get("periodSeconds"), 15, f"{what}.policies.periodSeconds"),
            )
            for p in raw_policies
        )
    select = raw.get("selectPolicy", "Max")
    if select not in ("Max", "Min", "Disabled"):
        raise SpecError(f"{what}.selectPolicy must be Max, Min or Disabled, got {select!r}")
    return ScalingRules(
        stabilization_window_seconds=_int(
            raw.get("stabilizationWindowSeconds"),
            default.stabilization_window_seconds,
            f"{what}.stabilizationWindowSeconds",
        ),
        select_policy=select,
        policies=policies,
        tolerance=_float(raw.get("tolerance"), default.tolerance, f"{what}.tolerance"),
    )


def _metric(raw: Mapping[str, Any]) -> MetricSpec:
    name = raw.get("name")
    type_ = raw.get("type")
    if not isinstance(name, str) or not name:
        raise SpecError("every metric needs a name")
    if type_ not in REGISTRY:
        raise SpecError(f"metric {name!r}: unknown type {type_!r}")
    try:
        source = parse_source(raw)
    except SourceError as e:
        raise SpecError(f"metric {name!r}: {e}") from None
    raw_target = raw.get("target")
    target: Target | None = None
    if raw_target:
        ttype = raw_target.get("type")
        if ttype not in ("AverageValue", "Value", "Utilization"):
            raise SpecError(f"metric {name!r}: unknown target type {ttype!r}")
        value = _float(raw_target.get("value"), 0.0, f"metric {name!r} target.value")
        if value <= 0:
            raise SpecError(f"metric {name!r}: target.value must be positive")
        target = Target(ttype, value)
    elif source.meaning is not Meaning.FLOOR:
        raise SpecError(f"metric {name!r}: a target is required for {type_} metrics")
    return MetricSpec(
        name=name,
        type=type_,
        target=target,
        activation_threshold=_float(
            raw.get("activationThreshold"),
            DEFAULT_ACTIVATION_THRESHOLD,
            f"metric {name!r} activationThreshold",
        ),
        raw=raw,
        source=source,
    )


def parse(spec: Mapping[str, Any]) -> ScaledAppSpec:
    """The typed spec; :class:`SpecError` for what the schema should have rejected."""
    min_replicas = _int(spec.get("minReplicas"), DEFAULT_MIN_REPLICAS, "minReplicas")
    if spec.get("maxReplicas") is None:
        raise SpecError("maxReplicas is required")
    max_replicas = _int(spec.get("maxReplicas"), 0, "maxReplicas")
    if min_replicas < 0 or max_replicas < 1 or min_replicas > max_replicas:
        raise SpecError(
            f"need 0 <= minReplicas <= maxReplicas and maxReplicas >= 1, got {min_replicas}..{max_replicas}"
        )
    raw_metrics = spec.get("metrics") or []
    if not raw_metrics:
        raise SpecError("at least one metric is required")
    metrics = tuple(_metric(m) for m in raw_metrics)

    raw_behavior = spec.get("behavior")
    defaults = Behavior()
    behavior = Behavior(
        scale_up=_rules((raw_behavior or {}).get("scaleUp"), defaults.scale_up, "behavior.scaleUp"),
        scale_down=_rules((raw_behavior or {}).get("scaleDown"), defaults.scale_down, "behavior.scaleDown"),
        # As the HPA: only a spec without any behavior (not even `behavior: {}`) is legacy.
        legacy=raw_behavior is None,
    )
    raw_fallback = spec.get("fallback")
    fallback = None
    if raw_fallback:
        fallback = Fallback(
            failure_threshold=_int(
                raw_fallback.get("failureThreshold"), DEFAULT_FAILURE_THRESHOLD, "fallback.failureThreshold"
            ),
            replicas=_int(raw_fallback.get("replicas"), min_replicas, "fallback.replicas"),
        )
    raw_ref = spec.get("scaleTargetRef")
    ref = None
    if raw_ref:
        ref = ScaleTargetRef(
            api_version=str(raw_ref.get("apiVersion", "apps/v1")),
            kind=str(raw_ref.get("kind", "Deployment")),
            name=str(raw_ref.get("name", "")),
        )
    template = spec.get("template")
    if (template is None) == (ref is None):
        raise SpecError("exactly one of template or scaleTargetRef must be set")
    mode = spec.get("mode", "Auto")
    if mode not in ("Auto", "Observe"):
        raise SpecError(f"mode must be Auto or Observe, got {mode!r}")
    polling_interval = _int(spec.get("pollingInterval"), DEFAULT_POLLING_INTERVAL, "pollingInterval")
    if polling_interval < 1:
        raise SpecError("pollingInterval must be at least 1 second")
    return ScaledAppSpec(
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        metrics=metrics,
        polling_interval=polling_interval,
        cooldown_period=_int(spec.get("cooldownPeriod"), DEFAULT_COOLDOWN_PERIOD, "cooldownPeriod"),
        initial_cooldown_period=_int(
            spec.get("initialCooldownPeriod"), DEFAULT_INITIAL_COOLDOWN_PERIOD, "initialCooldownPeriod"
        ),
        behavior=behavior,
        fallback=fallback,
        paused=bool(spec.get("paused", False)),
        mode=mode,
        template=template,
        scale_target_ref=ref,
    )
