"""One judge: a model's spec, status and history in, the advisor's verdict out.

The operator, `modelpilot advise`, `modelpilot report` and the demo (through the operator)
all reach their verdict here, from the same inputs, so they cannot disagree. Pure: the
callers fetch the history and write, post or print what the verdict says.
"""

import math
import statistics
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from modelpilot.advisor.auto import (
    REVERT_AFTER_SECONDS,
    Change,
    Measure,
    changes_of,
    last_change_time,
    plan,
)
from modelpilot.advisor.evaluate import evaluate_since_change, objective_of
from modelpilot.advisor.model import Evaluation, History, Prediction, Recommendation
from modelpilot.advisor.predict import as_prediction
from modelpilot.advisor.replay import outcome
from modelpilot.advisor.rules import build_context
from modelpilot.api import Key
from modelpilot.api.spec import AutoscalingSpec, ModelDeploymentSpec
from modelpilot.api.status import ConditionUpdate
from modelpilot.settings import Overrides, overrides_of, overrides_wire, settings_in_force
from modelpilot.times import format_duration, format_time

HISTORY_KEPT = 20  # entries of status.advisor.history
DEFAULT_LOOKBACK = 6 * 3600


def recent_latency(history: History | None, seconds: float = 3600) -> float | None:
    """Median latency over the last `seconds` (None when unknown)."""
    if history is None or not history.times:
        return None
    since = history.times[-1] - seconds
    values = [
        v
        for t, v in zip(history.times, history.latency, strict=True)
        if t >= since and v is not None
    ]
    return statistics.median(values) if values else None


class Verdict(BaseModel):
    evaluation: Evaluation
    settings: AutoscalingSpec  # in force when judged (before this verdict's changes)
    judged_since: float | None  # the last change: only history after it was judged
    changes: list[Change]  # applied or reverted now (Auto mode), in order
    history: list[Change]  # status.advisor.history after them
    overrides: Overrides  # status.advisor.overrides after them
    announce: list[Recommendation]  # recommendations the status did not hold before
    condition: ConditionUpdate  # MetricsAvailable
    at: datetime

    def section(self) -> dict[str, Any]:
        """status.advisor as it should be written."""
        section: dict[str, Any] = {
            "lastEvaluationTime": format_time(self.at),
            "recommendations": [r.wire() for r in self.evaluation.recommendations],
            "recommendationCount": len(self.evaluation.recommendations),
            "history": [c.wire() for c in self.history[-HISTORY_KEPT:]],
        }
        if self.overrides:
            section["overrides"] = overrides_wire(self.overrides)
        return section


def with_measured_cold_start(history: History | None, status: Mapping[str, Any]) -> History | None:
    """The history with the cold start the operator measured from pods (status.coldStart),
    where it has one: replays start replicas that long."""
    measured = (status.get("coldStart") or {}).get("p50Seconds")
    if history is None or not isinstance(measured, int | float) or measured <= 0:
        return history
    return history.model_copy(update={"cold_start_seconds": float(measured)})


def judge(
    key: Key,
    spec: ModelDeploymentSpec,
    status: Mapping[str, Any],
    history: History | None,
    now: datetime,
    lookback_seconds: int = DEFAULT_LOOKBACK,
    read: str = "",
) -> Verdict:
    """The verdict on one model. `status` is its status as last written (the advisor's
    history and overrides are read from it); `history` its signals (None: none found), and
    `read` where they came from (`source.FROM_RULES` or `FROM_RAW`; said in the condition)."""
    settings = settings_in_force(spec, status)
    history = with_measured_cold_start(history, status)
    changes = changes_of(status)
    since = last_change_time(changes)
    limits = spec.advisor.limits if spec.advisor.mode == "Auto" else None
    # Whether the activator is installed, as the operator's scaler last said in status: the
    # CLI reading the same status then gives the same advice.
    zero = (status.get("autoscaling") or {}).get("scaleToZero") is True
    evaluation = evaluate_since_change(
        key[0], key[1], history, settings, objective_of(spec), since, limits, zero
    )
    overrides = overrides_of(status)
    done: list[Change] = []
    if spec.advisor.mode == "Auto":
        decided = plan(
            evaluation,
            spec.advisor,
            changes,
            now,
            recent_latency(history),
            measurer(history, settings, spec),
            since,
        )
        done = [*decided.revert, *decided.apply]
        reverted = {c.setting for c in decided.revert}
        measured = {(c.time, c.setting): c for c in decided.measured}
        # A reverted change is done with: its own history entry says so too.
        changes = [
            (measured.get((c.time, c.setting)) or c).model_copy(update={"reverted": True})
            if c.setting in reverted and not c.reverted
            else measured.get((c.time, c.setting), c)
            for c in changes
        ] + done
        overrides.update({c.setting: c.to for c in done})

    return Verdict(
        evaluation=evaluation,
        settings=settings,
        judged_since=since,
        changes=done,
        history=changes,
        overrides=overrides,
        announce=_new(evaluation, status),
        condition=_condition(evaluation, history, lookback_seconds, read),
        at=now,
    )


def measurer(
    history: History | None, settings: AutoscalingSpec, spec: ModelDeploymentSpec
) -> Measure | None:
    """What happened since a time, in the terms of a prediction: replicas on average, the
    share of busy points within the objective (the same threshold the advisor judges by)."""
    if history is None or not history.times:
        return None
    threshold = build_context(history, settings, objective_of(spec)).threshold
    if not math.isfinite(threshold):
        return None
    full = history

    def measure(since: float) -> Prediction | None:
        after = full.since(since)
        hours = len(after.times) * after.step / 3600
        if hours * 3600 < REVERT_AFTER_SECONDS * 0.8:  # too little to tell yet
            return None
        return as_prediction(outcome(after, threshold), hours)

    return measure


def _new(evaluation: Evaluation, status: Mapping[str, Any]) -> list[Recommendation]:
    advisor = status.get("advisor") or {}
    before = advisor.get("recommendations") if isinstance(advisor, Mapping) else None
    seen = {
        (r.get("setting"), r.get("reason"))
        for r in (before if isinstance(before, list) else [])
        if isinstance(r, Mapping)
    }
    return [r for r in evaluation.recommendations if (r.wire()["setting"], r.reason) not in seen]


def _condition(
    evaluation: Evaluation, history: History | None, lookback_seconds: int, read: str
) -> ConditionUpdate:
    if evaluation.status != "ok":
        return ConditionUpdate(
            type="MetricsAvailable",
            status="False",
            reason="InsufficientData",
            message=evaluation.message,
        )
    points = len(history.times) if history else 0
    note = f"; {evaluation.message}" if evaluation.message else ""
    return ConditionUpdate(
        type="MetricsAvailable",
        status="True",
        reason="MetricsAvailable",
        message=f"{points} points over the last {format_duration(lookback_seconds)}"
        + (f" {read}" if read else "")
        + note,
    )
