"""The one writer of observer status: pods and Deployments (from the indexes) ->
ModelDeployment status, written only when it changed.

Handlers call `wake(key)` when something about a model changes; the worker coalesces
wake-ups, recomputes from the indexes (no API reads), and also re-evaluates every model
every `resync_seconds`, because lasting states (stuck starting, not ready for 5 minutes)
become trouble with time alone.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from modelpilot.api import Key
from modelpilot.api.status import ColdStart, Condition, ConditionUpdate, Restarts
from modelpilot.controller.config import OperatorConfig
from modelpilot.controller.kube import Kube, report_failure
from modelpilot.controller.refs import Indexes, ModelRef, first
from modelpilot.observer import coldstarts
from modelpilot.observer import restarts as restart_logic
from modelpilot.observer.summary import (
    conditions,
    count_readiness,
    count_replicas,
    find_trouble,
    make_condition,
)
from modelpilot.settings import settings_in_force

log = logging.getLogger(__name__)
OWN_CONDITIONS = ("Ready", "Progressing", "Degraded")

# Condition reasons worth an Event when a condition turns to them.
_TRANSITION_EVENTS = {
    "InvalidSpec": "Warning",
    "ReplicasStuckStarting": "Warning",
    "PodsNotReady": "Warning",
    "SlowTermination": "Warning",
    "Serving": "Normal",
}
_RESTART_EVENTS = {
    "OOMKilled": (
        "ContainerOOMKilled",
        "was OOM-killed: raise its memory limit or lower the batch size / context length",
    ),
    "Error": ("ContainerCrashed", "crashed: see `kubectl logs {pod} -c {container} --previous`"),
    restart_logic.LIVENESS_REASON: (
        "LivenessProbeFailed",
        "was killed by its liveness probe: under load the server may answer health checks too late",
    ),
}


class StatusWorker:
    def __init__(
        self,
        kube: Kube,
        indexes: Indexes,
        config: OperatorConfig,
    ) -> None:
        self.kube, self.indexes, self.models = kube, indexes, indexes.models
        self.pods, self.deployments = indexes.pods, indexes.deployments
        self.config = config
        self._written: dict[Key, dict[str, Any]] = {}  # last status written, per model
        self.restarts: dict[Key, Restarts] = {}
        self.cold_starts: dict[Key, ColdStart] = {}
        self.served: dict[Key, set[str]] = {}  # UIDs of pods seen Ready
        self.reconciled: dict[Key, int] = {}  # generation the workload was applied for
        # The API server's refusal of what a generation rendered to (InvalidSpec).
        self.refused: dict[Key, tuple[int, str]] = {}
        # Status sections and conditions owned by other components (scaler, advisor): they
        # hand them here so that one writer merges everything and nothing races.
        self.sections: dict[Key, dict[str, Any]] = {}
        self.extra_conditions: dict[Key, dict[str, Condition]] = {}
        self.withdrawn: dict[Key, set[str]] = {}  # contributed condition types taken back
        self.writes = 0
        self._dirty: set[Key] = set()
        self._wakeup = asyncio.Event()
        self._started = False  # set by the first wake: kopf runs handlers once indexes are full

    def wake(self, key: Key) -> None:
        self._dirty.add(key)
        self._started = True
        self._wakeup.set()

    def status_of(self, key: Key) -> Mapping[str, Any]:
        """A model's status as last written (or as the API server last showed it): what
        the loops read back, e.g. the advisor's history or the last scale time."""
        model = first(self.models.get(key))
        return self._written.get(key) or (model.status if model else {})

    def statuses(self) -> dict[Key, Mapping[str, Any]]:
        """Every model's last written status (the operator's /metrics reads these)."""
        return dict(self._written)

    def contribute(
        self,
        key: Key,
        sections: dict[str, Any],
        conditions: Iterable[ConditionUpdate] = (),
    ) -> None:
        """Another component's part of the status: whole sections (e.g. "autoscaling") and
        conditions; written with the next refresh."""
        self.sections.setdefault(key, {}).update(sections)
        baseline = self.status_of(key)
        before = [Condition.model_validate(c) for c in baseline.get("conditions", [])]
        generation = self.reconciled.get(key, baseline.get("observedGeneration"))
        now = datetime.now(UTC)
        mine = self.extra_conditions.setdefault(key, {})
        for c in conditions:
            mine[c.type] = make_condition(c, before, now, generation)
            self.withdrawn.get(key, set()).discard(c.type)
        self.wake(key)

    def withdraw(self, key: Key, condition_type: str) -> None:
        """Remove a contributed condition from status (its component no longer has a say)."""
        if (self.extra_conditions.get(key) or {}).pop(condition_type, None) is not None or any(
            c.get("type") == condition_type for c in self.status_of(key).get("conditions", [])
        ):
            self.withdrawn.setdefault(key, set()).add(condition_type)
            self.wake(key)

    def refuse(self, key: Key, generation: int, message: str) -> None:
        self.refused[key] = (generation, message)
        self.wake(key)

    def accept(self, key: Key) -> None:
        if self.refused.pop(key, None) is not None:
            self.wake(key)

    def mark_reconciled(self, key: Key, generation: int) -> None:
        self.reconciled[key] = generation
        self.wake(key)

    async def run(self) -> None:
        limit = asyncio.Semaphore(self.config.status_concurrency)
        await self.indexes.wait_for_pods()
        last_resync = time.monotonic()

        async def guarded(key: Key) -> None:
            async with limit:
                try:
                    await self.refresh(key)
                except Exception as exc:
                    report_failure(
                        log, f"status refresh of {key[0]}/{key[1]} failed; will retry", exc
                    )
                    self._dirty.add(key)

        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self.config.resync_seconds)
            self._wakeup.clear()
            if self._started and time.monotonic() - last_resync >= self.config.resync_seconds:
                self._dirty.update(self.models.keys())
                last_resync = time.monotonic()
            batch, self._dirty = self._dirty, set()
            await asyncio.gather(*(guarded(key) for key in batch))

    def _forget(self, key: Key) -> None:
        for memory in (
            self._written,
            self.restarts,
            self.cold_starts,
            self.served,
            self.reconciled,
            self.refused,
            self.sections,
            self.extra_conditions,
            self.withdrawn,
        ):
            memory.pop(key, None)

    async def refresh(self, key: Key) -> None:
        model = first(self.models.get(key))
        if model is None:
            self._forget(key)
            return
        now = datetime.now(UTC)
        pods = list(self.pods.get(key) or ())
        deployment = first(self.deployments.get(key))
        baseline = self.status_of(key)

        previous = self.restarts.get(key) or Restarts.model_validate(baseline.get("restarts", {}))
        new = restart_logic.find_new_restarts(previous, pods)
        killed: set[tuple[str, str]] = set()
        for uid in {r.uid for r in new if r.reason != "OOMKilled"}:
            killed.update((uid, c) for c in await self.kube.liveness_killed(key[0], uid))
        new = restart_logic.relabel_liveness(new, killed)
        restarts = restart_logic.account(previous, pods, new)

        served = self.served.setdefault(key, set())
        starts = self.cold_starts.get(key) or coldstarts.from_status(baseline)
        starts = coldstarts.account(starts, coldstarts.new_samples(starts, pods, served))
        served.update(p.uid for p in pods if p.ready == "True")
        served.intersection_update(p.uid for p in pods)

        replicas = count_replicas(pods, deployment.replicas if deployment else 0)
        _, problems = model.validated
        refused = self.refused.get(key)
        if not problems and refused is not None and refused[0] == model.generation:
            problems = [refused[1]]
        generation = self.reconciled.get(key, baseline.get("observedGeneration"))
        before = [
            Condition.model_validate(c)
            for c in baseline.get("conditions", [])
            if c.get("type") in OWN_CONDITIONS
        ]
        ours = conditions(
            problems=problems,
            has_deployment=deployment is not None,
            replicas=replicas,
            restarts=restarts,
            trouble=find_trouble(pods, served, now, self.config.thresholds),
            previous=before,
            now=now,
            generation=generation,
            limits=self.config.thresholds,
            # Only asked at zero: settings in force cost a validation per refresh.
            wakes_on_demand=replicas.desired == 0 and self._wakes_on_demand(model, baseline),
        )
        contributed = self.extra_conditions.get(key, {})
        withdrawn = self.withdrawn.get(key, set())
        others = [
            c
            for c in model.status.get("conditions", [])
            if c.get("type") not in OWN_CONDITIONS
            and c.get("type") not in contributed
            and c.get("type") not in withdrawn
        ]
        status: dict[str, Any] = {
            "ready": f"{replicas.active}/{replicas.desired}",
            "replicas": replicas.wire(),
            "pods": count_readiness(pods).wire(),
            "restarts": restarts.wire(),
            "conditions": [c.wire() for c in ours]
            + [c.wire() for c in contributed.values()]
            + others,
            **self.sections.get(key, {}),
        }
        if starts.samples:
            status["coldStart"] = starts.wire()
        if generation is not None:
            status["observedGeneration"] = generation

        changed = {k: v for k, v in status.items() if baseline.get(k) != v}
        if changed:
            if not await self.kube.patch_model_status(model.namespace, model.name, changed):
                self._forget(key)  # deleted meanwhile: nothing more to say about it
                return
            self.writes += 1
        self._written[key] = {**baseline, **status}
        self.restarts[key] = restarts
        self.cold_starts[key] = starts
        await self._post_events(model, new, before, ours)

    def _wakes_on_demand(self, model: ModelRef, status: Mapping[str, Any]) -> bool:
        spec = model.validated[0]
        return (
            bool(self.config.activator_namespace)
            and spec is not None
            and settings_in_force(spec, status).min_replicas == 0
        )

    async def _post_events(
        self,
        model: ModelRef,
        new: list[restart_logic.NewRestart],
        before: list[Condition],
        after: list[Condition],
    ) -> None:
        for r in new:
            reason, what = _RESTART_EVENTS.get(
                r.reason, ("ContainerRestarted", f"restarted ({r.reason})")
            )
            code = f" (exit code {r.exit_code})" if r.exit_code is not None else ""
            times = f" {r.count} times" if r.count > 1 else ""
            message = f"Container {r.container} in pod {r.pod}{times}{code} " + what.format(
                pod=r.pod, container=r.container
            )
            await self.kube.post_event(model.involved, "Warning", reason, message)
        previous = {c.type: c.reason for c in before}
        for c in after:
            kind = _TRANSITION_EVENTS.get(c.reason)
            if kind and previous.get(c.type) != c.reason:
                await self.kube.post_event(model.involved, kind, c.reason, c.message)
