"""The scaler loop's pure step: demand and memory in, writes out, on a fixed clock."""

from datetime import UTC, datetime, timedelta

from modelpilot.api.spec import AutoscalingSpec
from modelpilot.scaler.policy import ScalerState
from modelpilot.scaler.signals import Concurrency
from modelpilot.scaler.step import (
    Deployment,
    NoSignal,
    ScaleStep,
    remembered,
    scale_step,
    signal_for,
)

SETTINGS = AutoscalingSpec(
    min_replicas=1,
    max_replicas=5,
    concurrency_target=2,
    target_utilization_percentage=50,  # 1 request per replica
    autoscaling_window_seconds=60,
    scale_down_delay_seconds=120,
)
WALL = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DEPLOYMENT = Deployment("chat", 2)


def at(seconds: float) -> datetime:
    return WALL + timedelta(seconds=seconds)


def step(
    signal: Concurrency | NoSignal,
    *,
    state: ScalerState | None = None,
    now: float = 0.0,
    serving: frozenset[str] = frozenset({"chat-1", "chat-2"}),
    hpa: str | None = None,
    autoscaling: dict[str, object] | None = None,
) -> ScaleStep:
    status = {"lastScaleTime": "2026-06-01T11:00:00Z"} if autoscaling is None else autoscaling
    return scale_step(SETTINGS, signal, DEPLOYMENT, serving, hpa, state, status, at(now))


def pods(average: float) -> Concurrency:
    return Concurrency(average, {"chat-1", "chat-2"})


def test_a_rise_scales_up_at_once_with_an_event_and_status() -> None:
    out = step(pods(4.0))
    assert out.replicas == 4
    assert out.event is not None and out.event[0] == "ScaledUp"
    assert out.section == {
        "effective": SETTINGS.wire(),
        "desiredReplicas": 4,
        "lastScaleTime": "2026-06-01T12:00:00Z",
        "scaleDown": None,  # no wait: removed from status
    }
    assert (out.condition.type, out.condition.status, out.condition.reason) == (
        "ScalingActive",
        "True",
        "ScaledUp",
    )
    assert out.state is not None and out.state.replicas == 4


def test_a_drop_waits_the_delay_then_steps_down() -> None:
    first = step(pods(0.5))
    assert first.replicas is None and first.event is None
    assert first.condition.reason == "ScaleDownDelayed"
    assert first.section["lastScaleTime"] == "2026-06-01T11:00:00Z"  # kept
    assert first.state is not None and first.state.lower_since == WALL.timestamp()
    assert first.section["scaleDown"] == {
        "waitingSince": "2026-06-01T12:00:00Z",
        "highest": 1,
        "stepping": False,
    }
    waiting = step(pods(0.5), state=first.state, now=100)
    assert waiting.replicas is None
    done = step(pods(0.5), state=waiting.state, now=121)
    assert done.replicas == 1 and done.event is not None and done.event[0] == "ScaledDown"


def test_a_restart_continues_the_wait_from_status() -> None:
    """No memory (a new operator process): the wait status.autoscaling.scaleDown recorded
    goes on, and the step lands when the original delay ends, not a delay later."""
    first = step(pods(0.5))
    kept = {"lastScaleTime": "2026-06-01T11:00:00Z", "scaleDown": first.section["scaleDown"]}
    still = step(pods(0.5), state=None, now=100, autoscaling=kept)
    assert still.replicas is None and "(20s left)" in still.condition.message
    done = step(pods(0.5), state=None, now=121, autoscaling=kept)
    assert done.replicas == 1
    # A wait recorded for another count, or nonsense, starts over.
    assert remembered({"scaleDown": {"waitingSince": 5, "highest": "x"}}, 2) == ScalerState(2)
    assert remembered({"scaleDown": "soon"}, 2) == ScalerState(2)


def test_memory_of_another_count_is_dropped() -> None:
    """Someone ran kubectl scale: the pending wait belonged to another count."""
    stale = ScalerState(replicas=5, lower_since=0.0, lower_max=1)
    out = step(pods(0.5), state=stale, now=1000)
    assert out.replicas is None and out.state is not None
    assert out.state.replicas == 2 and out.state.lower_since == at(1000).timestamp()


