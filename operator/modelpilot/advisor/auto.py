"""Auto mode: which recommendations to apply now, and which applied changes to revert.

Changes go to status.advisor.overrides (the scaler uses spec + overrides), one bounded
step at a time (at most double or half the current value), inside spec.advisor.limits,
at most once per setting per cooldownSeconds, and never from insufficient data. A change
after which latency got worse by more than a fifth is reverted.
"""

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from modelpilot.advisor.model import Evaluation
from modelpilot.api.base import ApiModel
from modelpilot.api.spec import AdvisorSpec
from modelpilot.settings import Setting, SettingField, clamp_to_limits, wire_name
from modelpilot.times import format_time, parse_time

MIN_CONFIDENCE = 0.6
WORSE_BY = 1.2
REVERT_AFTER_SECONDS = 900  # a change is judged by latency at least this long after it


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

    @property
    def at(self) -> float | None:
        """Unix time of the change (None when its time is unreadable)."""
        when = parse_time(self.time)
        return when.timestamp() if when else None


class Plan(BaseModel):
    apply: list[Change] = Field(default_factory=list)
    revert: list[Change] = Field(default_factory=list)  # new entries undoing earlier ones


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
) -> Plan:
    """`history` is status.advisor.history; `latency_now` the latency over the last hour
    (None when unknown)."""
    result = Plan()
    if evaluation.status != "ok":
        return result
    clock, stamp = now.timestamp(), format_time(now)
    last_change: dict[Setting, tuple[float, Change]] = {}
    for change in history:
        last_change[change.setting] = (change.at or 0.0, change)

    # Revert first: a change after which latency got worse (and is not reverted yet).
    for setting, (when, change) in last_change.items():
        if (
            not change.reverted
            and change.latency_before_seconds
            and latency_now
            and clock - when >= REVERT_AFTER_SECONDS
            and latency_now > change.latency_before_seconds * WORSE_BY
        ):
            result.revert.append(
                Change(
                    time=stamp,
                    setting=setting,
                    from_=change.to,
                    to=change.from_,
                    reason="Reverted",
                    reverted=True,
                    message=(
                        f"reverted {wire_name(setting)} {change.from_} -> {change.to}: "
                        f"latency went from {change.latency_before_seconds * 1000:.0f} ms to "
                        f"{latency_now * 1000:.0f} ms after it"
                    ),
                )
            )
    reverted = {c.setting for c in result.revert}

    for rec in evaluation.recommendations:
        if rec.confidence < MIN_CONFIDENCE or rec.setting in reverted:
            continue
        previous = last_change.get(rec.setting)
        if previous is not None and clock - previous[0] < advisor.cooldown_seconds:
            continue
        value = clamp_to_limits(rec.setting, bounded(rec.current, rec.recommended), advisor.limits)
        if value == rec.current:
            continue  # the limits allow no move
        result.apply.append(
            Change(
                time=stamp,
                setting=rec.setting,
                from_=rec.current,
                to=value,
                reason=rec.reason,
                latency_before_seconds=latency_now,
                message=(
                    f"applied {wire_name(rec.setting)} {rec.current} -> {value} ({rec.reason}"
                    + (
                        f"; recommended {rec.recommended}, one step at a time)"
                        if value != rec.recommended
                        else ")"
                    )
                ),
            )
        )
    return result
