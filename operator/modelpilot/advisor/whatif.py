"""`modelpilot whatif`: a model's own traffic (or an arrival trace) replayed under the
current settings and under candidates, side by side (pure: parse, compare, print)."""

import bisect
import textwrap
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from modelpilot.advisor.auto import Change
from modelpilot.advisor.model import History
from modelpilot.advisor.replay import Fitted, Outcome, outcome, replay
from modelpilot.api.spec import AutoscalingSpec
from modelpilot.settings import SETTINGS, Setting, setting_named, wire_name
from modelpilot.times import milliseconds as ms


class Column(BaseModel):
    name: str  # "current", "observed", or the candidate as given
    settings: AutoscalingSpec
    outcome: Outcome
    gpu_hours: float | None  # replica-hours x GPUs per replica; None: no GPUs requested


def parse_candidate(text: str) -> dict[Setting, int]:
    """'minReplicas=2,scaleDownDelaySeconds=600' -> settings (ValueError: what is wrong)."""
    out: dict[Setting, int] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        setting = setting_named(name.strip())
        if not sep or setting is None:
            raise ValueError(
                f"{part.strip()!r}: expected setting=value, setting one of the "
                "spec.autoscaling fields (e.g. minReplicas=2)"
            )
        try:
            out[setting] = int(value)
        except ValueError:
            raise ValueError(f"{part.strip()!r}: {value.strip()!r} is not a whole number") from None
    return out


def candidate_settings(current: AutoscalingSpec, changes: Mapping[Setting, int]) -> AutoscalingSpec:
    """`current` with `changes`, validated as the CRD would (ValueError otherwise)."""
    try:
        settings = AutoscalingSpec.model_validate(current.model_dump() | dict(changes))
    except ValidationError as exc:
        problem = exc.errors()[0]
        setting = setting_named(str(problem["loc"][0])) if problem["loc"] else None
        where = wire_name(setting) if setting else "settings"
        raise ValueError(f"{where}: {problem['msg']}") from None
    if settings.min_replicas > settings.max_replicas:
        raise ValueError("minReplicas above maxReplicas")
    return settings


def gpus_per_replica(template: Mapping[str, Any]) -> int:
    """The GPUs one replica's containers ask for (limits, as the device plugin reads)."""
    total = 0
    for container in (template.get("spec") or {}).get("containers") or []:
        limits = (container.get("resources") or {}).get("limits") or {}
        try:
            total += int(limits.get("nvidia.com/gpu", 0))
        except (TypeError, ValueError):
            continue
    return total


Timeline = list[tuple[int, AutoscalingSpec]]  # (first point, the settings from there on)
AS_IT_RAN = "as it ran"


def as_it_ran(
    current: AutoscalingSpec, changes: Sequence[Change], times: Sequence[float]
) -> tuple[AutoscalingSpec, Timeline]:
    """The settings in force at the first of `times`, and from which point on each later
    set was, from Auto mode's changes (status.advisor.history) and the settings in force
    now. A user's own edits of the spec leave no record, so they are not seen."""
    inside = sorted(
        (c for c in changes if c.at is not None and times and c.at > times[0]),
        key=lambda c: c.at or 0.0,
    )
    first = current
    for change in reversed(inside):
        first = first.model_copy(update={change.setting: change.from_})
    timeline: Timeline = []
    settings = first
    for change in inside:
        settings = settings.model_copy(update={change.setting: change.to})
        point = bisect.bisect_left(times, change.at or 0.0)  # the first point after it
        if timeline and timeline[-1][0] == point:
            timeline[-1] = (point, settings)
        else:
            timeline.append((point, settings))
    return first, timeline


def compare(
    fitted: Fitted,
    current: AutoscalingSpec,
    candidates: Sequence[tuple[str, AutoscalingSpec]],
    objective_seconds: float | None,
    gpus: int,
    observed: History | None,
    ran: tuple[AutoscalingSpec, Timeline] | None = None,
) -> list[Column]:
    """The observed history (when replaying the model's own traffic) and, when Auto mode
    changed settings during it, its replay with the settings as they ran (`ran`); then
    the replay of the current settings, then each candidate's."""

    def column(name: str, settings: AutoscalingSpec, h: History) -> Column:
        result = outcome(h, objective_seconds)
        gpu_hours = result.replica_hours * gpus if gpus else None
        return Column(name=name, settings=settings, outcome=result, gpu_hours=gpu_hours)

    columns = [column("observed", current, observed)] if observed is not None else []
    if observed is not None and ran is not None and ran[1]:
        first, timeline = ran
        columns.append(column(AS_IT_RAN, first, replay(fitted, first, changed=timeline)))
    columns.append(column("current", current, replay(fitted, current)))
    columns += [column(name, s, replay(fitted, s)) for name, s in candidates]
    return columns


