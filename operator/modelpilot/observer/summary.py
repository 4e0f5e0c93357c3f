"""Replica and readiness counts, and the Ready / Progressing / Degraded conditions."""

from collections.abc import Collection, Iterable, Sequence
from datetime import datetime, timedelta

from pydantic import BaseModel

from modelpilot.api.status import (
    Condition,
    ConditionStatus,
    ConditionUpdate,
    PodReadiness,
    ReplicaCounts,
    Restarts,
)
from modelpilot.observer.pods import PodInfo
from modelpilot.times import about, format_time, parse_time


class Thresholds(BaseModel):
    """When lasting states count as trouble (operator settings)."""

    restart_window_seconds: int = 600  # Degraded while the last restart is this recent
    not_ready_seconds: int = 300  # a pod that served, then not ready this long
    stuck_starting_seconds: int = 1200  # a pod never ready for this long
    slow_termination_seconds: int = 300  # a pod terminating this long


def count_replicas(pods: Iterable[PodInfo], desired: int) -> ReplicaCounts:
    counts = ReplicaCounts(desired=desired)
    for pod in pods:
        if pod.terminating:
            counts.terminating += 1
        elif pod.ready == "True":
            counts.active += 1
        else:
            counts.starting += 1
    return counts


def count_readiness(pods: Iterable[PodInfo]) -> PodReadiness:
    counts = PodReadiness()
    for pod in pods:
        if pod.ready == "True":
            counts.ready += 1
        elif pod.ready == "False":
            counts.not_ready += 1
        else:
            counts.unknown += 1
    return counts


def _age(since: str | None, now: datetime) -> timedelta:
    start = parse_time(since)
    return now - start if start else timedelta(0)


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _names(pods: Sequence[PodInfo], limit: int = 3) -> str:
    shown = ", ".join(p.name for p in pods[:limit])
    return shown + (f" and {len(pods) - limit} more" if len(pods) > limit else "")


class Trouble(BaseModel):
    """Pods in a lasting bad state, found by `find_trouble`."""

    stuck_starting: list[PodInfo] = []
    not_ready: list[PodInfo] = []
    slow_terminating: list[PodInfo] = []


def find_trouble(
    pods: Iterable[PodInfo], served: Collection[str], now: datetime, limits: Thresholds
) -> Trouble:
    """`served` holds UIDs of pods seen Ready before: a not-ready pod among them is failing
    its readiness probe; one never ready is still starting (loading a model can take long)."""
    trouble = Trouble()
    for pod in pods:
        if pod.terminating:
            if _age(pod.deleting_since, now).total_seconds() > limits.slow_termination_seconds:
                trouble.slow_terminating.append(pod)
        elif pod.ready != "True":
            if pod.uid in served:
                if _age(pod.ready_since, now).total_seconds() > limits.not_ready_seconds:
                    trouble.not_ready.append(pod)
            elif _age(pod.created, now).total_seconds() > limits.stuck_starting_seconds:
                trouble.stuck_starting.append(pod)
    return trouble


def make_condition(
    update: ConditionUpdate,
    previous: Sequence[Condition],
    now: datetime,
    generation: int | None,
) -> Condition:
    """Keep lastTransitionTime unless the status itself changed (Kubernetes convention)."""
    before = next((c for c in previous if c.type == update.type), None)
    kept = before is not None and before.status == update.status
    return Condition(
        **update.model_dump(),
        last_transition_time=before.last_transition_time if before and kept else format_time(now),
        observed_generation=generation,
    )


