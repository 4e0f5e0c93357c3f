"""Every --advisor-interval seconds: read the history of every advised model from
Prometheus (one query per signal), evaluate, write status.advisor, and in Auto mode apply
or revert changes through status.advisor.overrides."""

import statistics
import time
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from prometheus_api_client import PrometheusConnect
from prometheus_client import Counter

from modelpilot.advisor import source
from modelpilot.advisor.auto import change_times, changes_of, plan
from modelpilot.advisor.evaluate import evaluate_since_change, objective_of
from modelpilot.advisor.model import Evaluation, History
from modelpilot.api.spec import ModelDeploymentSpec
from modelpilot.api.status import ConditionStatus
from modelpilot.controller.kube import Kube
from modelpilot.controller.periodic import every
from modelpilot.controller.refs import Key, ModelRef, valid_models
from modelpilot.controller.status_worker import StatusWorker
from modelpilot.observer.pods import format_time
from modelpilot.scaler.effective import effective, overrides_of

HISTORY_KEPT = 20

CHANGES_APPLIED = Counter(
    "modelpilot_advisor_changes_applied",
    "Settings changed by the advisor in Auto mode.",
    ["namespace", "model_deployment", "setting"],
)


def recent_latency(history: History | None, seconds: float = 3600) -> float | None:
    """Median latency over the last `seconds` (None when unknown)."""
    if history is None or not history.times:
        return None
    since = history.times[-1] - seconds
    values = [
        v
        for t, v in zip(history.times, history.latency, strict=True)
        if t >= since and v is not None
    ]
    return statistics.median(values) if values else None


class AdvisorLoop:
    def __init__(
        self,
        kube: Kube,
        prometheus: PrometheusConnect | None,
        worker: StatusWorker,
        models: Mapping[Key, Collection[ModelRef]],
        interval: float,
        lookback_seconds: int = 6 * 3600,
        step_seconds: int = 60,
        scrape_interval: int = 15,
    ) -> None:
        self.kube, self.prometheus, self.worker, self.models = kube, prometheus, worker, models
        self.interval, self.lookback, self.step = interval, lookback_seconds, step_seconds
        self.scrape_interval = scrape_interval
        self.queries = 0

    async def run(self) -> None:
        await every(self.interval, self.tick, "advisor evaluation")

    def _advised(self) -> dict[Key, tuple[ModelRef, ModelDeploymentSpec]]:
        return {
            key: (model, spec)
            for key, (model, spec) in valid_models(self.models).items()
            if spec.advisor.mode != "Off"
        }

    async def tick(self) -> None:
        advised = self._advised()
        if not advised:
            return
        if self.prometheus is None:
            for key in advised:
                self._unavailable(key, "no Prometheus: start the operator with --prometheus-url")
            return
        percentile_of = {k: objective_of(spec).percentile for k, (_, spec) in advised.items()}
        try:
            fetched = await source.fetch(
                self.prometheus,
                percentile_of,
                self.lookback,
                self.step,
                time.time(),
                scrape_interval=self.scrape_interval,
            )
        except Exception as exc:  # unreachable, timeouts, bad answers alike
            for key in advised:
                self._unavailable(
                    key, f"Prometheus at {self.prometheus.url} failed: {type(exc).__name__}"
                )
            return
        self.queries += fetched.queries
        for key, (model, spec) in advised.items():
            await self._advise(key, model, spec, fetched.histories.get(key))

    def _unavailable(self, key: Key, message: str) -> None:
        self.worker.contribute(
            key, {}, (("MetricsAvailable", "False", "PrometheusUnavailable", message),)
        )

    async def _advise(
        self, key: Key, model: ModelRef, spec: ModelDeploymentSpec, history: History | None
    ) -> None:
        status = self.worker.written.get(key) or model.status
        previous: dict[str, Any] = dict(status.get("advisor") or {})
        overrides = dict(overrides_of(status))
        settings = effective(spec.autoscaling, overrides, spec.advisor.limits)
        changes = changes_of(status)
        changed_at = change_times(changes)
        evaluation = evaluate_since_change(
            key[0],
            key[1],
            history,
            settings,
            objective_of(spec),
            max(changed_at.values(), default=None),
        )

        now = datetime.now(UTC)
        if spec.advisor.mode == "Auto":
            decided = plan(
                evaluation,
                spec.advisor,
                changes,
                now.timestamp(),
                format_time(now),
                recent_latency(history),
                changed_at,
            )
            for change in [*decided.revert, *decided.apply]:
                overrides[change.setting] = change.to
                changes.append(change)
                CHANGES_APPLIED.labels(key[0], key[1], change.setting).inc()
                reason = "RecommendationReverted" if change.reverted else "RecommendationApplied"
                await self.kube.post_event(model.involved, "Normal", reason, change.message)
            if decided.revert:  # a reverted change is done: its history entry too
                reverted = {c.setting for c in decided.revert}
                changes = [
                    c.model_copy(update={"reverted": True})
                    if c.setting in reverted and not c.reverted
                    else c
                    for c in changes
                ]

        await self._announce(model, evaluation, previous)
        section = {
            "lastEvaluationTime": format_time(now),
            "recommendations": [r.wire() for r in evaluation.recommendations],
            "recommendationCount": len(evaluation.recommendations),
            "history": [c.wire() for c in changes[-HISTORY_KEPT:]],
        }
        if overrides:
            section["overrides"] = overrides
        condition: tuple[str, ConditionStatus, str, str] = (
            (
                "MetricsAvailable",
                "True",
                "MetricsAvailable",
                f"{len(history.times) if history else 0} points over the last "
                f"{_span(self.lookback)}"
                + (f"; {evaluation.message}" if evaluation.message else ""),
            )
            if evaluation.status == "ok"
            else ("MetricsAvailable", "False", "InsufficientData", evaluation.message)
        )
        self.worker.contribute(key, {"advisor": section}, (condition,))

    async def _announce(
        self, model: ModelRef, evaluation: Evaluation, previous: Mapping[str, Any]
    ) -> None:
        """An Event for each recommendation that was not there before."""
        seen = {(r.get("setting"), r.get("reason")) for r in previous.get("recommendations") or []}
        for rec in evaluation.recommendations:
            if (rec.setting, rec.reason) not in seen:
                await self.kube.post_event(
                    model.involved,
                    "Normal",
                    "RecommendationAdded",
                    f"{rec.reason}: set {rec.setting} {rec.current} -> {rec.recommended} "
                    f"(confidence {rec.confidence:.2f}). {rec.message}",
                )


def _span(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"
