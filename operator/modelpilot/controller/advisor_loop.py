"""Every --advisor-interval seconds: read the history of every advised model from
Prometheus (one query per signal; fetch), judge each model (`advisor.judge`, pure), then
write what the verdict says: status.advisor and MetricsAvailable through the status
worker, an Event per new recommendation and per change applied or reverted in Auto mode."""

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from prometheus_client import Counter

from modelpilot.advisor import source
from modelpilot.advisor.evaluate import objective_of
from modelpilot.advisor.judge import Verdict
from modelpilot.advisor.parallel import Case, Judges, judge_one
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
    processes: int = 0  # worker processes that judge (0: in the operator's own)
    queries: int = 0  # Prometheus queries made
    judges: Judges | None = field(default=None, init=False)

    what = "advisor evaluation"

    async def run(self) -> None:
        self.judges = Judges(self.processes) if self.processes > 0 else None
        try:
            if self.judges is not None:
                await self.judges.start()
            await super().run()
        finally:
            if self.judges is not None:
                self.judges.close()

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
        cases: list[Case] = [
            (
                key,
                spec,
                self.worker.status_of(key),
                fetched.histories.get(key),
                now,
                self.lookback,
                fetched.read,
            )
            for key, (_, spec) in advised.items()
        ]
        # In worker processes all at once, or here one model at a time (each judged between
        # the other tasks' turns, so the operator's own work never waits for all of them).
        verdicts = await self.judges.all(cases) if self.judges is not None else None
        for i, case in enumerate(cases):
            model = advised[case[0]][0]
            judged = verdicts[i] if verdicts is not None else None
            await self.isolated.run(case[0], self._advise(model, case, judged))

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
        self, model: ModelRef, case: Case, judged: Verdict | Exception | None
    ) -> None:
        verdict = judge_one(case) if judged is None else judged
        if isinstance(verdict, Exception):
            raise verdict
        key = case[0]
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
