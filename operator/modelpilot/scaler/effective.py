"""The autoscaling settings in force: the spec, with the advisor's Auto-mode overrides.

Overrides live in status.advisor.overrides (written by the advisor), never in spec, so
the spec stays the user's intent and GitOps tools do not fight the advisor. Each override
is kept inside spec.advisor.limits; an override that would put min above max is dropped.
"""

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from modelpilot.api.spec import AdvisorLimits, AutoscalingSpec

SETTINGS = tuple(AutoscalingSpec.model_fields)  # snake_case names


def alias(setting: str) -> str:
    return AutoscalingSpec.model_fields[setting].alias or setting


def clamp_to_limits(setting: str, value: int, limits: AdvisorLimits) -> int:
    bounds = getattr(limits, setting)
    if bounds is not None and bounds.min is not None:
        value = max(value, bounds.min)
    if bounds is not None and bounds.max is not None:
        value = min(value, bounds.max)
    return value


def effective(
    spec: AutoscalingSpec, overrides: Mapping[str, Any], limits: AdvisorLimits
) -> AutoscalingSpec:
    values = spec.model_dump()
    for setting in SETTINGS:
        raw = overrides.get(alias(setting))
        if isinstance(raw, int) and not isinstance(raw, bool):
            values[setting] = clamp_to_limits(setting, raw, limits)
    try:
        merged = AutoscalingSpec.model_validate(values)
    except ValidationError:
        return spec  # an override outside the schema's bounds: keep the spec
    if merged.min_replicas > merged.max_replicas:
        return spec
    return merged


def overrides_of(status: Mapping[str, Any]) -> Mapping[str, Any]:
    overrides = (status.get("advisor") or {}).get("overrides") or {}
    return overrides if isinstance(overrides, Mapping) else {}
