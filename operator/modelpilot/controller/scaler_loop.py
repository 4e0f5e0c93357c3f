"""Every --scaler-interval seconds: one batched concurrency query (fetch), one pure
scaling step per model (`scaler.step`), then the writes: replicas through the
Deployment's scale subresource, an Event, and status through the status worker.

Scaler memory (a pending scale-down) is kept here and in status.autoscaling.scaleDown: after
an operator restart or failover the wait goes on from where it was.
"""

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime

from modelpilot.api import Key
from modelpilot.api.spec import AutoscalingSpec
from modelpilot.controller.activator_router import ActivatorRouter
from modelpilot.controller.periodic import Loop
from modelpilot.controller.refs import DeploymentRef, ModelRef, first, valid_models
from modelpilot.scaler import signals
from modelpilot.scaler.policy import ScalerState
from modelpilot.scaler.step import Demand, Deployment, NoSignal, scale_step, signal_for
from modelpilot.settings import settings_in_force


@dataclass
class ScalerLoop(Loop):
    states: dict[Key, ScalerState] = field(default_factory=dict)  # per model, between ticks
    queries: int = 0  # Prometheus queries made (the benchmark reads this)
    scale_to_zero: bool = False  # an activator is installed (--activator-namespace)
    router: ActivatorRouter | None = None
    demand: Demand | NoSignal = field(default_factory=lambda: NoSignal("no scaler tick yet"))
    _activations: set["asyncio.Task[None]"] = field(default_factory=set)

    what = "scaler tick"

    async def fetch(self, windows: set[int]) -> Demand | NoSignal:
        """Demand per model for each window, or why there is none."""
        if self.prometheus is None:
            return NoSignal("no Prometheus: start the operator with --prometheus-url")
        prometheus = self.prometheus
        ordered = sorted(windows)
        self.queries += len(ordered)
        try:  # all windows at once: the tick waits at most one query's deadline
            results = await asyncio.gather(
                *(asyncio.to_thread(prometheus.custom_query, signals.query(w)) for w in ordered)
            )
        except Exception as exc:  # connection refused, timeouts, bad answers alike
            return NoSignal(f"Prometheus at {prometheus.url} failed: {type(exc).__name__}")
        return {w: signals.parse(result) for w, result in zip(ordered, results, strict=True)}

    async def tick(self) -> None:
        models = {
            key: (model, self._bounded(settings_in_force(spec, model.status)))
            for key, (model, spec) in valid_models(self.indexes.models).items()
        }
        if not models:
            return
        demand = await self.fetch({s.autoscaling_window_seconds for _, s in models.values()})
        self.demand = demand
        await asyncio.gather(
            *(
                self.isolated.run(key, self._scale(key, model, settings, demand))
                for key, (model, settings) in models.items()
            )
        )

    def activate(self, key: Key, held: int) -> None:
        """The activator holds `held` requests for this model: its scaling step now, not
        at the next tick (a task: called from kopf's event handler)."""
        found = valid_models(self.indexes.models).get(key)
        if found is None:
            return
        model, spec = found
        settings = self._bounded(settings_in_force(spec, model.status))
        task = asyncio.create_task(
            self.isolated.run(key, self._scale(key, model, settings, self.demand, held=held))
        )
        self._activations.add(task)
        task.add_done_callback(self._activations.discard)

    def _bounded(self, settings: AutoscalingSpec) -> AutoscalingSpec:
        """minReplicas 0 only where the activator can hold the requests."""
        if settings.min_replicas == 0 and not self.scale_to_zero:
            return settings.model_copy(update={"min_replicas": 1})
        return settings

    async def _scale(
        self,
        key: Key,
        model: ModelRef,
        settings: AutoscalingSpec,
        demand: Demand | NoSignal,
        held: int = 0,
    ) -> None:
        deployment: DeploymentRef | None = first(self.indexes.deployments.get(key))
        if deployment is None:
            return
        status = self.worker.status_of(key)
        step = scale_step(
            settings,
            signal_for(demand, key, settings.autoscaling_window_seconds),
            Deployment(deployment.name, deployment.replicas),
            {p.name for p in self.indexes.pods.get(key) or () if p.ready == "True"},
            first(self.indexes.hpas.get((key[0], deployment.name))),
            self.states.get(key),
            status.get("autoscaling") or {},
            datetime.now(UTC),
            held,
        )
        if step.state is None:
            self.states.pop(key, None)
        else:
            self.states[key] = step.state
        if step.replicas == 0 and self.router is not None:
            await self.router.before_zero(key)  # the activator on the path first
        if step.replicas is not None:
            await self.kube.scale(key[0], deployment.name, step.replicas)
        if step.event is not None:
            await self.kube.post_event(model.involved, "Normal", *step.event)
        # Scale to zero is possible (the advisor reads this to advise minReplicas 0).
        section = {**step.section, "scaleToZero": True if self.scale_to_zero else None}
        self.worker.contribute(key, {"autoscaling": section}, (step.condition,))
