import math

from modelpilot.api.spec import AdvisorLimits, AutoscalingSpec, Bounds, ModelDeploymentSpec
from modelpilot.scaler import signals
from modelpilot.settings import (
    SETTINGS,
    overrides_of,
    setting_named,
    settings_in_force,
    wire_name,
    with_overrides,
)

SPEC = AutoscalingSpec(min_replicas=1, max_replicas=4, scale_down_delay_seconds=900)


def test_settings_are_the_autoscaling_fields() -> None:
    # The advisor tunes every field but how the activator holds requests at zero.
    fields = AutoscalingSpec.model_fields
    assert tuple(f for f in fields if not f.startswith("activation_")) == SETTINGS
    for setting in SETTINGS:
        assert wire_name(setting) == AutoscalingSpec.model_fields[setting].alias
        assert setting_named(wire_name(setting)) == setting == setting_named(setting)
    assert setting_named("replicas") is None


def test_overrides_apply_inside_limits() -> None:
    limits = AdvisorLimits(
        max_replicas=Bounds(max=6), scale_down_delay_seconds=Bounds(min=300, max=1800)
    )
    got = with_overrides(SPEC, {"max_replicas": 10, "scale_down_delay_seconds": 60}, limits)
    assert (got.max_replicas, got.scale_down_delay_seconds) == (6, 300)
    assert got.min_replicas == 1


def test_settings_in_force_read_the_status() -> None:
    spec = ModelDeploymentSpec(
        template={},
        port=8000,
        autoscaling=SPEC,
        advisor={"limits": {"maxReplicas": {"max": 6}}},  # type: ignore[arg-type]
    )
    status = {"advisor": {"overrides": {"maxReplicas": 10, "scaleDownDelaySeconds": 60}}}
    got = settings_in_force(spec, status)
    assert (got.max_replicas, got.scale_down_delay_seconds) == (6, 60)
    assert settings_in_force(spec, {}) == SPEC


def test_bad_overrides_are_ignored() -> None:
    status = {"advisor": {"overrides": {"maxReplicas": "10", "minReplicas": True, "x": 3}}}
    assert overrides_of(status) == {}
    # min above max would be an impossible setting: keep the spec.
    assert with_overrides(SPEC, {"min_replicas": 9}, AdvisorLimits()) == SPEC
    # outside the schema's bounds: keep the spec.
    assert with_overrides(SPEC, {"target_utilization_percentage": 500}, AdvisorLimits()) == SPEC
    assert overrides_of({"advisor": {"overrides": ["nope"]}}) == {}
    assert overrides_of({"advisor": {"overrides": {"maxReplicas": 6}}}) == {"max_replicas": 6}
    assert overrides_of({}) == {}


def test_demand_sums_pods_and_states_per_model() -> None:
    def series(ns: str, md: str, pod: str, state: str, value: str) -> dict[str, object]:
        return {
            "metric": {"namespace": ns, "model_deployment": md, "pod": pod, "state": state},
            "value": [0, value],
        }

    result = [
        series("a", "chat", "chat-1", "active", "1.5"),
        series("a", "chat", "chat-1", "queued", "0.5"),
        series("a", "chat", "chat-2", "active", "2"),
        series("b", "chat", "chat-1", "active", "0"),  # another namespace, same name
        series("a", "embed", "embed-1", "active", "NaN"),  # no usable samples
        {"metric": {"model_deployment": "orphan"}, "value": [0, "3"]},  # no namespace
    ]
    demand = signals.parse(result)
    assert set(demand) == {("a", "chat"), ("b", "chat")}
    assert math.isclose(demand[("a", "chat")].average, 4.0)
    assert demand[("a", "chat")].pods == {"chat-1", "chat-2"}
    assert demand[("b", "chat")].average == 0.0  # known zero, not unknown
    assert demand[("a", "chat")].backlog is None  # no async queue


def test_an_async_backlog_adds_to_known_concurrency_only() -> None:
    def backlog(ns: str, md: str, value: str) -> dict[str, object]:
        labels = {"namespace": ns, "model_deployment": md, "state": signals.BACKLOG_STATE}
        return {"metric": labels, "value": [0, value]}

    active = {"namespace": "a", "model_deployment": "batch", "pod": "b-1", "state": "active"}
    demand = signals.parse(
        [
            {"metric": active, "value": [0, "2"]},
            backlog("a", "batch", "12.5"),
            backlog("a", "fresh", "40"),  # no concurrency series yet: still unknown
        ]
    )
    assert set(demand) == {("a", "batch")}
    assert demand[("a", "batch")].average == 14.5
    assert demand[("a", "batch")].backlog == 12.5
    assert demand[("a", "batch")].pods == {"b-1"}
    query = signals.query(60)
    assert query.startswith("rate(modelpilot_concurrency_seconds_total[60s]) or ")
    assert (
        "max by (namespace, model_deployment) (avg_over_time(modelpilot_async_queue_size[60s]))"
        in query
    )
