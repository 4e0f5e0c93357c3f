"""Auto mode: which recommendations to apply now, and which applied changes to revert.

Changes go to status.advisor.overrides (the scaler uses spec + overrides), one bounded
step at a time (at most double or half the current value), inside spec.advisor.limits,
at most once per setting per cooldownSeconds, and never from insufficient data.

A lower concurrencyTarget that stopped short of its recommendation goes on toward it, a
bounded step each cooldown, while the history since the last change still misses the
objective; a saving's shorter scale-down delay, while it meets it.

A change made in one step records what the replay predicted (`predicted`: the share of busy
points within the objective, replicas and scale events, before and after). Fifteen minutes
on, what happened since is measured the same way (`measured`), and the change is reverted
when it served far worse than predicted (more than FAR_WORSE below the predicted share) and
worse than the history it was judged on had (`before`). This refines the older rule, which still
judges changes without a prediction: latency more than a fifth worse than before. A
reverted change is not made again for RETRY_AFTER_SECONDS.
"""

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from modelpilot.advisor.model import GOAL, Evaluation, Predicted, Prediction
from modelpilot.api.base import ApiModel
from modelpilot.api.spec import AdvisorSpec
from modelpilot.settings import Setting, SettingField, clamp_to_limits, wire_name
from modelpilot.times import format_time, parse_time

MIN_CONFIDENCE = 0.6
WORSE_BY = 1.2
FAR_WORSE = 0.1  # measured share within the objective this far below the predicted one
NOISE = 0.02  # and this far below the share before the change
REVERT_AFTER_SECONDS = 900  # a change is judged by latency at least this long after it
# Reasons whose partial steps go on toward the recommendation while the objective is missed:
# a target too high for the objective. Not the others: a missed objective after a step of
# maxReplicas or the delay may have another cause (cold starts), and going on would pay
# for replicas that do not help (seen in simulation: maxReplicas 4 -> 9 for a model whose
# misses were its cold starts); cost-cutting steps must not go on while it is missed.
ONWARD = frozenset({"ConcurrencyTargetTooHigh"})
# And a saving's shorter scale-down delay (advisor.predict's companion of a higher target),
# while the objective is met since the last change: halfway, the delay still holds the
# replicas the target freed (noisy-healthy: 900 -> 450 s saved nothing; 60 s saves 7%).
ONWARD_WHILE_MET = frozenset({("ConcurrencyTargetTooLow", "scale_down_delay_seconds")})
# A change Auto reverted is not made again (toward the same value or past it) for this long:
# the replay that chose it still says the same of the same traffic (seen in simulation:
# concurrencyTarget 6 -> 8 reverted at 85% in time, then chosen again the next period).
RETRY_AFTER_SECONDS = 24 * 3600
Now = tuple[float, str, float | None]  # the unix time, its timestamp, the last hour's latency


class Change(ApiModel):
    """A history entry: what Auto mode did."""

    time: str
    setting: SettingField
    from_: int = Field(alias="from")
    to: int
    reason: str
    message: str
    # Latency over the hour before the change, to judge it by (seconds; None: unknown).
    latency_before_seconds: float | None = None
    reverted: bool = False
    predicted: Predicted | None = None  # the replay's, when the change was made in one step
    before: Prediction | None = None  # the same figures over the history it was judged on
    measured: Prediction | None = None  # and over what happened after it
    # Where a bounded step was going (the recommendation), when it stopped short of it.
    heading: int | None = None

    @property
    def at(self) -> float | None:
        """Unix time of the change (None when its time is unreadable)."""
        when = parse_time(self.time)
        return when.timestamp() if when else None


class Plan(BaseModel):
    apply: list[Change] = Field(default_factory=list)
    revert: list[Change] = Field(default_factory=list)  # new entries undoing earlier ones
    measured: list[Change] = Field(default_factory=list)  # earlier entries, now measured


# What happened since a unix time, in the prediction's terms (None: not enough to tell).
Measure = Callable[[float], Prediction | None]


def _far_worse(change: Change) -> bool:
    if change.predicted is None or change.measured is None:
        return False
    measured = change.measured.within_objective
    predicted = change.predicted.recommended.within_objective
    # Worse than what was seen before the change (the replay's figure for the old settings
    # only when nothing was seen): a change that missed its prediction but did no harm,
    # or saved replicas at the same service, stays.
    seen = change.before or change.predicted.current
    before = seen.within_objective
    if measured is None or predicted is None or before is None:
        return False
    return measured < predicted - FAR_WORSE and measured < before - NOISE


def _revert(change: Change, stamp: str, why: str) -> Change:
    return Change(
        time=stamp,
        setting=change.setting,
        from_=change.to,
        to=change.from_,
        reason="Reverted",
        reverted=True,
        message=f"reverted {wire_name(change.setting)} {change.from_} -> {change.to}: {why}",
    )


def changes_of(status: Mapping[str, Any]) -> list[Change]:
    """status.advisor.history as Changes; an entry that is not one (status is writable by
    anyone with RBAC on it) is left out rather than failing the model."""
    advisor = status.get("advisor") if isinstance(status, Mapping) else None
    entries = advisor.get("history") if isinstance(advisor, Mapping) else None
    changes = []
    for entry in entries if isinstance(entries, list) else []:
        try:
            changes.append(Change.model_validate(entry))
        except ValidationError:
            continue
    return changes


def last_change_time(changes: Sequence[Change]) -> float | None:
    """Unix time of the latest change (applied or reverted), if any."""
    return max((t for c in changes if (t := c.at) is not None), default=None)


def bounded(current: int, recommended: int) -> int:
    """One step toward the recommendation: at most double, at most halve."""
    if recommended > current:
        return min(recommended, max(current * 2, current + 1))
    return max(recommended, math.ceil(current / 2))


