"""The scaling rule: a pure function of settings, concurrency, current state and clock.

    needed  = average concurrency / (concurrencyTarget x targetUtilizationPercentage/100)
              (an async backlog counts as concurrency: each waiting request is one more
              request wanting a slot, as a request queued in a meter is)
    desired = current replicas while needed is within 10% of them (tolerance), else
              ceil(needed - 0.1); clamped to [minReplicas, maxReplicas]

- Up: at once, to the desired count.
- Down: only once a lower desired count has held for scaleDownDelaySeconds. The step goes
  to the highest count desired during that wait, and removes at most half of the excess
  (rounded up) at a time; each further step waits autoscalingWindowSeconds of the lower
  count again. Any tick that wants the current count or more cancels the wait.
- Unknown concurrency (no series): hold. Partial data (some serving pods not reporting):
  may scale up, never down.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple

from modelpilot.api.spec import AutoscalingSpec


@dataclass(frozen=True, slots=True)
class Plain:
    """The rule's settings as plain attributes: a third of the cost of reading a pydantic
    model's, some ten reads per step of every replay."""

    min_replicas: int
    max_replicas: int
    concurrency_target: int
    target_utilization_percentage: int
    autoscaling_window_seconds: int
    scale_down_delay_seconds: int

    @classmethod
    def of(cls, s: "Knobs") -> "Plain":
        return cls(
            s.min_replicas,
            s.max_replicas,
            s.concurrency_target,
            s.target_utilization_percentage,
            s.autoscaling_window_seconds,
            s.scale_down_delay_seconds,
        )


# The settings the rule reads: spec.autoscaling, or its plain copy where it is read at every
# step of a replay.
Knobs = AutoscalingSpec | Plain


@dataclass(frozen=True, slots=True)
class ScalerState:
    """What the scaler remembers about one model between ticks."""

    replicas: int
    # When a lower desired count was first seen, and the highest count desired since.
    lower_since: float | None = None
    lower_max: int = 0
    # A scale-down step happened: the next one needs only a window of lower counts.
    stepping: bool = False
    last_scale: float | None = None

    def waiting(self, since: float | None, highest: int) -> "ScalerState":
        """This state with the wait for a lower count at (since, highest); itself when
        unchanged (replays call this on every step: no copy where none is needed)."""
        if since == self.lower_since and highest == self.lower_max:
            return self
        return ScalerState(self.replicas, since, highest, self.stepping, self.last_scale)


class Observation(NamedTuple):  # a tuple: cheap to make on every tick
    average_concurrency: float | None  # None: unknown (no series)
    partial: bool = False  # some serving pods have no series yet
    backlog: float = 0.0  # async requests waiting in the model's queue (part of the average)


Action = Literal["up", "down", "hold"]


class Decision(NamedTuple):  # a tuple, as Observation
    replicas: int
    desired: int | None  # what the formula asks for now (None when unknown)
    action: Action
    reason: str
    # The message, written when read (`message`).
    explain: Callable[[], str]
    state: ScalerState

    @property
    def message(self) -> str:
        return self.explain()


TOLERANCE = 0.1  # of the per-replica target, as the HorizontalPodAutoscaler's


def per_replica(settings: Knobs) -> float:
    """Concurrency one replica is meant to carry."""
    return settings.concurrency_target * settings.target_utilization_percentage / 100


def desired_replicas(settings: Knobs, average: float, current: int | None = None) -> int:
    """Replicas for `average` concurrency. rate() over a short window reads a hair off the
    true load, and a replica is a whole GPU: so the count holds while the load per current
    replica is within 10% of the target (the HPA's tolerance), and a replica is only added
    for more than a tenth of one replica's target (6.004 in flight at 1 per replica is 6
    replicas, not 7; 6.2 is 7)."""
    # per_replica(settings), inline: this runs at every step of every replay.
    needed = average / (settings.concurrency_target * settings.target_utilization_percentage / 100)
    if current and abs(needed / current - 1) <= TOLERANCE:
        raw = current
    else:
        # ceil(round(x, 9)): float noise is no load. round() is dear, and it can change the
        # result only just above a whole number, so it is called only there.
        x = needed - TOLERANCE
        raw = math.ceil(x)
        if raw - x > 1 - 2e-9:
            raw = math.ceil(round(x, 9))
    return _clamp(raw, settings.min_replicas, settings.max_replicas)


