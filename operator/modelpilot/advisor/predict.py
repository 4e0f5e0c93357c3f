"""What recommendations are predicted to cost and buy, and how far they should go: the
model's history replayed (`advisor.replay`) under the settings in force and under candidate
changes over the same traffic; `advisor.choose` picks the cheapest set that meets the
objective."""

import math
from collections.abc import Mapping

from modelpilot.advisor.choose import Values, choose
from modelpilot.advisor.model import (
    GOAL,
    Evidence,
    History,
    Predicted,
    Prediction,
    Recommendation,
)
from modelpilot.advisor.replay import Fitted, Outcome, fit, measured, outcome, replay_outcome
from modelpilot.api.spec import AdvisorLimits, AutoscalingSpec
from modelpilot.settings import Setting, clamp_to_limits, wire_name


def as_prediction(result: Outcome, hours: float) -> Prediction:
    return Prediction(
        replicas=round(result.replica_hours / hours, 2),
        within_objective=None if result.attainment is None else round(result.attainment, 3),
        scale_events_per_hour=round(result.scale_events_per_hour, 1),
    )


def _change(values: Mapping[Setting, int]) -> str:
    return " with ".join(f"{wire_name(s)} {v}" for s, v in values.items())


def _sentence(values: Mapping[Setting, int], p: Predicted, threshold: float) -> str:
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
        f" Replayed over the same traffic, {_change(values)} {cost}{served}, "
        f"{then.scale_events_per_hour:g} scale events per hour instead of "
        f"{now.scale_events_per_hour:g}."
    )


UNSEARCHED = frozenset({"AsyncBacklog"})
# A higher target saves replicas only where the scale-down delay lets them go: replicas held
# through a long delay after each peak cost what the target saved (noisy-healthy at the CRD
# defaults: target 1 -> 2 saves 0.2% of replica-hours at a 900 s delay, 7% at 60 s). And
# where a higher target would leave too few replicas warm between bursts, the same evidence
# (the model fast at more requests per replica) says the peaks need fewer replicas: a lower
# maxReplicas (thrash from bad settings: max 8 -> 4 at the same target, 30 -> 24
# replica-hours, 100% in time; target 2 -> 3 alone fell to 93%). So that saving is searched
# together with a shorter delay, down to SHORT_DELAY_SECONDS, and a lower maxReplicas; the
# replay prices what each brings (cold starts, slow points at the peaks). Only beside a
# change found alone: more settings at once would leave each only its rule's value.
SAVINGS = frozenset({"ConcurrencyTargetTooLow"})
SHORT_DELAY_SECONDS = 60


def _companions(
    recommendations: list[Recommendation], settings: AutoscalingSpec, history: History
) -> list[Recommendation]:
    """The other settings' part in a saving the rules found (above)."""
    lead = recommendations[0] if len(recommendations) == 1 else None
    if lead is None or lead.reason not in SAVINGS:
        return []
    out = []

    def companion(setting: Setting, value: int, message: str, **evidence: Evidence) -> None:
        out.append(
            Recommendation(
                setting=setting,
                current=getattr(settings, setting),
                recommended=value,
                reason=lead.reason,
                message=message,
                evidence=evidence,
                confidence=lead.confidence,
            )
        )

    delay = settings.scale_down_delay_seconds
    if delay > SHORT_DELAY_SECONDS:
        companion(
            "scale_down_delay_seconds",
            SHORT_DELAY_SECONDS,
            f"The scale-down delay ({delay} s) keeps the replicas a higher target frees for "
            f"{delay} s after every peak: shorten scaleDownDelaySeconds with it, as far as "
            f"{SHORT_DELAY_SECONDS} s.",
            scaleDownDelaySeconds=delay,
        )
    peak = max((c for c in history.concurrency if c is not None), default=None)
    per_replica = lead.recommended * settings.target_utilization_percentage / 100
    if peak is not None and per_replica > 0:
        cap = max(math.ceil(peak / per_replica), settings.min_replicas, 1)
        if cap < settings.max_replicas:
            companion(
                "max_replicas",
                cap,
                f"At its peak ({peak:.1f} requests in flight) {cap} replicas carry "
                f"{per_replica:.1f} each, the load per replica a target of {lead.recommended} "
                f"would allow: maxReplicas {cap} stops the scaler adding more for a lower one.",
                peakConcurrency=round(peak, 2),
                perReplicaConcurrency=round(per_replica, 2),
            )
    return out


