"""What a recommendation is predicted to cost and buy: the model's history replayed
(`advisor.replay`) under the settings in force and with the recommended change, over the
same traffic."""

from modelpilot.advisor.model import History, Predicted, Prediction, Recommendation
from modelpilot.advisor.replay import Outcome, fit, outcome, replay
from modelpilot.api.spec import AutoscalingSpec
from modelpilot.settings import wire_name


def _prediction(result: Outcome, hours: float) -> Prediction:
    return Prediction(
        replicas=round(result.replica_hours / hours, 2),
        within_objective=None if result.attainment is None else round(result.attainment, 3),
        scale_events_per_hour=round(result.scale_events_per_hour, 1),
    )


def _sentence(rec: Recommendation, p: Predicted, threshold: float) -> str:
    now, then = p.current, p.recommended
    extra = then.replicas - now.replicas
    if abs(extra) < 0.05:
        cost = f"costs the same replicas on average ({now.replicas:g})"
    else:
        verb = "costs" if extra > 0 else "saves"
        cost = (
            f"{verb} {abs(extra):.1f} replicas on average ({now.replicas:g} -> {then.replicas:g})"
        )
    served = ""
    if now.within_objective is not None and then.within_objective is not None:
        served = (
            f", {then.within_objective * 100:.0f}% of busy points within "
            f"{threshold * 1000:.0f} ms instead of {now.within_objective * 100:.0f}%"
        )
    return (
        f" Replayed over the same traffic, {wire_name(rec.setting)} {rec.recommended} "
        f"{cost}{served}, {then.scale_events_per_hour:g} scale events per hour instead of "
        f"{now.scale_events_per_hour:g}."
    )


def with_predictions(
    history: History,
    settings: AutoscalingSpec,
    recommendations: list[Recommendation],
    threshold: float,
) -> list[Recommendation]:
    """Each recommendation with `predicted` and the trade-off in its message; as they were
    when the history cannot be fitted (too few points with traffic)."""
    if not recommendations:
        return recommendations
    fitted = fit(history)
    if fitted is None:
        return recommendations
    hours = len(fitted.arrivals) * fitted.step / 3600
    current = _prediction(outcome(replay(fitted, settings), threshold), hours)
    out = []
    for rec in recommendations:
        changed = settings.model_copy(update={rec.setting: rec.recommended})
        if changed.min_replicas > changed.max_replicas:
            out.append(rec)
            continue
        predicted = Predicted(
            current=current,
            recommended=_prediction(outcome(replay(fitted, changed), threshold), hours),
        )
        out.append(
            rec.model_copy(
                update={
                    "predicted": predicted,
                    "message": rec.message + _sentence(rec, predicted, threshold),
                }
            )
        )
    return out
