"""The peer pairs the shadow runs, and their traces. Pure: manifests are built, never applied here.

Each scenario is one workload (a Deployment whose Pods kwok runs) driven by one peer and watched
by one ScaledApp in ``mode: Observe`` with the same settings:

- ``hpa-cpu``: a plain HPA on CPU utilization (metrics-server reading kwok's simulated usage),
  created **without** ``behavior``, so the HPA takes its legacy path (scale-up limited to
  ``max(2 x current, 4)`` per sync, scale-down stabilized over the controller's 5 minutes);
- ``keda-average``: a KEDA ScaledObject with a ``metrics-api`` trigger (``AverageValue``, the
  default) reading the loopback endpoint; KEDA's HPA is the one deciding, on an External metric;
- ``keda-value``: the same with ``metricType: Value`` (the HPA multiplies the usage ratio by the
  ready Pods).

The ScaledApp reads the same endpoint as an ``http`` source (``?reader=kopfscale``; KEDA's URL says
``?reader=keda``, so the endpoint's log tells who read what when) or CPU through ``metrics.k8s.io``.
Polling is equal on every side: the HPA controller syncs every 5 s on the local control plane,
KEDA's ``pollingInterval`` and the ScaledApp's ``pollingInterval`` are 5 s.

The ScaledApp's ``scaleTargetRef`` is the Deployment the peer scales: a ScaledApp in mode
Observe writes nothing and conflicts with nobody, its ``Ready`` message names the peer.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

PeerKind = Literal["hpa", "keda"]
MetricKind = Literal["cpu", "http"]
TargetType = Literal["Utilization", "AverageValue", "Value"]

#: Seconds between decisions on every side: the HPA controller's sync period on the local control
#: plane (kopfscale_devcluster.keda.HPA_SYNC_PERIOD), KEDA's and kopfscale's pollingInterval.
PERIOD = 5
CPU_REQUEST_MILLICORES = 100
IMAGE = "registry.invalid/app:1"  # kwok runs no containers


@dataclass(frozen=True)
class Policy:
    type: Literal["Pods", "Percent"]
    value: int
    period: int

    def manifest(self) -> dict[str, Any]:
        return {"type": self.type, "value": self.value, "periodSeconds": self.period}


@dataclass(frozen=True)
class Rules:
    """One direction of an HPA v2 ``behavior``, every field spelled out (the API server's defaults)."""

    window: int
    policies: tuple[Policy, ...]
    select: Literal["Max", "Min", "Disabled"] = "Max"

    def manifest(self) -> dict[str, Any]:
        return {
            "stabilizationWindowSeconds": self.window,
            "selectPolicy": self.select,
            "policies": [p.manifest() for p in self.policies],
        }


DEFAULT_UP = Rules(0, (Policy("Percent", 100, 15), Policy("Pods", 4, 15)))
DEFAULT_DOWN = Rules(300, (Policy("Percent", 100, 15),))


@dataclass(frozen=True)
class Behavior:
    up: Rules = DEFAULT_UP
    down: Rules = DEFAULT_DOWN

    def manifest(self) -> dict[str, Any]:
        return {"scaleUp": self.up.manifest(), "scaleDown": self.down.manifest()}


#: Both directions' defaults except a short scale-down window, so a short trace sees scale-downs.
SHORT_WINDOW = Behavior(down=replace(DEFAULT_DOWN, window=15))
#: The HPA controller's ``--horizontal-pod-autoscaler-downscale-stabilization`` (upstream default),
#: what an HPA without ``behavior`` stabilizes scale-downs over.
LEGACY_DOWNSCALE_WINDOW = 300


@dataclass(frozen=True)
class Step:
    """One stretch of the trace.

    ``value``: the endpoint's number (``None``: it answers 500, a failed read), or for CPU each
    Pod's usage in millicores. ``unready``: Pods the driver marks ``Ready=False`` meanwhile (the
    oldest first); ``missing``: CPU Pods given zero usage, which metrics-server drops (Pods without
    metrics); ``replicas``: the driver scales the workload itself at the step's start (someone's
    ``kubectl scale``)."""

    seconds: float
    value: float | None
    unready: int = 0
    missing: int = 0
    replicas: int | None = None

    def describe(self, scenario: Scenario) -> str:
        if self.value is None:
            text = "endpoint fails (HTTP 500)"
        elif scenario.metric == "cpu":
            text = f"{self.value:g}m CPU per Pod"
        else:
            text = f"value {self.value:g}"
        extra = [f"{self.unready} Pod(s) unready"] if self.unready else []
        extra += [f"{self.missing} Pod(s) without metrics"] if self.missing else []
        extra += [f"scaled to {self.replicas} by hand"] if self.replicas is not None else []
        return text + (f" ({', '.join(extra)})" if extra else "")


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    peer: PeerKind
    metric: MetricKind
    target_type: TargetType
    target: float
    min_replicas: int
    max_replicas: int
    start_replicas: int
    behavior: Behavior | None  # None: left out (the HPA's legacy path; kopfscale: its defaults)
    fallback: tuple[int, int] | None = None  # (failureThreshold, replicas)
    steps: tuple[Step, ...] = field(default_factory=tuple)

    @property
    def duration(self) -> float:
        return sum(s.seconds for s in self.steps)

    @property
    def down_window(self) -> int:
        """The peer's scale-down stabilization window in seconds (and kopfscale's: the same)."""
        return self.behavior.down.window if self.behavior else LEGACY_DOWNSCALE_WINDOW

    def step_at(self, offset: float) -> int:
        """The index of the step in effect ``offset`` seconds into the trace (nominally)."""
        elapsed = 0.0
        for index, step in enumerate(self.steps):
            elapsed += step.seconds
            if offset < elapsed:
                return index
        return len(self.steps) - 1

    # --- manifests ----------------------------------------------------------------------------
    def labels(self) -> dict[str, str]:
        return {"app": self.name, "kopfscale.dev/shadow": "true"}

    def deployment(self) -> dict[str, Any]:
        """The workload; CPU usage comes from the Pods' annotations (the driver patches Pods, never
        the template: a template change would roll out new Pods and a new ReplicaSet)."""
        annotations: dict[str, str] = {}
        if self.metric == "cpu" and self.steps and self.steps[0].value is not None:
            annotations["kwok.x-k8s.io/usage-cpu"] = f"{self.steps[0].value:g}m"
        return {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": self.name, "labels": self.labels()},
            "spec": {
                "replicas": self.start_replicas,
                "selector": {"matchLabels": {"app": self.name}},
                "template": {
                    "metadata": {"labels": self.labels(), "annotations": annotations},
                    "spec": {
                        "containers": [
                            {
                                "name": "app",
                                "image": IMAGE,
                                "resources": {
                                    "requests": {"cpu": f"{CPU_REQUEST_MILLICORES}m", "memory": "64Mi"}
                                },
                            }
                        ]
                    },
                },
            },
        }

    def peer_object(self, url: str) -> dict[str, Any]:
        return self.hpa() if self.peer == "hpa" else self.scaled_object(url)

    def hpa(self) -> dict[str, Any]:
        assert self.metric == "cpu" and self.target_type == "Utilization", "the plain HPA pair is on CPU"
        spec: dict[str, Any] = {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": self.name},
            "minReplicas": self.min_replicas,
            "maxReplicas": self.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": int(self.target)},
                    },
                }
            ],
        }
        if self.behavior is not None:
            spec["behavior"] = self.behavior.manifest()
        return {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": self.name},
            "spec": spec,
        }

    def scaled_object(self, url: str) -> dict[str, Any]:
        assert self.metric == "http"
        spec: dict[str, Any] = {
            "scaleTargetRef": {"name": self.name},
            "pollingInterval": PERIOD,
            "minReplicaCount": self.min_replicas,
            "maxReplicaCount": self.max_replicas,
            "triggers": [
                {
                    "type": "metrics-api",
                    "metricType": self.target_type,
                    "metadata": {
                        "url": f"{url}?reader=keda",
                        "valueLocation": "value",
                        "targetValue": f"{self.target:g}",
                    },
                }
            ],
        }
        if self.behavior is not None:
            spec["advanced"] = {"horizontalPodAutoscalerConfig": {"behavior": self.behavior.manifest()}}
        if self.fallback is not None:
            spec["fallback"] = {"failureThreshold": self.fallback[0], "replicas": self.fallback[1]}
        return {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": {"name": self.name},
            "spec": spec,
        }

    @property
    def hpa_name(self) -> str:
        """The HPA that decides: the plain one, or the one KEDA creates for its ScaledObject."""
        return self.name if self.peer == "hpa" else f"keda-hpa-{self.name}"

    def scaledapp(self, url: str) -> dict[str, Any]:
        """The shadow: mode Observe, same bounds, target, behavior and fallback as the peer."""
        if self.metric == "cpu":
            metric: dict[str, Any] = {
                "name": "cpu",
                "type": "resource",
                "resource": {"name": "cpu"},
                "target": {"type": self.target_type, "value": self.target},
            }
        else:
            metric = {
                "name": "load",
                "type": "http",
                "http": {"url": f"{url}?reader=kopfscale", "valueLocation": "$.value", "timeout": 3},
                "target": {"type": self.target_type, "value": self.target},
            }
        spec: dict[str, Any] = {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": self.name},
            "mode": "Observe",
            "minReplicas": self.min_replicas,
            "maxReplicas": self.max_replicas,
            "pollingInterval": PERIOD,
            "metrics": [metric],
        }
        if self.behavior is not None:
            spec["behavior"] = self.behavior.manifest()
        if self.fallback is not None:
            spec["fallback"] = {"failureThreshold": self.fallback[0], "replicas": self.fallback[1]}
        return {
            "apiVersion": "kopfscale.dev/v1",
            "kind": "ScaledApp",
            "metadata": {"name": self.name},
            "spec": spec,
        }


