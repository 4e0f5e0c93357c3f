"""Demand per model from Prometheus, batched: one query per distinct autoscaling window
for all models (usually one query in all).

rate() of modelpilot_concurrency_seconds_total over the window is the exact average
concurrency over that window (the counter is the integral), per pod and state; the sum
over pods and states (active + queued) is the model's demand. Series of pods that went
away during the window still count for the time they served.

A model with an async queue adds its backlog, averaged over the same window: every meter
reports the same shared queue, so the pods' series are combined with max, not sum. The
backlog only adds to a model whose concurrency is known (alone it would turn "unknown"
into a number).
"""

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modelpilot.api import Key

METRIC = "modelpilot_concurrency_seconds_total"
BACKLOG = "modelpilot_async_queue_size"
BACKLOG_STATE = "async_backlog"  # the state label the query gives the backlog series


@dataclass
class Concurrency:
    average: float = 0.0  # concurrency, the backlog included
    pods: set[str] = field(default_factory=set)
    backlog: float | None = None  # None: the model has no async queue (or it is unknown)


def query(window_seconds: int) -> str:
    backlog = f"max by (namespace, model_deployment) (avg_over_time({BACKLOG}[{window_seconds}s]))"
    return (
        f"rate({METRIC}[{window_seconds}s]) or "
        f'label_replace({backlog}, "state", "{BACKLOG_STATE}", "", "")'
    )


def parse(result: Iterable[Mapping[str, Any]]) -> dict[Key, Concurrency]:
    """An instant-vector result -> demand per (namespace, model_deployment)."""
    out: dict[Key, Concurrency] = defaultdict(Concurrency)
    backlogs: dict[Key, float] = {}
    for series in result:
        labels = series.get("metric", {})
        namespace, model = labels.get("namespace"), labels.get("model_deployment")
        if not namespace or not model:
            continue
        value = float(series["value"][1])
        if value != value:  # NaN: no usable samples
            continue
        if labels.get("state") == BACKLOG_STATE:
            backlogs[(namespace, model)] = value
            continue
        entry = out[(namespace, model)]
        entry.average += value
        if pod := labels.get("pod"):
            entry.pods.add(pod)
    for key, backlog in backlogs.items():
        if key in out:
            out[key].average += backlog
            out[key].backlog = backlog
    return dict(out)
