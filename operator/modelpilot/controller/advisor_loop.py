"""Every --advisor-interval seconds: read the history of every advised model from
Prometheus (one query per signal; fetch), judge each model (`advisor.judge`, pure), then
write what the verdict says: status.advisor and MetricsAvailable through the status
worker, an Event per new recommendation and per change applied or reverted in Auto mode."""

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client import Counter

from modelpilot.advisor import source
from modelpilot.advisor.evaluate import objective_of
from modelpilot.advisor.judge import judge
from modelpilot.advisor.model import History
from modelpilot.api import Key
from modelpilot.api.spec import ModelDeploymentSpec
from modelpilot.api.status import ConditionUpdate
from modelpilot.controller.periodic import Loop
from modelpilot.controller.refs import ModelRef, valid_models
from modelpilot.settings import wire_name

CHANGES_APPLIED = Counter(
    "modelpilot_advisor_changes_applied",
    "Settings changed by the advisor in Auto mode.",
    ["namespace", "model_deployment", "setting"],
)


@dataclass
class AdvisorLoop(Loop):
    lookback: int = 6 * 3600  # seconds of history read
    step: int = 60  # its resolution (seconds)
    scrape_interval: int = 15
    queries: int = 0  # Prometheus queries made

    what = "advisor evaluation"

    async def tick(self) -> None:
        advised = {
            key: (model, spec)
            for key, (model, spec) in valid_models(self.indexes.models).items()
            if spec.advisor.mode != "Off"
        }
        if not advised:
            return
        if self.prometheus is None:
            self._unavailable(advised, "no Prometheus: start the operator with --prometheus-url")
            return
        objectives = {k: objective_of(spec) for k, (_, spec) in advised.items()}
        try:
            fetched = await source.fetch(
                self.prometheus,
                objectives,
                self.lookback,
                self.step,
                time.time(),
                scrape_interval=self.scrape_interval,
            )
        except Exception as exc:  # unreachable, timeouts, bad answers alike
            name = type(exc).__name__
            self._unavailable(advised, f"Prometheus at {self.prometheus.url} failed: {name}")
            return
        self.queries += fetched.queries
        now = datetime.now(UTC)
        for key, (model, spec) in advised.items():
            history = fetched.histories.get(key)
            await self.isolated.run(key, self._advise(key, model, spec, history, now))

    def _unavailable(
        self, advised: Mapping[Key, tuple[ModelRef, ModelDeploymentSpec]], message: str
    ) -> None:
        condition = ConditionUpdate(
            type="MetricsAvailable",
            status="False",
            reason="PrometheusUnavailable",
            message=message,
        )
        for key in advised:
            self.worker.contribute(key, {}, (condition,))

    async def _advise(
        self,
        key: Key,
        model: ModelRef,
        spec: ModelDeploymentSpec,
        history: History | None,
        now: datetime,
    ) -> None:
        verdict = judge(key, spec, self.worker.status_of(key), history, now, self.lookback)
        for change in verdict.changes:
            CHANGES_APPLIED.labels(key[0], key[1], wire_name(change.setting)).inc()
            reason = "RecommendationReverted" if change.reverted else "RecommendationApplied"
            await self.kube.post_event(model.involved, "Normal", reason, change.message)
        for rec in verdict.announce:
            await self.kube.post_event(
                model.involved,
                "Normal",
                "RecommendationAdded",
                f"{rec.reason}: set {wire_name(rec.setting)} {rec.current} -> "
                f"{rec.recommended} (confidence {rec.confidence:.2f}). {rec.message}",
            )
        self.worker.contribute(key, {"advisor": verdict.section()}, (verdict.condition,))