# --- the traces ---------------------------------------------------------------------------------------
def _hpa_cpu(steps: tuple[Step, ...]) -> Scenario:
    return Scenario(
        name="hpa-cpu",
        title="HPA on CPU utilization (no behavior: the HPA's legacy path)",
        peer="hpa",
        metric="cpu",
        target_type="Utilization",
        target=50,
        min_replicas=1,
        max_replicas=8,
        start_replicas=1,
        behavior=None,
        steps=steps,
    )


def _keda_average(steps: tuple[Step, ...], fallback: int = 6) -> Scenario:
    return Scenario(
        name="keda-average",
        title="KEDA metrics-api, AverageValue (its HPA on an External metric)",
        peer="keda",
        metric="http",
        target_type="AverageValue",
        target=10,
        min_replicas=1,
        max_replicas=10,
        start_replicas=1,
        behavior=SHORT_WINDOW,
        fallback=(2, fallback),
        steps=steps,
    )


def _keda_value(steps: tuple[Step, ...]) -> Scenario:
    return Scenario(
        name="keda-value",
        title="KEDA metrics-api, Value (the HPA multiplies by the ready Pods)",
        peer="keda",
        metric="http",
        target_type="Value",
        target=20,
        min_replicas=1,
        max_replicas=10,
        start_replicas=2,
        behavior=SHORT_WINDOW,
        fallback=(3, 5),
        steps=steps,
    )


