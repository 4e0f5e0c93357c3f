"""Auto mode: which recommendations to apply now, and which applied changes to revert.

Changes go to status.advisor.overrides (the scaler reads spec + overrides), one bounded
step at a time (at most double or half the current value), inside spec.advisor.limits,
at most once per setting per cooldownSeconds, and never from insufficient data. A change
after which latency got worse by more than a fifth is reverted.
"""

import math
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, Field

from modelpilot.advisor.model import Evaluation
from modelpilot.api.base import ApiModel
from modelpilot.api.spec import AdvisorSpec
from modelpilot.observer.pods import parse_time
from modelpilot.scaler.effective import clamp_to_limits

MIN_CONFIDENCE = 0.6
WORSE_BY = 1.2


class Change(ApiModel):
    """A history entry: what Auto mode did."""

    time: str
    setting: str
    from_: int = Field(alias="from")
    to: int
    reason: str
    message: str
    # Latency over the hour before the change, to judge it by (seconds; None: unknown).
    latency_before_seconds: float | None = None
    reverted: bool = False


class Plan(BaseModel):
    apply: list[Change] = Field(default_factory=list)
    revert: list[Change] = Field(default_factory=list)  # new entries undoing earlier ones


def changes_of(status: Mapping[str, Any]) -> list[Change]:
    """status.advisor.history as Changes."""
    return [Change.model_validate(c) for c in (status.get("advisor") or {}).get("history") or []]


def change_times(changes: Sequence[Change]) -> dict[int, float]:
    """Unix time of each history entry, by index (entries with an unreadable time left out)."""
    return {i: ts.timestamp() for i, c in enumerate(changes) if (ts := parse_time(c.time))}


def _snake(setting: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in setting)


def bounded(current: int, recommended: int) -> int:
    """One step toward the recommendation: at most double, at most halve."""
    if recommended > current:
        return min(recommended, max(current * 2, current + 1))
    return max(recommended, math.ceil(current / 2))


def plan(
    evaluation: Evaluation,
    advisor: AdvisorSpec,
    history: Sequence[Change],
    now: float,
    now_text: str,
    latency_now: float | None,
    changed_at: Mapping[int, float],
) -> Plan:
    """`history` is status.advisor.history; `changed_at[i]` the unix time of entry i;
    `latency_now` the latency over the last hour (None when unknown)."""
    result = Plan()
    if evaluation.status != "ok":
        return result
    last_change = {}
    for i, change in enumerate(history):
        last_change[change.setting] = (changed_at.get(i, 0.0), change)

    # Revert first: a change after which latency got worse (and is not reverted yet).
    for setting, (when, change) in last_change.items():
        if (
            not change.reverted
            and change.latency_before_seconds
            and latency_now
            and now - when >= 900
            and latency_now > change.latency_before_seconds * WORSE_BY
        ):
            result.revert.append(
                Change(
                    time=now_text,
                    setting=setting,
                    from_=change.to,
                    to=change.from_,
                    reason="Reverted",
                    reverted=True,
                    message=(
                        f"reverted {setting} {change.from_} -> {change.to}: latency went "
                        f"from {change.latency_before_seconds * 1000:.0f} ms to "
                        f"{latency_now * 1000:.0f} ms after it"
                    ),
                )
            )
    reverted = {c.setting for c in result.revert}

    for rec in evaluation.recommendations:
        if rec.confidence < MIN_CONFIDENCE or rec.setting in reverted:
            continue
        previous = last_change.get(rec.setting)
        if previous is not None and now - previous[0] < advisor.cooldown_seconds:
            continue
        step = bounded(rec.current, rec.recommended)
        value = clamp_to_limits(_snake(rec.setting), step, advisor.limits)
        if value == rec.current:
            continue  # the limits allow no move
        result.apply.append(
            Change(
                time=now_text,
                setting=rec.setting,
                from_=rec.current,
                to=value,
                reason=rec.reason,
                latency_before_seconds=latency_now,
                message=(
                    f"applied {rec.setting} {rec.current} -> {value} ({rec.reason}"
                    + (
                        f"; recommended {rec.recommended}, one step at a time)"
                        if value != rec.recommended
                        else ")"
                    )
                ),
            )
        )
    return result