def test_unknown_demand_holds_and_says_why() -> None:
    out = step(NoSignal("Prometheus at http://p failed: Timeout"))
    assert out.replicas is None and out.event is None
    assert "desiredReplicas" not in out.section
    assert (out.condition.status, out.condition.reason) == ("False", "MetricsUnavailable")
    assert out.condition.message == "Prometheus at http://p failed: Timeout; holding 2 replicas"


def test_partial_metrics_never_scale_down() -> None:
    out = step(Concurrency(0.1, {"chat-1"}), serving=frozenset({"chat-1", "chat-2"}))
    assert out.replicas is None and out.condition.reason == "PartialMetrics"


def test_an_hpa_owns_the_replicas() -> None:
    out = step(pods(9.0), state=ScalerState(2), hpa="chat-hpa")
    assert out.replicas is None and out.state is None and out.event is None
    assert out.section == {"effective": SETTINGS.wire(), "scaleDown": None}
    assert out.condition.reason == "HorizontalPodAutoscalerPresent"
    assert "chat-hpa" in out.condition.message


def test_signal_for_a_model() -> None:
    demand = {60: {("ns", "chat"): pods(1.0)}}
    assert signal_for(demand, ("ns", "chat"), 60) == pods(1.0)
    missing = signal_for(demand, ("ns", "other"), 60)
    assert isinstance(missing, NoSignal) and "over the last 60s" in missing.why
    down = NoSignal("no Prometheus")
    assert signal_for(down, ("ns", "chat"), 60) is down


ZERO = SETTINGS.model_copy(update={"min_replicas": 0, "scale_down_delay_seconds": 60})


def test_idle_steps_down_to_zero_and_says_since_when() -> None:
    state: ScalerState | None = None
    replicas, now = 4, 0.0
    seen = []
    while replicas and now < 1000:
        out = scale_step(
            ZERO,
            Concurrency(0.0, set()),
            Deployment("chat", replicas),
            (),
            None,
            state,
            {},
            at(now),
        )
        if out.replicas is not None:
            seen.append(out.replicas)
            replicas = out.replicas
        state, now = out.state, now + 10
    assert seen == [2, 1, 0]  # half the excess each time, then the last one
    # At zero (no series at all now): scaled to zero, since the last scale.
    out = scale_step(
        ZERO,
        NoSignal("no series"),
        Deployment("chat", 0),
        (),
        None,
        state,
        {"lastScaleTime": "2026-06-01T12:02:00Z"},
        at(now),
    )
    assert out.replicas is None
    assert (out.condition.reason, out.condition.status) == ("ScaledToZero", "True")
    assert "since 2026-06-01T12:02:00Z" in out.condition.message


def test_requests_held_at_the_activator_wake_a_model_at_zero() -> None:
    def held(count: int, replicas: int, hpa: str | None = None) -> ScaleStep:
        deployment = Deployment("chat", replicas)
        return scale_step(ZERO, NoSignal("-"), deployment, (), hpa, None, {}, at(0), count)

    one = held(1, 0)
    assert one.replicas == 1
    assert one.event is not None and one.event[0] == "ScaledFromZero"
    assert one.section["lastScaleTime"] == "2026-06-01T12:00:00Z"
    assert "1 request is waiting at the activator" in one.condition.message
    # Many held (1 request per replica here): as many replicas as they need, up to max.
    assert held(3, 0).replicas == 3
    assert held(50, 0).replicas == 5
    # A restamp with more held while the first replica starts: more replicas at once.
    more = held(4, 1)
    assert more.replicas == 4 and more.event is not None and more.event[0] == "ScaledUp"
    # Enough already on the way: the usual rule decides (here: nothing known, hold).
    assert held(2, 3).replicas is None
    # An HPA owns the replicas even then.
    assert held(5, 0, hpa="hpa").replicas is None
