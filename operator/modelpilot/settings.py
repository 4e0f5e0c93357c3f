"""The autoscaling settings: their names, and the values in force.

`Setting` names a knob in snake_case, as in `AutoscalingSpec`; camelCase appears only on
the wire (spec, status.advisor.overrides, recommendations, history). The values in force
are the spec plus the advisor's Auto-mode overrides, each kept inside spec.advisor.limits.
Overrides live in status, never in spec, so the spec stays the user's intent and GitOps
tools do not fight the advisor.
"""

from collections.abc import Mapping
from typing import Annotated, Any, Literal, get_args

from pydantic import BeforeValidator, PlainSerializer, ValidationError
from pydantic.alias_generators import to_camel, to_snake

from modelpilot.api.spec import AdvisorLimits, AutoscalingSpec, ModelDeploymentSpec

Setting = Literal[
    "min_replicas",
    "max_replicas",
    "concurrency_target",
    "target_utilization_percentage",
    "autoscaling_window_seconds",
    "scale_down_delay_seconds",
]
SETTINGS: tuple[Setting, ...] = get_args(Setting)
Overrides = dict[Setting, int]


def wire_name(setting: Setting) -> str:
    """The camelCase name, as in spec.autoscaling."""
    return to_camel(setting)


def setting_named(name: str) -> Setting | None:
    """A Setting from its wire (or Python) name; None when there is no such setting."""
    snake = to_snake(name)
    return next((s for s in SETTINGS if s == snake), None)


def _parse(value: Any) -> Any:
    return setting_named(value) or value if isinstance(value, str) else value


# A Setting field of a pydantic model: reads either spelling, writes camelCase to JSON.
SettingField = Annotated[
    Setting, BeforeValidator(_parse), PlainSerializer(wire_name, when_used="json")
]


def clamp_to_limits(setting: Setting, value: int, limits: AdvisorLimits) -> int:
    bounds = getattr(limits, setting)
    if bounds is not None and bounds.min is not None:
        value = max(value, bounds.min)
    if bounds is not None and bounds.max is not None:
        value = min(value, bounds.max)
    return value


def overrides_of(status: Mapping[str, Any]) -> Overrides:
    """status.advisor.overrides, read defensively (status is writable by anyone with RBAC):
    unknown settings and non-integers are left out."""
    raw = (status.get("advisor") or {}).get("overrides") if isinstance(status, Mapping) else None
    if not isinstance(raw, Mapping):
        return {}
    out: Overrides = {}
    for name, value in raw.items():
        setting = setting_named(str(name))
        if setting is not None and isinstance(value, int) and not isinstance(value, bool):
            out[setting] = value
    return out


def overrides_wire(overrides: Overrides) -> dict[str, int]:
    return {wire_name(s): v for s, v in overrides.items()}


def with_overrides(
    spec: AutoscalingSpec, overrides: Overrides, limits: AdvisorLimits
) -> AutoscalingSpec:
    """`spec` with each override applied inside its limits; the spec itself where the
    result would be no valid setting (outside the schema's bounds, min above max)."""
    values = spec.model_dump()
    for setting, value in overrides.items():
        values[setting] = clamp_to_limits(setting, value, limits)
    try:
        merged = AutoscalingSpec.model_validate(values)
    except ValidationError:
        return spec
    return spec if merged.min_replicas > merged.max_replicas else merged


def settings_in_force(spec: ModelDeploymentSpec, status: Mapping[str, Any]) -> AutoscalingSpec:
    """What the scaler uses and the advisor judges: the spec plus the status's overrides."""
    return with_overrides(spec.autoscaling, overrides_of(status), spec.advisor.limits)
