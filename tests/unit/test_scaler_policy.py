from collections.abc import Callable

from modelpilot.api.spec import AutoscalingSpec
from modelpilot.scaler.policy import (
    Decision,
    Observation,
    ScalerState,
    decide,
    desired_replicas,
)

SETTINGS = AutoscalingSpec(
    min_replicas=1,
    max_replicas=10,
    concurrency_target=4,
    target_utilization_percentage=50,
    autoscaling_window_seconds=60,
    scale_down_delay_seconds=300,
)  # 2 requests per replica


def simulate(
    load: Callable[[float], float | None],
    seconds: int,
    tick: int = 10,
    settings: AutoscalingSpec = SETTINGS,
    start: int = 1,
) -> list[Decision]:
    state, decisions = ScalerState(replicas=start), []
    for now in range(0, seconds, tick):
        decision = decide(settings, Observation(load(now)), state, float(now))
        decisions.append(decision)
        state = decision.state
    return decisions


def replicas(decisions: list[Decision]) -> list[int]:
    return [d.replicas for d in decisions]


def test_formula_and_bounds() -> None:
    assert desired_replicas(SETTINGS, 0) == 1
    assert desired_replicas(SETTINGS, 2.0) == 1
    assert desired_replicas(SETTINGS, 2.2) == 1  # a tenth of a replica's target: noise
    assert desired_replicas(SETTINGS, 2.21) == 2
    assert desired_replicas(SETTINGS, 7) == 4
    assert desired_replicas(SETTINGS, 1000) == 10
    # Float noise does not add a replica: 0.1 x 3 / 0.3 is 1.0000000000000002.
    tenth = AutoscalingSpec(concurrency_target=1, target_utilization_percentage=30, max_replicas=10)
    assert desired_replicas(tenth, 0.1 * 3) == 1


def test_tolerance_holds_a_count_on_noise_and_follows_a_real_change() -> None:
    one_each = AutoscalingSpec(
        concurrency_target=2, target_utilization_percentage=50, max_replicas=10
    )  # 1 request per replica
    # A steady 6 in flight reads a hair above 6: 6 replicas, not a seventh GPU...
    assert desired_replicas(one_each, 6.004, current=1) == 6
    assert desired_replicas(one_each, 6.004, current=6) == 6
    # ...and at 6, within 10% either way holds the count (the HPA's tolerance).
    assert desired_replicas(one_each, 6.6, current=6) == 6
    assert desired_replicas(one_each, 5.45, current=6) == 6
    # A real rise or fall moves it at once.
    assert desired_replicas(one_each, 6.65, current=6) == 7
    assert desired_replicas(one_each, 4.5, current=6) == 5
    assert desired_replicas(one_each, 9.0, current=6) == 9
    run = simulate(lambda t: 6.004, 120, settings=one_each)
    assert set(replicas(run)) == {6}


def test_step_up_is_immediate() -> None:
    run = simulate(lambda t: 1.0 if t < 30 else 9.0, 60)
    assert replicas(run) == [1, 1, 1, 5, 5, 5]
    assert run[3].action == "up"
    assert run[3].message.startswith("scaled up from 1 to 5: average concurrency 9.00")


def test_burst_goes_straight_to_max() -> None:
    assert replicas(simulate(lambda t: 500.0 if t >= 10 else 0.0, 30)) == [1, 10, 10]


def test_scale_down_waits_for_the_delay_then_steps_by_half() -> None:
    run = simulate(lambda t: 16.0 if t < 60 else 0.0, 900)
    counts = replicas(run)
    assert counts[:6] == [8] * 6
    # The lower count is first seen at t=60; nothing moves before t=360.
    assert set(counts[6:36]) == {8}
    assert run[35].reason == "ScaleDownDelayed"
    # t=360: half the excess (7 -> 4 removed). The next lower count is seen at t=370 and
    # must hold one window (60 s): the next step is at t=430, the last at t=500.
    assert counts[36] == 4
    assert counts[37:43] == [4] * 6
    assert counts[43] == 2
    assert counts[44:50] == [2] * 6
    assert counts[50] == 1
    assert counts[-1] == 1
    assert [d.action for d in run].count("down") == 3


def test_slow_decline_follows_the_highest_recent_need() -> None:
    # Load falls 1 per minute from 16: desired drops by half a replica a minute.
    run = simulate(lambda t: max(16.0 - t / 60, 0.0), 1800)
    counts = replicas(run)
    assert counts[0] == 8
    assert counts == sorted(counts, reverse=True)  # never back up while load declines
    assert counts[29] == 8  # the first 300 s of lower counts only wait
    assert counts[-1] == 1


def test_oscillating_load_does_not_thrash() -> None:
    # 5 minutes busy, 2 minutes quiet, repeated: the delay (300 s) outlasts the quiet.
    run = simulate(lambda t: 12.0 if (t % 420) < 300 else 0.0, 3600)
    assert run[0].action == "up"  # to 6 at once
    assert {d.replicas for d in run} == {6}  # and never down and up again
    assert any(d.reason == "ScaleDownDelayed" for d in run)  # the quiet spells were seen


def test_unknown_concurrency_holds_and_cancels_a_pending_scale_down() -> None:
    state = ScalerState(replicas=6, lower_since=0.0, lower_max=1)
    held = decide(SETTINGS, Observation(None), state, 1000.0)
    assert (held.replicas, held.action, held.reason) == (6, "hold", "MetricsUnavailable")
    assert held.state.lower_since is None
    # ... so the wait starts over once data is back.
    back = decide(SETTINGS, Observation(0.0), held.state, 1010.0)
    assert (back.replicas, back.reason) == (6, "ScaleDownDelayed")


def test_partial_data_may_scale_up_but_never_down() -> None:
    state = ScalerState(replicas=4, lower_since=0.0, lower_max=1)
    down = decide(SETTINGS, Observation(0.0, partial=True), state, 10_000.0)
    assert (down.replicas, down.reason) == (4, "PartialMetrics")
    up = decide(SETTINGS, Observation(20.0, partial=True), state, 10_000.0)
    assert (up.replicas, up.action) == (10, "up")


def test_counts_outside_new_bounds_are_corrected_at_once() -> None:
    narrowed = SETTINGS.model_copy(update={"max_replicas": 3})
    decision = decide(narrowed, Observation(None), ScalerState(replicas=8), 0.0)
    assert (decision.replicas, decision.reason) == (3, "OutOfBounds")
    raised = SETTINGS.model_copy(update={"min_replicas": 2})
    assert decide(raised, Observation(0.0), ScalerState(replicas=1), 0.0).replicas == 2
