from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from modelpilot.advisor.auto import Change, bounded, changes_of, last_change_time, plan
from modelpilot.advisor.model import Evaluation, Predicted, Prediction, Recommendation
from modelpilot.api.spec import AdvisorLimits, AdvisorSpec, Bounds
from modelpilot.settings import Setting

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def after(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def evaluation(*recs: Recommendation, status: str = "ok") -> Evaluation:
    return Evaluation(
        namespace="ns",
        name="m",
        status=status,  # type: ignore[arg-type]
        recommendations=list(recs),
    )


def rec(
    setting: Setting, current: int, recommended: int, confidence: float = 0.9
) -> Recommendation:
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
    result = plan(evaluation(rec("scale_down_delay_seconds", 300, 1320)), advisor, [], NOW, 0.5)
    (change,) = result.apply
    assert (change.setting, change.from_, change.to) == ("scale_down_delay_seconds", 300, 500)
    assert change.latency_before_seconds == 0.5
    assert change.time == "2026-06-01T12:00:00Z"
    # camelCase on the wire and in what people read.
    assert change.wire()["setting"] == "scaleDownDelaySeconds"
    assert change.message.startswith("applied scaleDownDelaySeconds 300 -> 500")
    # Within the cooldown of that setting: nothing.
    again = plan(
        evaluation(rec("scale_down_delay_seconds", 500, 1320)), advisor, [change], after(600), 0.5
    )
    assert again.apply == []
    later = plan(
        evaluation(rec("scale_down_delay_seconds", 400, 1320)),
        advisor.model_copy(update={"limits": AdvisorLimits()}),
        [change],
        after(4000),
        0.5,
    )
    assert [c.to for c in later.apply] == [800]


def test_nothing_from_insufficient_data_or_low_confidence() -> None:
    advisor = AdvisorSpec(mode="Auto")
    unknown = evaluation(rec("max_replicas", 2, 4), status="insufficient-data")
    assert plan(unknown, advisor, [], NOW, None).apply == []
    unsure = evaluation(rec("max_replicas", 2, 4, confidence=0.4))
    assert plan(unsure, advisor, [], NOW, None).apply == []


def test_a_change_that_made_latency_worse_is_reverted() -> None:
    advisor = AdvisorSpec(mode="Auto")
    done = Change(
        time="2026-06-01T12:00:00Z",
        setting="concurrency_target",
        from_=10,
        to=5,
        reason="X",
        message="m",
        latency_before_seconds=0.8,
    )
    worse = plan(evaluation(), advisor, [done], after(1800), 1.2)
    (undo,) = worse.revert
    assert (undo.setting, undo.from_, undo.to, undo.reverted) == ("concurrency_target", 5, 10, True)
    assert "reverted concurrencyTarget 10 -> 5: latency went from 800 ms to 1200 ms" in undo.message
    assert plan(evaluation(), advisor, [done], after(1800), 0.7).revert == []
    assert plan(evaluation(), advisor, [done], after(60), 1.2).revert == []


def served(share: float, replicas: float = 2.0) -> Prediction:
    return Prediction(replicas=replicas, within_objective=share, scale_events_per_hour=1.0)


def test_a_change_is_judged_against_its_prediction() -> None:
    advisor = AdvisorSpec(mode="Auto")
    predicted = Predicted(current=served(0.80), recommended=served(0.99, replicas=3))
    recommendation = rec("min_replicas", 1, 2).model_copy(update={"predicted": predicted})
    (change,) = plan(evaluation(recommendation), advisor, [], NOW, 1.0).apply
    assert change.predicted == predicted  # made in one step: its prediction is kept
    assert (
        plan(evaluation(rec("min_replicas", 1, 8)), advisor, [], NOW, 1.0).apply[0].predicted
        is None
    )

    # Fifteen minutes on, what happened is measured. As predicted: kept, whatever latency did.
    as_said = plan(evaluation(), advisor, [change], after(1800), 5.0, lambda _: served(0.97))
    assert as_said.revert == []
    (measured,) = as_said.measured
    assert measured.measured == served(0.97) and measured.time == change.time
    # Far worse than predicted and worse than before: reverted, saying why.
    worse = plan(evaluation(), advisor, [change], after(1800), 0.5, lambda _: served(0.70))
    (undo,) = worse.revert
    assert (undo.setting, undo.from_, undo.to) == ("min_replicas", 2, 1)
    assert "70% of busy points were within the objective after it" in undo.message
    assert "the replay predicted 99%" in undo.message
    # What the judged history showed is kept with the change, and judged against.
    measuring = plan(evaluation(recommendation), advisor, [], NOW, 1.0, lambda _: served(0.80))
    seen = measuring.apply[0]
    assert seen.before == served(0.80)
    # Missed its prediction, but served as before (and, say, for fewer replicas): kept.
    same = plan(evaluation(), advisor, [seen], after(1800), 0.5, lambda _: served(0.80))
    assert same.revert == []
    # Short of the prediction but better than before (traffic grew, say): kept.
    short = plan(evaluation(), advisor, [change], after(1800), 0.5, lambda _: served(0.85))
    assert short.revert == []
    # Measured once: an entry that holds its measurement is not measured again.
    calls: list[float] = []
    plan(evaluation(), advisor, [measured], after(3600), 0.5, lambda t: calls.append(t) or None)
    assert calls == []
    # Too early to tell, or nothing to measure with: no verdict yet.
    assert plan(evaluation(), advisor, [change], after(60), 0.5, lambda _: served(0.1)).revert == []
    assert plan(evaluation(), advisor, [change], after(1800), 9.9, lambda _: None).revert == []


def test_history_from_status_is_read_defensively() -> None:
    good = {"time": "2026-06-01T12:00:00Z", "setting": "maxReplicas", "from": 2, "to": 3}
    status = {
        "advisor": {
            "history": [
                {**good, "reason": "CapacityExhausted", "message": "m"},
                {"setting": "noSuchSetting", "from": 1, "to": 2},  # not a change: skipped
                "garbage",
                {**good, "time": "yesterday", "reason": "R", "message": "m"},  # time unknown
            ]
        }
    }
    changes = changes_of(status)
    assert [c.setting for c in changes] == ["max_replicas", "max_replicas"]
    assert last_change_time(changes) == NOW.timestamp()
    assert changes_of({"advisor": {"history": "nope"}}) == []
    assert changes_of({}) == [] and last_change_time([]) is None


def test_a_step_short_of_its_recommendation_goes_on_while_the_objective_is_missed() -> None:
    advisor = AdvisorSpec(mode="Auto", cooldown_seconds=3600)
    too_high = rec("concurrency_target", 10, 4).model_copy(
        update={"reason": "ConcurrencyTargetTooHigh"}
    )
    (first,) = plan(evaluation(too_high), advisor, [], NOW, 2.0).apply
    assert (first.to, first.heading) == (5, 4)  # halved at most: on the way to 4

    def missed(share: float) -> Callable[[float], Prediction]:
        return lambda since: Prediction(
            replicas=2.0, within_objective=share, scale_events_per_hour=1.0
        )

    # The rule no longer fires (slow at a few percent of points: under its bar), but the
    # history since the change still misses the objective: the next step, once cooled down.
    quiet = evaluation()
    soon = plan(quiet, advisor, [first], after(600), 1.0, missed(0.95), NOW.timestamp())
    assert soon.apply == []
    (onward,) = plan(quiet, advisor, [first], after(4000), 1.0, missed(0.95), NOW.timestamp()).apply
    assert (onward.from_, onward.to, onward.heading) == (5, 4, None)
    assert onward.reason == "ConcurrencyTargetTooHigh"
    assert "on toward 4: 95% of busy points within the objective" in onward.message
    assert onward.latency_before_seconds == 1.0
    # Met since, unknown, or reverted: it stays.
    met = plan(quiet, advisor, [first], after(4000), 1.0, missed(0.995), NOW.timestamp())
    assert met.apply == []
    assert plan(quiet, advisor, [first], after(4000), 1.0, None, NOW.timestamp()).apply == []
    undone = first.model_copy(update={"reverted": True})
    assert plan(quiet, advisor, [undone], after(4000), 1.0, missed(0.9)).apply == []
    # Only a target lowered for the objective goes on: a larger maxReplicas may not be what
    # the misses need (cold starts), and a cost cut must not go on while they happen.
    for reason in ("CapacityExhausted", "ConcurrencyTargetTooLow"):
        other = first.model_copy(update={"reason": reason})
        assert plan(quiet, advisor, [other], after(4000), 1.0, missed(0.9)).apply == []


def test_a_saving_shorter_delay_goes_on_while_the_objective_is_met() -> None:
    advisor = AdvisorSpec(mode="Auto", cooldown_seconds=3600)
    shorter = rec("scale_down_delay_seconds", 900, 60).model_copy(
        update={"reason": "ConcurrencyTargetTooLow"}
    )
    (first,) = plan(evaluation(shorter), advisor, [], NOW, 1.0).apply
    assert (first.to, first.heading) == (450, 60)
    # Halfway the delay still holds the replicas the target freed, and the rule that found
    # them (replicas above the minimum carrying their target) may be quiet now: on, while
    # the objective is met since the change.
    (onward,) = plan(
        evaluation(), advisor, [first], after(4000), 1.0, lambda _: served(0.995)
    ).apply
    assert (onward.from_, onward.to, onward.heading) == (450, 225, 60)
    assert "on toward 60: 100% of busy points within the objective" in onward.message
    # Missed since: it stays (the revert judges the change itself).
    missed = plan(evaluation(), advisor, [first], after(4000), 1.0, lambda _: served(0.95))
    assert missed.apply == []
    # A target raised for a saving does not go on by itself: the rule's next look decides.
    raised = first.model_copy(update={"setting": "concurrency_target", "from_": 1, "to": 2})
    assert plan(evaluation(), advisor, [raised], after(4000), 1.0, lambda _: served(1)).apply == []


def test_a_reverted_change_is_not_made_again_for_a_day() -> None:
    advisor = AdvisorSpec(mode="Auto", cooldown_seconds=0)
    # Target 6 -> 8 at noon, reverted an hour later.
    history = [
        Change(
            time=f"2026-06-01T{hour}:00:00Z",
            setting="concurrency_target",
            from_=before,
            to=after_,
            reason=reason,
            message="m",
            reverted=True,
        )
        for hour, before, after_, reason in (
            (12, 6, 8, "ConcurrencyTargetTooLow"),
            (13, 8, 6, "Reverted"),
        )
    ]

    def applied(current: int, recommended: int, at: float) -> list[int]:
        found = evaluation(rec("concurrency_target", current, recommended))
        return [c.to for c in plan(found, advisor, history, after(at), 1.0).apply]

    # The same change, or one past it, the replay chose again from similar traffic: not made.
    assert applied(6, 8, 6 * 3600) == []
    assert applied(6, 12, 6 * 3600) == []
    # Short of it, or the other way, it is.
    assert applied(6, 7, 6 * 3600) == [7]
    assert applied(6, 4, 6 * 3600) == [4]
    # A day on, traffic may have changed: tried again.
    assert applied(6, 8, 25 * 3600) == [8]
