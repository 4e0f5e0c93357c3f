"""One model's scaling step, pure: what the scaler loop fetched and remembers in, what to
write out (replicas, an Event, status.autoscaling, the ScalingActive condition)."""

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from modelpilot.api import Key
from modelpilot.api.spec import AutoscalingSpec
from modelpilot.api.status import ConditionUpdate
from modelpilot.scaler.policy import Observation, ScalerState, decide
from modelpilot.scaler.signals import METRIC, Concurrency
from modelpilot.times import format_time


@dataclass(frozen=True)
class NoSignal:
    """Demand is unknown, and why (said in the ScalingActive condition)."""

    why: str


Demand = Mapping[int, Mapping[Key, Concurrency]]  # window (s) -> demand per model


def signal_for(demand: Demand | NoSignal, key: Key, window: int) -> Concurrency | NoSignal:
    """One model's demand over its window, or why it is unknown."""
    if isinstance(demand, NoSignal):
        return demand
    found = demand.get(window, {}).get(key)
    if found is None:
        return NoSignal(f"no {METRIC} series for this model in Prometheus over the last {window}s")
    return found


@dataclass(frozen=True)
class Deployment:
    name: str
    replicas: int


@dataclass(frozen=True)
class ScaleStep:
    replicas: int | None  # write this through the scale subresource (None: no write)
    event: tuple[str, str] | None  # (reason, message) of a Normal Event
    section: dict[str, Any]  # status.autoscaling
    condition: ConditionUpdate  # ScalingActive
    state: ScalerState | None  # remember for the next tick (None: forget)


def scale_step(
    settings: AutoscalingSpec,
    signal: Concurrency | NoSignal,
    deployment: Deployment,
    serving: Collection[str],
    hpa: str | None,
    state: ScalerState | None,
    last_scale_time: str | None,
    now: float,
    wall: datetime,
) -> ScaleStep:
    """`serving`: names of this model's Ready pods; `hpa`: the HorizontalPodAutoscaler
    that scales this Deployment, if any; `state`: what the last step remembered; `now` a
    monotonic clock (seconds) and `wall` the time for status."""
    effective = settings.wire()
    if hpa is not None:
        return ScaleStep(
            None,
            None,
            {"effective": effective},
            ConditionUpdate(
                type="ScalingActive",
                status="False",
                reason="HorizontalPodAutoscalerPresent",
                message=f"HorizontalPodAutoscaler {hpa} scales Deployment {deployment.name}; "
                "ModelPilot leaves replicas to it (delete the HPA to use ModelPilot's "
                "concurrency autoscaling)",
            ),
            None,
        )
    if state is None or state.replicas != deployment.replicas:  # e.g. kubectl scale
        state = ScalerState(replicas=deployment.replicas)
    if isinstance(signal, NoSignal):
        seen = Observation(None)
    else:
        partial = bool(signal.pods) and not set(serving) <= signal.pods
        seen = Observation(signal.average, partial=partial)
    decision = decide(settings, seen, state, now)

    section: dict[str, Any] = {"effective": effective}
    if decision.desired is not None:
        section["desiredReplicas"] = decision.desired
    scaled = decision.replicas != deployment.replicas
    if scaled:
        section["lastScaleTime"] = format_time(wall)
    elif last_scale_time:
        section["lastScaleTime"] = last_scale_time
    if isinstance(signal, NoSignal):
        condition = ConditionUpdate(
            type="ScalingActive",
            status="False",
            reason="MetricsUnavailable",
            message=f"{signal.why}; holding {decision.replicas} replicas",
        )
    else:
        condition = ConditionUpdate(
            type="ScalingActive", status="True", reason=decision.reason, message=decision.message
        )
    return ScaleStep(
        decision.replicas if scaled else None,
        (decision.reason, decision.message) if scaled else None,
        section,
        condition,
        decision.state,
    )