def short() -> list[Scenario]:
    """The test's trace: about 110 s per pair, the three pairs at once.

    hpa-cpu: 40 % (ratio 0.8: stays 1), then 250 % (ratio 5: the legacy limit lets the HPA go
    1 -> 4, then new Pods without metrics), 52 % (within tolerance), 20 % (the 5-minute window holds).
    keda-average (target 10 per replica): 8, 45 (-> 5), 52 (within tolerance), 18 (window, then 2),
    failures (held, then fallback 6), 30.
    keda-value (target 20 in all): 20 at 2 replicas, 30 with one Pod unready (ratio 1.5 times 1 or
    2 Pods), 24 (climbs to max), 16 (down), failures (fallback 5), 20.
    """
    return [
        _hpa_cpu((Step(15, 40), Step(45, 250), Step(25, 52), Step(20, 20))),
        _keda_average((Step(15, 8), Step(20, 45), Step(15, 52), Step(25, 18), Step(20, None), Step(15, 30))),
        _keda_value(
            (Step(15, 20), Step(20, 30, unready=1), Step(20, 24), Step(25, 16), Step(25, None), Step(10, 20))
        ),
    ]


def full() -> list[Scenario]:
    """``make shadow``'s trace: about 7 minutes per pair, every situation of the short one, longer,
    twice where timing decides (the fallback count, the window's phase), plus a workload scaled
    to 0 by hand under the HPA, CPU Pods unready and without metrics, KEDA's fallback within the
    tolerance of the Pods there are, and recoveries."""
    return [
        _hpa_cpu(
            (
                Step(30, 40),
                Step(60, 250),
                Step(40, 52),
                Step(40, 80, unready=1),
                Step(40, 80),
                Step(40, 30, missing=1),
                Step(30, 30),
                Step(30, 30, replicas=0),
                Step(40, 30, replicas=1),
                Step(50, 120),
            )
        ),
        # fallback.replicas 9: failing at 10 replicas (after 95), 9 / 10 is within the tolerance.
        _keda_average(
            (
                Step(30, 8),
                Step(40, 45),
                Step(30, 52),
                Step(40, 18),
                Step(30, None),
                Step(40, 30),
                Step(30, 95),
                Step(40, None),
                Step(40, 61),
                Step(40, 12),
                Step(30, 12),
            ),
            fallback=9,
        ),
        _keda_value(
            (
                Step(30, 20),
                Step(40, 30, unready=1),
                Step(40, 24),
                Step(40, 16),
                Step(30, None),
                Step(40, 20),
                Step(40, 35, unready=2),
                Step(30, 19),
                Step(30, None),
                Step(40, 10),
            )
        ),
    ]


# --- as recorded ----------------------------------------------------------------------------------------
def to_json(s: Scenario) -> dict[str, Any]:
    """The scenario as run, kept with its recording (``--from`` classifies with what was run)."""
    return asdict(s)


def from_json(raw: dict[str, Any]) -> Scenario:
    def rules(r: dict[str, Any]) -> Rules:
        return Rules(r["window"], tuple(Policy(**p) for p in r["policies"]), r["select"])

    behavior = raw.get("behavior")
    return Scenario(
        **{
            **raw,
            "behavior": None
            if behavior is None
            else Behavior(rules(behavior["up"]), rules(behavior["down"])),
            "fallback": None if raw.get("fallback") is None else tuple(raw["fallback"]),
            "steps": tuple(Step(**step) for step in raw["steps"]),
        }
    )
