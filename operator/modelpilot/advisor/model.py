"""The advisor's plain data: a model's history on a time grid, and what it concludes."""

from typing import Literal, get_args

from pydantic import BaseModel, Field

from modelpilot.api.base import ApiModel
from modelpilot.api.spec import LatencyMetric
from modelpilot.settings import SettingField

Reason = Literal[
    "Thrash",
    "CapacityExhausted",
    "ColdStarts",
    "ConcurrencyTargetTooHigh",
    "ConcurrencyTargetTooLow",
    "PrematureScaleDown",
    "AsyncBacklog",
    "OverProvisioned",
    "IdleReplicas",
    "ColdStartsFromZero",
]
REASONS: tuple[str, ...] = get_args(Reason)
Series = list[float | None]  # one value per grid point; None = no data there
Evidence = float | int | str | list[float] | dict[str, float]

SIGNALS = (
    "concurrency",
    "latency",
    "rps",
    "errors",
    "active",
    "starting",
    "desired",
    "queue",
    "engine_queue",
    "kv_cache",
)


class History(BaseModel):
    """Signals for one model, aligned on `times` (unix seconds, `step` apart)."""

    times: list[float]
    step: float
    concurrency: Series = Field(default_factory=list)  # average in-flight + queued requests
    latency: Series = Field(default_factory=list)  # the objective's latency and percentile (s)
    rps: Series = Field(default_factory=list)  # requests/s, all classes
    errors: Series = Field(default_factory=list)  # 5xx requests/s
    active: Series = Field(default_factory=list)
    starting: Series = Field(default_factory=list)
    desired: Series = Field(default_factory=list)
    queue: Series = Field(default_factory=list)  # async queue size
    # The serving engine's own, when scraped (see advisor.source): requests waiting inside
    # the engine, and the share of its KV cache in use (0..1).
    engine_queue: Series = Field(default_factory=list)
    kv_cache: Series = Field(default_factory=list)
    gpu_utilization: Series = Field(default_factory=list)  # percent, when known
    # Measured by the operator from pods (creation to first Ready, status.coldStart), finer
    # than `starting` at the history's step; None: not measured.
    cold_start_seconds: float | None = None

    def since(self, t: float) -> "History":
        """The points after unix time `t`."""
        first = next((i for i, ts in enumerate(self.times) if ts > t), len(self.times))
        return self.points(first, len(self.times))

    def points(self, first: int, end: int) -> "History":
        """The points from index `first` up to (not including) `end`."""
        return self.model_copy(
            update={name: getattr(self, name)[first:end] for name in ("times", *SIGNALS)}
            | {"gpu_utilization": self.gpu_utilization[first:end]}
        )

    def coverage(self, signal: str) -> float:
        values: Series = getattr(self, signal)
        return sum(v is not None for v in values) / len(self.times) if self.times else 0.0


class Prediction(ApiModel):
    """One setting's replay over the lookback's traffic."""

    replicas: float  # on average (replica-hours per hour)
    within_objective: float | None  # share of busy points within the objective
    scale_events_per_hour: float


class Predicted(ApiModel):
    current: Prediction
    recommended: Prediction


class Recommendation(ApiModel):
    setting: SettingField  # camelCase on the wire, as in spec.autoscaling
    current: int
    recommended: int
    reason: Reason
    message: str
    evidence: dict[str, Evidence]
    confidence: float  # 0..1: how sure, from how much and how clear the evidence is
    predicted: Predicted | None = None  # from a replay of the lookback (advisor.predict)


class Evaluation(ApiModel):
    namespace: str
    name: str
    status: Literal["ok", "insufficient-data"]
    recommendations: list[Recommendation] = Field(default_factory=list)
    missing: list[str] = Field(default_factory=list)  # signals absent or too sparse
    message: str = ""


GOAL = 0.99  # share of busy points within the objective that counts as meeting it


class Objective(BaseModel):
    """Latency to judge against: the user's objective, or the model's quiet baseline."""

    metric: LatencyMetric = "EndToEnd"
    percentile: int = 95
    seconds: float | None = None  # None: derive from the quiet-period baseline
