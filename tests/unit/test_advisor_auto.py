from modelpilot.advisor.auto import Change, bounded, plan
from modelpilot.advisor.model import Evaluation, Recommendation
from modelpilot.api.spec import AdvisorLimits, AdvisorSpec, Bounds

NOW = 1_000_000.0


def evaluation(*recs: Recommendation, status: str = "ok") -> Evaluation:
    return Evaluation(
        namespace="ns",
        name="m",
        status=status,  # type: ignore[arg-type]
        recommendations=list(recs),
    )


def rec(setting: str, current: int, recommended: int, confidence: float = 0.9) -> Recommendation:
    return Recommendation(
        setting=setting,
        current=current,
        recommended=recommended,
        reason="Thrash",
        message="m",
        evidence={},
        confidence=confidence,
    )


def test_one_bounded_step_at_a_time() -> None:
    assert bounded(300, 1320) == 600
    assert bounded(1, 8) == 2
    assert bounded(6, 1) == 3
    assert bounded(4, 3) == 3


def test_applies_inside_limits_and_cooldown() -> None:
    advisor = AdvisorSpec(
        mode="Auto",
        cooldown_seconds=3600,
        limits=AdvisorLimits(scale_down_delay_seconds=Bounds(max=500)),
    )
    result = plan(
        evaluation(rec("scaleDownDelaySeconds", 300, 1320)), advisor, [], NOW, "t", 0.5, {}
    )
    (change,) = result.apply
    assert (change.setting, change.from_, change.to) == ("scaleDownDelaySeconds", 300, 500)
    assert change.latency_before_seconds == 0.5
    # Within the cooldown of that setting: nothing.
    again = plan(
        evaluation(rec("scaleDownDelaySeconds", 500, 1320)),
        advisor,
        [change],
        NOW + 600,
        "t",
        0.5,
        {0: NOW},
    )
    assert again.apply == []
    later = plan(
        evaluation(rec("scaleDownDelaySeconds", 400, 1320)),
        advisor.model_copy(update={"limits": AdvisorLimits()}),
        [change],
        NOW + 4000,
        "t",
        0.5,
        {0: NOW},
    )
    assert [c.to for c in later.apply] == [800]


def test_nothing_from_insufficient_data_or_low_confidence() -> None:
    advisor = AdvisorSpec(mode="Auto")
    assert (
        plan(
            evaluation(rec("maxReplicas", 2, 4), status="insufficient-data"),
            advisor,
            [],
            NOW,
            "t",
            None,
            {},
        ).apply
        == []
    )
    assert (
        plan(
            evaluation(rec("maxReplicas", 2, 4, confidence=0.4)), advisor, [], NOW, "t", None, {}
        ).apply
        == []
    )


def test_a_change_that_made_latency_worse_is_reverted() -> None:
    advisor = AdvisorSpec(mode="Auto")
    done = Change(
        time="t0",
        setting="concurrencyTarget",
        from_=10,
        to=5,
        reason="X",
        message="m",
        latency_before_seconds=0.8,
    )
    worse = plan(evaluation(), advisor, [done], NOW + 1800, "t1", 1.2, {0: NOW})
    (undo,) = worse.revert
    assert (undo.setting, undo.from_, undo.to, undo.reverted) == ("concurrencyTarget", 5, 10, True)
    assert "latency went from 800 ms to 1200 ms" in undo.message
    better = plan(evaluation(), advisor, [done], NOW + 1800, "t1", 0.7, {0: NOW})
    assert better.revert == []
    too_soon = plan(evaluation(), advisor, [done], NOW + 60, "t1", 1.2, {0: NOW})
    assert too_soon.revert == []