class _Replays:
    """Replays of one fitted history, each set of values once."""

    def __init__(self, fitted: Fitted, settings: AutoscalingSpec, threshold: float) -> None:
        self.fitted, self.settings, self.threshold = fitted, settings, threshold
        self.done: dict[tuple[tuple[Setting, int], ...], Outcome | None] = {}

    def __call__(self, values: Values) -> Outcome | None:
        key = tuple(sorted(values.items()))
        if key not in self.done:
            changed = self.settings.model_copy(update={str(k): v for k, v in values.items()})
            valid = changed.min_replicas <= changed.max_replicas
            self.done[key] = replay_outcome(self.fitted, changed, self.threshold) if valid else None
        return self.done[key]


def _refined(rec: Recommendation, value: int, others: list[Recommendation]) -> Recommendation:
    """The rule's recommendation with the value the replays chose."""
    message, evidence = rec.message, dict(rec.evidence)
    if value != rec.recommended:
        message += (
            f" The rule of thumb says {rec.recommended}; replaying this model's traffic, "
            f"{value} is enough."
        )
        evidence["ruleOfThumb"] = rec.recommended
    if others:
        covered = ", ".join(f"{o.reason} ({wire_name(o.setting)} {o.recommended})" for o in others)
        message += f" Replayed together, this also does what {covered} would, for less."
        evidence["covers"] = ", ".join(o.reason for o in others)
    return rec.model_copy(update={"recommended": value, "message": message, "evidence": evidence})


def with_predictions(
    history: History,
    settings: AutoscalingSpec,
    recommendations: list[Recommendation],
    threshold: float,
    limits: AdvisorLimits | None = None,
) -> list[Recommendation]:
    """The recommendations with values chosen by replay (`advisor.choose`; a recommendation
    whose setting need not change is folded into the ones that do), each with `predicted`
    and the trade-off in its message. With `limits` (Auto mode), only values inside them are
    tried. As they were when the history cannot be fitted (too few points with traffic) or
    the objective cannot be judged."""
    # The replay models latency, not the async queue: a backlog's fix is not searched.
    queued = [r for r in recommendations if r.reason in UNSEARCHED]
    searched = [r for r in recommendations if r.reason not in UNSEARCHED]
    return [*_searched(history, settings, searched, threshold, limits), *queued]


def _searched(
    history: History,
    settings: AutoscalingSpec,
    recommendations: list[Recommendation],
    threshold: float,
    limits: AdvisorLimits | None,
) -> list[Recommendation]:
    if not recommendations:
        return recommendations
    history = measured(history)
    fitted = fit(history)
    if fitted is None:
        return recommendations
    hours = len(fitted.arrivals) * fitted.step / 3600
    replays = _Replays(fitted, settings, threshold)
    now = replays({})
    within = limits or AdvisorLimits()
    seen = outcome(history, threshold).attainment
    searched = [*recommendations, *_companions(recommendations, settings, history)]
    chosen = choose(
        [
            (r.setting, r.current, clamp_to_limits(r.setting, r.recommended, within))
            for r in searched
        ],
        replays,
        seen_within=None if seen is None else seen >= GOAL,
    )
    if now is None or chosen is None:
        return recommendations
    if not chosen.values:
        return []  # within the objective already, and every change would cost more
    predicted = Predicted(
        current=as_prediction(now, hours), recommended=as_prediction(chosen.outcome, hours)
    )
    sentence = _sentence(chosen.values, predicted, threshold)
    kept = [r for r in searched if r.setting in chosen.values]
    folded = [r for r in recommendations if r.setting not in chosen.values]
    out = []
    for i, rec in enumerate(kept):
        refined = _refined(rec, chosen.values[rec.setting], folded if i == 0 else [])
        out.append(
            refined.model_copy(
                update={"predicted": predicted, "message": refined.message + sentence}
            )
        )
    return out
