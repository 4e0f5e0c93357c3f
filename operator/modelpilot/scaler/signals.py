"""Average concurrency per model from Prometheus, batched: one query per distinct
autoscaling window for all models (usually one query in all).

rate() of modelpilot_concurrency_seconds_total over the window is the exact average
concurrency over that window (the counter is the integral), per pod and state; the sum
over pods and states (active + queued) is the model's demand. Series of pods that went
away during the window still count for the time they served.
"""

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modelpilot.api import Key

METRIC = "modelpilot_concurrency_seconds_total"


@dataclass
class Concurrency:
    average: float = 0.0
    pods: set[str] = field(default_factory=set)


def query(window_seconds: int) -> str:
    return f"rate({METRIC}[{window_seconds}s])"


def parse(result: Iterable[Mapping[str, Any]]) -> dict[Key, Concurrency]:
    """An instant-vector result -> demand per (namespace, model_deployment)."""
    out: dict[Key, Concurrency] = defaultdict(Concurrency)
    for series in result:
        labels = series.get("metric", {})
        namespace, model = labels.get("namespace"), labels.get("model_deployment")
        if not namespace or not model:
            continue
        value = float(series["value"][1])
        if value != value:  # NaN: no usable samples
            continue
        entry = out[(namespace, model)]
        entry.average += value
        if pod := labels.get("pod"):
            entry.pods.add(pod)
    return dict(out)