def plan(
    evaluation: Evaluation,
    advisor: AdvisorSpec,
    history: Sequence[Change],
    now: datetime,
    latency_now: float | None,
    measure: Measure | None = None,
    judged_since: float | None = None,
) -> Plan:
    """`history` is status.advisor.history; `latency_now` the latency over the last hour
    (None when unknown); `measure` what happened since a time (None: nothing measured);
    `judged_since` where the judged history starts (None: the whole lookback)."""
    result = Plan()
    if evaluation.status != "ok":
        return result
    clock, stamp = now.timestamp(), format_time(now)
    now_: Now = (clock, stamp, latency_now)
    last_change: dict[Setting, tuple[float, Change]] = {}
    for change in history:
        last_change[change.setting] = (change.at or 0.0, change)

    # Revert first: a change that served far worse than predicted or, without a prediction,
    # after which latency got worse (and is not reverted yet).
    for when, change in last_change.values():
        if change.reverted or clock - when < REVERT_AFTER_SECONDS:
            continue
        if change.predicted is not None:
            if change.measured is None and measure is not None:
                measured = measure(when)
                if measured is not None:
                    change = change.model_copy(update={"measured": measured})
                    result.measured.append(change)
            if _far_worse(change):
                assert change.measured is not None and change.predicted is not None
                got = change.measured.within_objective or 0.0
                said = change.predicted.recommended.within_objective or 0.0
                result.revert.append(
                    _revert(
                        change,
                        stamp,
                        f"{got * 100:.0f}% of busy points were within the objective after it, "
                        f"where the replay predicted {said * 100:.0f}%",
                    )
                )
        elif (
            change.latency_before_seconds
            and latency_now
            and latency_now > change.latency_before_seconds * WORSE_BY
        ):
            result.revert.append(
                _revert(
                    change,
                    stamp,
                    f"latency went from {change.latency_before_seconds * 1000:.0f} ms to "
                    f"{latency_now * 1000:.0f} ms after it",
                )
            )
    reverted = {c.setting for c in result.revert}
    seen: list[Prediction | None] = []  # what the judged history showed, measured once

    def before() -> Prediction | None:
        if not seen:
            seen.append(measure(judged_since or 0.0) if measure is not None else None)
        return seen[0]

    for rec in evaluation.recommendations:
        if rec.confidence < MIN_CONFIDENCE or rec.setting in reverted:
            continue
        previous = last_change.get(rec.setting)
        if previous is not None and clock - previous[0] < advisor.cooldown_seconds:
            continue
        step = _step(rec.setting, rec.current, rec.recommended, rec.reason, advisor, now_)
        if step is None or _retried(step, history, clock):
            continue  # the limits allow no move, or it was tried and reverted
        if step.heading is None:  # there in one step: its prediction can be checked
            step = step.model_copy(update={"predicted": rec.predicted, "before": before()})
        result.apply.append(step)
    onward = _onward(last_change, evaluation, advisor, now_, reverted, before)
    result.apply += [step for step in onward if not _retried(step, history, clock)]
    return result


def _retried(step: Change, history: Sequence[Change], clock: float) -> bool:
    """Whether `step` makes again, or goes past, a change reverted since RETRY_AFTER_SECONDS."""
    for change in history:
        if (
            change.setting != step.setting
            or not change.reverted
            or change.reason == "Reverted"
            or clock - (change.at or 0.0) > RETRY_AFTER_SECONDS
        ):
            continue
        way = change.to - change.from_
        if way * (step.to - step.from_) > 0 and way * (step.to - change.to) >= 0:
            return True
    return False


def _step(
    setting: Setting,
    current: int,
    recommended: int,
    reason: str,
    advisor: AdvisorSpec,
    now: Now,
    why: str | None = None,
) -> Change | None:
    """One bounded step from `current` toward `recommended` inside the limits (None: they
    allow no move). `why` ends the message; by default, where a partial step is heading."""
    value = clamp_to_limits(setting, bounded(current, recommended), advisor.limits)
    if value == current:
        return None
    short = value != recommended
    if why is None:
        why = f"; recommended {recommended}, one step at a time" if short else ""
    return Change(
        time=now[1],
        setting=setting,
        from_=current,
        to=value,
        reason=reason,
        latency_before_seconds=now[2],
        heading=recommended if short else None,
        message=f"applied {wire_name(setting)} {current} -> {value} ({reason}{why})",
    )


def _onward(
    last_change: Mapping[Setting, tuple[float, Change]],
    evaluation: Evaluation,
    advisor: AdvisorSpec,
    now: Now,
    reverted: set[Setting],
    before: Callable[[], Prediction | None],
) -> list[Change]:
    """The next steps of changes that stopped short of their recommendation, while the
    objective is still missed since the last change. The rule that recommended one may no
    longer fire after the first step (a target halved once can leave latency over the
    objective at a few percent of the points: under the rule's bar, short of the goal)."""
    settled = reverted | {r.setting for r in evaluation.recommendations}
    out = []
    for when, change in last_change.values():
        heading = change.heading
        while_met = (change.reason, change.setting) in ONWARD_WHILE_MET
        if (
            heading is None
            or (change.reason not in ONWARD and not while_met)
            or change.reverted
            or change.setting in settled
            or now[0] - when < advisor.cooldown_seconds
        ):
            continue
        since = before()
        share = since.within_objective if since is not None else None
        if share is None or (share >= GOAL) != while_met:
            continue
        why = (
            f"; on toward {heading}: {share * 100:.0f}% of busy points within the objective "
            "since the last change"
        )
        step = _step(change.setting, change.to, heading, change.reason, advisor, now, why)
        if step is not None:
            out.append(step)
    return out