def parse_trace(lines: Sequence[str]) -> list[float]:
    """Arrival times (unix seconds) from a CSV whose first column is a timestamp (ISO 8601
    or unix seconds); a header row and blank lines are skipped."""
    times = []
    for n, line in enumerate(lines, 1):
        first = line.split(",", 1)[0].strip()
        if not first:
            continue
        try:
            times.append(float(first))
            continue
        except ValueError:
            pass
        try:
            times.append(datetime.fromisoformat(first).timestamp())
        except ValueError:
            if n == 1:
                continue  # the header
            raise ValueError(f"line {n}: {first!r} is not a timestamp") from None
    return times


def _pct(share: float | None) -> str:
    return "?" if share is None else f"{share * 100:.1f}%"


def _off(predicted: float | None, observed: float | None) -> float | None:
    """How far the replay is from what was observed (+0.1: 10% more); None: unknown."""
    if predicted is None or not observed:
        return None
    return predicted / observed - 1


def _signed(share: float | None) -> str:
    return "?" if share is None else f"{share * 100:+.0f}%"


def self_check(columns: Sequence[Column]) -> dict[str, Any] | None:
    """The replay of the settings that ran against what was observed (None: nothing was
    observed, as for a trace)."""
    if not columns or columns[0].name != "observed":
        return None
    seen, again = columns[0].outcome, columns[1].outcome
    return {
        "column": columns[1].name,
        "replica_hours": _off(again.replica_hours, seen.replica_hours),
        "latency_p95": _off(again.latency_p95, seen.latency_p95),
    }


def table(columns: Sequence[Column], objective: str, fitted: Fitted) -> str:
    """Rows of figures, a column per history; the fit and the self-check below."""
    widths = [max(12, len(c.name) + 2) for c in columns]
    rows: list[tuple[str, list[str]]] = [
        ("", [c.name for c in columns]),
        *[
            (wire_name(s), [str(getattr(c.settings, s)) for c in columns])
            for s in SETTINGS
            if len({getattr(c.settings, s) for c in columns}) > 1
        ],
        ("replica-hours", [f"{c.outcome.replica_hours:.1f}" for c in columns]),
    ]
    if any(c.gpu_hours is not None for c in columns):
        rows.append(("GPU-hours", [f"{c.gpu_hours or 0:.1f}" for c in columns]))
    rows += [
        ("latency p50", [ms(c.outcome.latency_p50) for c in columns]),
        ("latency p95", [ms(c.outcome.latency_p95) for c in columns]),
        ("latency p99", [ms(c.outcome.latency_p99) for c in columns]),
        ("within objective", [_pct(c.outcome.attainment) for c in columns]),
        ("cold starts", [str(c.outcome.cold_starts) for c in columns]),
        ("scale events / h", [f"{c.outcome.scale_events_per_hour:.1f}" for c in columns]),
    ]
    lines = [
        f"{label:<22}" + "".join(f"{v:>{w}}" for v, w in zip(values, widths, strict=True))
        for label, values in rows
    ]
    cold = fitted.cold_start_seconds
    notes = [
        f"objective: {objective}; latency figures are of the history's percentile series",
        f"fitted from {fitted.points} points: mean latency {ms(fitted.base_seconds)} + "
        f"{ms(fitted.per_request_seconds)} per extra request on a replica, the percentile "
        f"{fitted.tail_ratio:.2f}x the mean; cold start "
        + (f"{cold:.0f} s" if cold is not None else "not seen (replayed as instant)"),
    ]
    check = self_check(columns)
    if check is not None:
        which = (
            "the settings as Auto mode changed them"
            if check["column"] == AS_IT_RAN
            else "the current settings"
        )
        notes.append(
            f"replay of {which} vs observed: replica-hours "
            f"{_signed(check['replica_hours'])}, p95 {_signed(check['latency_p95'])}"
        )
    lines.append("")
    lines += [textwrap.fill(note, 100, subsequent_indent="  ") for note in notes]
    return "\n".join(lines)


def document(columns: Sequence[Column], fitted: Fitted) -> dict[str, Any]:
    return {
        "fitted": fitted.model_dump(exclude={"arrivals"}),
        "self_check": self_check(columns),
        "columns": [
            {
                "name": c.name,
                "settings": c.settings.wire(),
                "gpuHours": c.gpu_hours,
                **c.outcome.model_dump(),
            }
            for c in columns
        ],
    }
