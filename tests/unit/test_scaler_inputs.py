import math

from modelpilot.api.spec import AdvisorLimits, AutoscalingSpec, Bounds
from modelpilot.scaler import signals
from modelpilot.scaler.effective import effective, overrides_of

SPEC = AutoscalingSpec(min_replicas=1, max_replicas=4, scale_down_delay_seconds=900)


def test_overrides_apply_inside_limits() -> None:
    limits = AdvisorLimits(
        max_replicas=Bounds(max=6), scale_down_delay_seconds=Bounds(min=300, max=1800)
    )
    got = effective(SPEC, {"maxReplicas": 10, "scaleDownDelaySeconds": 60}, limits)
    assert (got.max_replicas, got.scale_down_delay_seconds) == (6, 300)
    assert got.min_replicas == 1


def test_bad_overrides_are_ignored() -> None:
    assert effective(SPEC, {"maxReplicas": "10", "minReplicas": True}, AdvisorLimits()) == SPEC
    # min above max would be an impossible setting: keep the spec.
    assert effective(SPEC, {"minReplicas": 9}, AdvisorLimits()) == SPEC
    assert overrides_of({"advisor": {"overrides": ["nope"]}}) == {}
    assert overrides_of({"advisor": {"overrides": {"maxReplicas": 6}}}) == {"maxReplicas": 6}
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
    assert signals.query(60) == "rate(modelpilot_concurrency_seconds_total[60s])"
