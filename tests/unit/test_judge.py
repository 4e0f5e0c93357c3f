"""The one judge, on plain data and a fixed clock: the verdict the operator writes and
`advise` / `report` print."""

from datetime import UTC, datetime, timedelta
from typing import Any

from modelpilot.advisor import source
from modelpilot.advisor.judge import judge
from modelpilot.api.spec import ModelDeploymentSpec
from modelpilot.devcluster.scenarios import catalogue, history, simulate
from modelpilot.times import format_time

THRASH = next(s for s in catalogue() if s.name == "thrash")
HISTORY = history(simulate(THRASH, 6 * 3600), 1.7e9)
NOW = datetime.fromtimestamp(HISTORY.times[-1] + 30, UTC)
KEY = ("ns", "m")


def spec(mode: str = "Recommend", **advisor: Any) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(
        {
            "template": {},
            "port": 8000,
            "autoscaling": THRASH.settings.wire(),
            "advisor": {"mode": mode, **advisor},
        }
    )


def test_recommend_mode_recommends_and_changes_nothing() -> None:
    verdict = judge(KEY, spec(), {}, HISTORY, NOW)
    assert verdict.evaluation.status == "ok"
    (rec,) = [r for r in verdict.evaluation.recommendations if r.reason == "Thrash"]
    assert rec.setting == "scale_down_delay_seconds"
    assert verdict.changes == [] and verdict.overrides == {}
    assert verdict.announce == verdict.evaluation.recommendations  # all new
    section = verdict.section()
    assert section["lastEvaluationTime"] == format_time(NOW)
    assert section["recommendationCount"] == len(section["recommendations"]) >= 1
    wired = {(r["setting"], r["reason"]) for r in section["recommendations"]}
    assert ("scaleDownDelaySeconds", "Thrash") in wired  # camelCase on the wire
    assert "overrides" not in section and section["history"] == []
    condition = verdict.condition
    assert (condition.type, condition.status, condition.reason) == (
        "MetricsAvailable",
        "True",
        "MetricsAvailable",
    )
    assert condition.message == f"{len(HISTORY.times)} points over the last 6h"
    read = judge(KEY, spec(), {}, HISTORY, NOW, read=source.FROM_RULES).condition.message
    assert read == f"{len(HISTORY.times)} points over the last 6h {source.FROM_RULES}"
    # Already in status: nothing new to announce.
    again = judge(KEY, spec(), {"advisor": section}, HISTORY, NOW)
    assert again.announce == []


def test_auto_mode_applies_one_step_to_overrides_and_history() -> None:
    # Thrash's lulls last 16 minutes: no delay up to 450 s helps, and the replay says so.
    short = {"scaleDownDelaySeconds": {"max": 450}}
    assert judge(KEY, spec("Auto", limits=short), {}, HISTORY, NOW).changes == []
    limits = {"scaleDownDelaySeconds": {"max": 900}}
    verdict = judge(KEY, spec("Auto", limits=limits), {}, HISTORY, NOW)
    (change,) = verdict.changes
    assert (change.setting, change.from_) == ("scale_down_delay_seconds", 300)
    # Chosen by replay among the values the limits allow, then applied in one bounded step.
    (rec,) = verdict.evaluation.recommendations
    assert 300 < change.to <= rec.recommended <= 900
    # A step short of the recommendation records where it is heading, not its prediction.
    assert change.heading == rec.recommended and change.predicted is None
    assert verdict.overrides == {"scale_down_delay_seconds": change.to}
    section = verdict.section()
    assert section["overrides"] == {"scaleDownDelaySeconds": change.to}
    assert section["history"][-1]["setting"] == "scaleDownDelaySeconds"
    # The next verdict, from that status: the settings in force include the override, and
    # only history since the change is judged (none yet), so nothing more is applied.
    later = judge(KEY, spec("Auto", limits=limits), {"advisor": section}, HISTORY, NOW)
    assert later.settings.scale_down_delay_seconds == change.to
    assert later.judged_since == NOW.timestamp()
    assert later.changes == [] and later.evaluation.recommendations == []
    assert "judging the last change" in later.condition.message


def test_a_recent_change_in_status_holds_advice_for_every_caller() -> None:
    """What `modelpilot report` used to miss: advice is judged since the last change."""
    changed = format_time(NOW - timedelta(minutes=5))
    status = {
        "advisor": {
            "overrides": {"scaleDownDelaySeconds": 600},
            "history": [
                {
                    "time": changed,
                    "setting": "scaleDownDelaySeconds",
                    "from": 300,
                    "to": 600,
                    "reason": "Thrash",
                    "message": "applied",
                }
            ],
        }
    }
    verdict = judge(KEY, spec(), status, HISTORY, NOW)
    assert verdict.evaluation.recommendations == []
    assert verdict.settings.scale_down_delay_seconds == 600
    assert verdict.overrides == {"scale_down_delay_seconds": 600}  # kept as they were


def test_no_history_is_insufficient_data_and_no_change() -> None:
    verdict = judge(KEY, spec("Auto"), {}, None, NOW)
    assert verdict.evaluation.status == "insufficient-data"
    assert verdict.changes == [] and verdict.overrides == {}
    assert (verdict.condition.status, verdict.condition.reason) == ("False", "InsufficientData")
    assert "no recommendation is made from absent data" in verdict.condition.message


def test_auto_mode_measures_a_predicted_change_and_reverts_it_when_far_worse() -> None:
    changed = NOW - timedelta(hours=1)
    entry = {
        "time": format_time(changed),
        "setting": "scaleDownDelaySeconds",
        "from": 300,
        "to": 600,
        "reason": "Thrash",
        "message": "applied",
        "predicted": {
            "current": {"replicas": 4.0, "withinObjective": 1.0, "scaleEventsPerHour": 9.0},
            "recommended": {"replicas": 5.0, "withinObjective": 1.0, "scaleEventsPerHour": 2.0},
        },
    }
    status = {"advisor": {"overrides": {"scaleDownDelaySeconds": 600}, "history": [entry]}}
    verdict = judge(KEY, spec("Auto"), status, HISTORY, NOW)
    measured = verdict.history[0].measured
    assert measured is not None and measured.within_objective is not None
    # The thrashing hour served far worse than the (deliberately rosy) prediction.
    assert measured.within_objective < 0.9
    undo = verdict.changes[0]
    assert (undo.reason, undo.from_, undo.to) == ("Reverted", 600, 300)
    assert "the replay predicted 100%" in undo.message
    assert verdict.history[0].reverted  # the measured entry is the one marked reverted
    assert verdict.section()["history"][0]["measured"]["withinObjective"] < 0.9
