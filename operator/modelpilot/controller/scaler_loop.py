"""Every --scaler-interval seconds: one batched concurrency query, one decision per model,
replicas written through the Deployment's scale subresource.

Scaler memory (a pending scale-down) is in this process only: after an operator restart a
pending scale-down waits its delay again, which errs on the side of capacity.
"""

import asyncio
import time
from collections.abc import Collection, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from prometheus_api_client import PrometheusConnect

from modelpilot.api.spec import AutoscalingSpec, ModelDeploymentSpec
from modelpilot.api.status import ConditionStatus
from modelpilot.controller.kube import Kube
from modelpilot.controller.periodic import every
from modelpilot.controller.refs import DeploymentRef, Key, ModelRef, first, valid_models
from modelpilot.controller.status_worker import StatusWorker
from modelpilot.observer.pods import PodInfo, format_time
from modelpilot.scaler import signals
from modelpilot.scaler.effective import effective, overrides_of
from modelpilot.scaler.policy import Observation, ScalerState, decide


class ScalerLoop:
    def __init__(
        self,
        kube: Kube,
        prometheus: PrometheusConnect | None,
        worker: StatusWorker,
        models: Mapping[Key, Collection[ModelRef]],
        pods: Mapping[Key, Collection[PodInfo]],
        deployments: Mapping[Key, Collection[DeploymentRef]],
        hpas: Mapping[Key, Collection[str]],
        interval: float,
    ) -> None:
        self.kube, self.prometheus, self.worker = kube, prometheus, worker
        self.models, self.pods, self.deployments, self.hpas = models, pods, deployments, hpas
        self.interval = interval
        self.states: dict[Key, ScalerState] = {}
        self.queries = 0  # Prometheus queries made (the benchmark reads this)

    async def run(self) -> None:
        await every(self.interval, self.tick, "scaler tick")

    def _models(self) -> dict[Key, tuple[ModelRef, ModelDeploymentSpec, AutoscalingSpec]]:
        return {
            key: (
                model,
                spec,
                effective(spec.autoscaling, overrides_of(model.status), spec.advisor.limits),
            )
            for key, (model, spec) in valid_models(self.models).items()
        }

    async def fetch(self, windows: set[int]) -> dict[int, dict[Key, signals.Concurrency]] | str:
        """Demand per model for each window; a string says why there is none."""
        if self.prometheus is None:
            return "no Prometheus: start the operator with --prometheus-url"
        prometheus = self.prometheus
        out = {}
        for window in sorted(windows):
            self.queries += 1
            try:
                result = await asyncio.to_thread(prometheus.custom_query, signals.query(window))
            except Exception as exc:  # connection refused, timeouts, bad answers alike
                return f"Prometheus at {prometheus.url} failed: {type(exc).__name__}"
            out[window] = signals.parse(result)
        return out

    async def tick(self) -> None:
        models = self._models()
        if not models:
            return
        demand = await self.fetch({s.autoscaling_window_seconds for _, _, s in models.values()})
        await asyncio.gather(
            *(
                self._scale(key, model, settings, demand)
                for key, (model, _, settings) in models.items()
            )
        )

    async def _scale(
        self,
        key: Key,
        model: ModelRef,
        settings: AutoscalingSpec,
        demand: dict[int, dict[Key, signals.Concurrency]] | str,
    ) -> None:
        deployment: DeploymentRef | None = first(self.deployments.get(key))
        if deployment is None:
            return
        effective_wire = settings.wire()
        hpa = first(self.hpas.get((key[0], deployment.name)))
        if hpa is not None:
            self.states.pop(key, None)
            self.worker.contribute(
                key,
                {"autoscaling": {"effective": effective_wire}},
                (
                    (
                        "ScalingActive",
                        "False",
                        "HorizontalPodAutoscalerPresent",
                        f"HorizontalPodAutoscaler {hpa} scales Deployment {deployment.name}; "
                        "ModelPilot leaves replicas to it (delete the HPA to use ModelPilot's "
                        "concurrency autoscaling)",
                    ),
                ),
            )
            return

        state = self.states.get(key) or ScalerState(replicas=deployment.replicas)
        if state.replicas != deployment.replicas:  # changed by someone else (kubectl scale)
            state = ScalerState(replicas=deployment.replicas)
        if isinstance(demand, str):
            seen, unavailable = Observation(None), demand
        else:
            found = demand[settings.autoscaling_window_seconds].get(key)
            serving = {p.name for p in self.pods.get(key) or () if p.ready == "True"}
            partial = found is not None and bool(found.pods) and not serving <= found.pods
            seen = Observation(found.average if found else None, partial=partial)
            unavailable = (
                ""
                if found
                else (
                    "no modelpilot_concurrency_seconds_total series for this model in "
                    f"Prometheus over the last {settings.autoscaling_window_seconds}s"
                )
            )
        now = time.monotonic()
        decision = decide(settings, seen, state, now)
        self.states[key] = decision.state

        section: dict[str, Any] = {"effective": effective_wire}
        if decision.desired is not None:
            section["desiredReplicas"] = decision.desired
        previous = (self.worker.written.get(key) or model.status).get("autoscaling", {})
        if last := previous.get("lastScaleTime"):
            section["lastScaleTime"] = last
        if decision.replicas != deployment.replicas:
            await self.kube.scale(key[0], deployment.name, decision.replicas)
            self.states[key] = replace(decision.state, replicas=decision.replicas)
            section["lastScaleTime"] = format_time(datetime.now(UTC))
            await self.kube.post_event(model.involved, "Normal", decision.reason, decision.message)
        condition: tuple[str, ConditionStatus, str, str]
        if unavailable:
            condition = (
                "ScalingActive",
                "False",
                "MetricsUnavailable",
                f"{unavailable}; holding {decision.replicas} replicas",
            )
        else:
            condition = ("ScalingActive", "True", decision.reason, decision.message)
        self.worker.contribute(key, {"autoscaling": section}, (condition,))
