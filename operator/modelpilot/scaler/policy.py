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


@dataclass(frozen=True)
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


class Observation(NamedTuple):  # a tuple: replays make one per step, and tuples are cheap
    average_concurrency: float | None  # None: unknown (no series)
    partial: bool = False  # some serving pods have no series yet
    backlog: float = 0.0  # async requests waiting in the model's queue (part of the average)


Action = Literal["up", "down", "hold"]


class Decision(NamedTuple):  # a tuple, as Observation
    replicas: int
    desired: int | None  # what the formula asks for now (None when unknown)
    action: Action
    reason: str
    # The message, written only when read: a replay decides thousands of times per model
    # and reads none of them.
    explain: Callable[[], str]
    state: ScalerState

    @property
    def message(self) -> str:
        return self.explain()


TOLERANCE = 0.1  # of the per-replica target, as the HorizontalPodAutoscaler's


def desired_replicas(settings: AutoscalingSpec, average: float, current: int | None = None) -> int:
    """Replicas for `average` concurrency. rate() over a short window reads a hair off the
    true load, and a replica is a whole GPU: so the count holds while the load per current
    replica is within 10% of the target (the HPA's tolerance), and a replica is only added
    for more than a tenth of one replica's target (6.004 in flight at 1 per replica is 6
    replicas, not 7; 6.2 is 7)."""
    per_replica = settings.concurrency_target * settings.target_utilization_percentage / 100
    needed = average / per_replica
    if current and abs(needed / current - 1) <= TOLERANCE:
        raw = current
    else:
        raw = math.ceil(round(needed - TOLERANCE, 9))  # round: float noise is no load
    return min(max(raw, settings.min_replicas), settings.max_replicas)


def decide(
    settings: AutoscalingSpec, seen: Observation, state: ScalerState, now: float
) -> Decision:
    current = state.replicas
    # Bounds first: a count outside [min, max] (settings changed) is corrected at once.
    bounded = min(max(current, settings.min_replicas), settings.max_replicas)
    if bounded != current:
        return Decision(
            bounded,
            None,
            "up" if bounded > current else "down",
            "OutOfBounds",
            lambda: (
                f"{current} replicas is outside [{settings.min_replicas}, {settings.max_replicas}]"
            ),
            ScalerState(bounded, last_scale=now),
        )

    if seen.average_concurrency is None:
        return Decision(
            current,
            None,
            "hold",
            "MetricsUnavailable",
            lambda: "no concurrency series for this model: holding the replica count",
            state.waiting(None, 0),
        )

    average = seen.average_concurrency
    want = desired_replicas(settings, average, current)
    per_replica = settings.concurrency_target * settings.target_utilization_percentage / 100

    def why() -> str:
        backlog = f" (an async backlog of {seen.backlog:.0f} included)" if seen.backlog else ""
        return (
            f"average concurrency {average:.2f}{backlog} over "
            f"{settings.autoscaling_window_seconds}s / (target {settings.concurrency_target} x "
            f"{settings.target_utilization_percentage}% = {per_replica:g} per replica) -> {want}"
        )

    if want > current:
        return Decision(
            want,
            want,
            "up",
            "ScaledUp",
            lambda: f"scaled up from {current} to {want}: {why()}",
            ScalerState(want, last_scale=now),
        )
    if want == current or seen.partial:
        if seen.partial and want < current:
            return Decision(
                current,
                want,
                "hold",
                "PartialMetrics",
                lambda: "some serving pods report no concurrency yet: not scaling down",
                state.waiting(None, 0),
            )
        return Decision(current, want, "hold", "AtDesired", why, state.waiting(None, 0))

    # want < current: wait until the lower count has held long enough.
    since = state.lower_since if state.lower_since is not None else now
    highest = max(state.lower_max, want) if state.lower_since is not None else want
    wait = (
        settings.autoscaling_window_seconds if state.stepping else settings.scale_down_delay_seconds
    )
    waiting = state.waiting(since, highest)
    if now - since < wait:
        left = wait - (now - since)
        return Decision(
            current,
            want,
            "hold",
            "ScaleDownDelayed",
            lambda: f"{why()}; scaling down once that holds for {wait}s ({left:.0f}s left)",
            waiting,
        )
    step = math.ceil((current - highest) / 2)
    target = current - step
    return Decision(
        target,
        want,
        "down",
        "ScaledDown",
        lambda: (
            f"scaled down from {current} to {target} (half the excess over {highest}, "
            f"the most desired in the last {wait}s): {why()}"
        ),
        ScalerState(target, stepping=target > highest, last_scale=now),
    )
