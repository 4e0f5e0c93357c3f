"""One model's scaling step, pure: what the scaler loop fetched and remembers in, what to
write out (replicas, an Event, status.autoscaling, the ScalingActive condition).

A pending scale-down is also written to status.autoscaling.scaleDown, so that an operator
restart or failover continues the wait where it was instead of starting it over."""

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from modelpilot.api import Key
from modelpilot.api.spec import AutoscalingSpec
from modelpilot.api.status import ConditionUpdate
from modelpilot.scaler.policy import Observation, ScalerState, decide, desired_replicas
from modelpilot.scaler.signals import METRIC, Concurrency
from modelpilot.times import format_time, parse_time


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


def remembered(autoscaling: Mapping[str, Any], replicas: int) -> ScalerState:
    """The scaler's memory as status.autoscaling.scaleDown kept it (read defensively:
    status is writable by anyone with RBAC on it)."""
    down = autoscaling.get("scaleDown") if isinstance(autoscaling, Mapping) else None
    if not isinstance(down, Mapping):
        return ScalerState(replicas)
    since = (
        parse_time(down.get("waitingSince")) if isinstance(down.get("waitingSince"), str) else None
    )
    highest = down.get("highest")
    return ScalerState(
        replicas,
        lower_since=since.timestamp() if since else None,
        lower_max=highest if isinstance(highest, int) and since else 0,
        stepping=down.get("stepping") is True,
    )


def _scale_down(state: ScalerState) -> dict[str, Any] | None:
    """status.autoscaling.scaleDown for `state` (None: no wait, removed from status)."""
    if state.lower_since is None and not state.stepping:
        return None
    out: dict[str, Any] = {"stepping": state.stepping}
    if state.lower_since is not None:
        out["waitingSince"] = format_time(datetime.fromtimestamp(state.lower_since, UTC))
        out["highest"] = state.lower_max
    return out


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
    autoscaling: Mapping[str, Any],
    now: datetime,
    held: int = 0,
) -> ScaleStep:
    """`serving`: names of this model's Ready pods; `hpa`: the HorizontalPodAutoscaler
    that scales this Deployment, if any; `state`: what the last step remembered (None
    after a restart: then status.autoscaling, `autoscaling`, says); `held`: requests the
    activator holds for this model now (it holds only while no replica is Ready)."""
    effective = settings.wire()
    if hpa is not None:
        return ScaleStep(
            None,
            None,
            {"effective": effective, "scaleDown": None},
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
    if held and hpa is None:
        woken = _for_held(settings, held, deployment.replicas, effective, now)
        if woken is not None:
            return woken
    if state is None:
        state = remembered(autoscaling, deployment.replicas)
    if state.replicas != deployment.replicas:  # e.g. kubectl scale
        state = ScalerState(replicas=deployment.replicas)
    if isinstance(signal, NoSignal):
        seen = Observation(None)
    else:
        partial = bool(signal.pods) and not set(serving) <= signal.pods
        seen = Observation(signal.average, partial=partial, backlog=signal.backlog or 0.0)
    decision = decide(settings, seen, state, now.timestamp())

    section: dict[str, Any] = {"effective": effective}
    if decision.desired is not None:
        section["desiredReplicas"] = decision.desired
    if not isinstance(signal, NoSignal) and signal.backlog is not None:
        section["asyncBacklog"] = round(signal.backlog, 1)
    scaled = decision.replicas != deployment.replicas
    if scaled:
        section["lastScaleTime"] = format_time(now)
    elif last := autoscaling.get("lastScaleTime"):
        section["lastScaleTime"] = last
    section["scaleDown"] = _scale_down(decision.state)
    if decision.replicas == 0 and decision.action != "down":
        since = section.get("lastScaleTime") or "the start"
        condition = ConditionUpdate(
            type="ScalingActive",
            status="True",
            reason="ScaledToZero",
            message=f"no replicas since {since}: the activator holds the next request and "
            "starts one",
        )
    elif isinstance(signal, NoSignal):
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


def _for_held(
    settings: AutoscalingSpec, held: int, replicas: int, effective: dict[str, Any], now: datetime
) -> ScaleStep | None:
    """Requests wait at the activator and no replica serves: replicas for all of them now
    (at least one, or minReplicas), without waiting for a scrape; the meters' concurrency
    takes over once they serve. None when enough replicas are already on their way."""
    target = max(desired_replicas(settings, float(held)), 1, settings.min_replicas)
    target = min(target, settings.max_replicas)
    if target <= replicas:
        return None
    reason = "ScaledFromZero" if replicas == 0 else "ScaledUp"
    message = (
        f"scaled up from {replicas} to {target}: {held} "
        f"request{'s are' if held != 1 else ' is'} waiting at the activator"
    )
    return ScaleStep(
        target,
        (reason, message),
        {"effective": effective, "lastScaleTime": format_time(now), "scaleDown": None},
        ConditionUpdate(type="ScalingActive", status="True", reason=reason, message=message),
        ScalerState(target, last_scale=now.timestamp()),
    )