def _clamp(value: int, low: int, high: int) -> int:
    """min(max(value, low), high), at a fifth of the builtins' cost (replays clamp at
    every step)."""
    value = low if value < low else value
    return high if value > high else value


def _lower(settings: Knobs, state: ScalerState, want: int, now: float) -> tuple[float, int, int]:
    """For a lower desired count: since when it has been wanted, the highest count wanted
    since, and how long it must hold (a step down already taken waits only a window)."""
    if state.lower_since is None:
        since, highest = now, want
    else:
        since, highest = state.lower_since, max(state.lower_max, want)
    wait = (
        settings.autoscaling_window_seconds if state.stepping else settings.scale_down_delay_seconds
    )
    return since, highest, wait


def advance(
    settings: Knobs,
    average: float | None,
    state: ScalerState,
    now: float,
    partial: bool = False,
) -> tuple[int, int | None, str, ScalerState]:
    """The rule itself: (replicas, desired now or None when unknown, reason, next state)
    for an average concurrency (None: unknown) with some serving pods unreported or not
    (`partial`). Replays call it on every step of every candidate setting, so it takes
    plain values and builds no message."""
    current = state.replicas
    # Bounds first: a count outside [min, max] (settings changed) is corrected at once.
    if current < settings.min_replicas or current > settings.max_replicas:
        bounded = _clamp(current, settings.min_replicas, settings.max_replicas)
        if bounded != current:
            return bounded, None, "OutOfBounds", ScalerState(bounded, last_scale=now)
    if average is None:
        return current, None, "MetricsUnavailable", state.waiting(None, 0)
    want = desired_replicas(settings, average, current)
    if want > current:
        return want, want, "ScaledUp", ScalerState(want, last_scale=now)
    if want == current:
        return current, want, "AtDesired", state.waiting(None, 0)
    if partial:
        return current, want, "PartialMetrics", state.waiting(None, 0)
    # want < current: wait until the lower count has held long enough.
    since, highest, wait = _lower(settings, state, want, now)
    if now - since < wait:
        return current, want, "ScaleDownDelayed", state.waiting(since, highest)
    target = current - math.ceil((current - highest) / 2)
    return (
        target,
        want,
        "ScaledDown",
        ScalerState(target, stepping=target > highest, last_scale=now),
    )


def decide(
    settings: AutoscalingSpec, seen: Observation, state: ScalerState, now: float
) -> Decision:
    """`advance`, with the action and the message the operator writes into status."""
    replicas, want, reason, after = advance(
        settings, seen.average_concurrency, state, now, seen.partial
    )
    current = state.replicas
    action: Action = "up" if replicas > current else "down" if replicas < current else "hold"
    return Decision(
        replicas,
        want,
        action,
        reason,
        lambda: _explain(settings, seen, state, now, replicas, want, reason),
        after,
    )


def _explain(
    settings: AutoscalingSpec,
    seen: Observation,
    state: ScalerState,
    now: float,
    replicas: int,
    want: int | None,
    reason: str,
) -> str:
    current = state.replicas
    if reason == "OutOfBounds":
        return f"{current} replicas is outside [{settings.min_replicas}, {settings.max_replicas}]"
    if reason == "MetricsUnavailable":
        return "no concurrency series for this model: holding the replica count"
    if reason == "PartialMetrics":
        return "some serving pods report no concurrency yet: not scaling down"
    backlog = f" (an async backlog of {seen.backlog:.0f} included)" if seen.backlog else ""
    why = (
        f"average concurrency {seen.average_concurrency:.2f}{backlog} over "
        f"{settings.autoscaling_window_seconds}s / (target {settings.concurrency_target} x "
        f"{settings.target_utilization_percentage}% = {per_replica(settings):g} per replica) "
        f"-> {want}"
    )
    if reason == "ScaledUp":
        return f"scaled up from {current} to {want}: {why}"
    if reason == "AtDesired":
        return why
    since, highest, wait = _lower(settings, state, want or 0, now)
    if reason == "ScaleDownDelayed":
        left = wait - (now - since)
        return f"{why}; scaling down once that holds for {wait}s ({left:.0f}s left)"
    return (
        f"scaled down from {current} to {replicas} (half the excess over {highest}, "
        f"the most desired in the last {wait}s): {why}"
    )