def conditions(
    *,
    problems: Sequence[str],
    has_deployment: bool,
    replicas: ReplicaCounts,
    restarts: Restarts,
    trouble: Trouble,
    previous: Sequence[Condition],
    now: datetime,
    generation: int | None,
    limits: Thresholds,
    wakes_on_demand: bool = False,  # minReplicas 0 with the activator in front
) -> list[Condition]:
    def make(type_: str, status: ConditionStatus, reason: str, message: str) -> Condition:
        update = ConditionUpdate(type=type_, status=status, reason=reason, message=message)
        return make_condition(update, previous, now, generation)

    # Ready: serving traffic with a valid spec.
    if problems:
        ready = make("Ready", "False", "InvalidSpec", "; ".join(problems))
    elif not has_deployment:
        ready = make("Ready", "False", "DeploymentMissing", "the Deployment is being created")
    elif replicas.active > 0:
        ready = make(
            "Ready",
            "True",
            "Serving",
            f"{replicas.active} of {_n(replicas.desired, 'replica')} active",
        )
    elif replicas.desired == 0 and wakes_on_demand:
        ready = make(
            "Ready",
            "True",
            "ScaledToZero",
            "no replicas run: the activator holds the next request and starts one",
        )
    elif replicas.desired == 0:
        ready = make("Ready", "False", "ScaledToZero", "no replicas are desired")
    else:
        ready = make(
            "Ready",
            "False",
            "NoActiveReplicas",
            f"0 of {_n(replicas.desired, 'replica')} active, {replicas.starting} starting",
        )

    # Progressing: replicas coming or going.
    if trouble.stuck_starting:
        progressing = make(
            "Progressing",
            "True",
            "ReplicasStuckStarting",
            f"{_n(len(trouble.stuck_starting), 'replica')} not ready after more than "
            f"{about(limits.stuck_starting_seconds)}: "
            f"{_names(trouble.stuck_starting)}; check image pulls, scheduling and model load",
        )
    elif replicas.starting:
        progressing = make(
            "Progressing",
            "True",
            "ReplicasStarting",
            f"{_n(replicas.starting, 'replica')} starting, {replicas.active} active",
        )
    elif replicas.terminating:
        progressing = make(
            "Progressing",
            "True",
            "ReplicasTerminating",
            f"{_n(replicas.terminating, 'replica')} terminating",
        )
    elif has_deployment and replicas.active < replicas.desired:
        progressing = make(
            "Progressing",
            "True",
            "WaitingForPods",
            f"waiting for pods: {_n(replicas.desired, 'replica')} desired, {replicas.active} ready",
        )
    else:
        progressing = make(
            "Progressing", "False", "Stable", f"all {_n(replicas.active, 'desired replica')} active"
        )

    # Degraded: trouble that lasts, in order of how much it says.
    recent = restarts.last is not None and (
        _age(restarts.last.time, now).total_seconds() <= limits.restart_window_seconds
    )
    if recent and restarts.last is not None:
        last = restarts.last
        code = f", exit code {last.exit_code}" if last.exit_code is not None else ""
        degraded = make(
            "Degraded",
            "True",
            "ContainerRestarts",
            f"container {last.container} in pod {last.pod} restarted "
            f"{about(_age(last.time, now).total_seconds())} ago ({last.reason}{code}); "
            f"{_n(restarts.total, 'restart')} in total",
        )
    elif trouble.not_ready:
        degraded = make(
            "Degraded",
            "True",
            "PodsNotReady",
            f"{_n(len(trouble.not_ready), 'pod')} that served traffic not ready for more "
            f"than {about(limits.not_ready_seconds)}: "
            f"{_names(trouble.not_ready)}; their readiness probes are failing",
        )
    elif trouble.slow_terminating:
        degraded = make(
            "Degraded",
            "True",
            "SlowTermination",
            f"{_n(len(trouble.slow_terminating), 'pod')} terminating for more than "
            f"{about(limits.slow_termination_seconds)}: "
            f"{_names(trouble.slow_terminating)}",
        )
    elif trouble.stuck_starting:
        degraded = make("Degraded", "True", "ReplicasStuckStarting", progressing.message)
    else:
        degraded = make(
            "Degraded", "False", "Healthy", "no recent restarts and no pods stuck not ready"
        )
    return [ready, progressing, degraded]
