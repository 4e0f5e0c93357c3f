"""One model's evaluation: enough data? then every rule, at most one recommendation per
setting (the most confident)."""

import math

from modelpilot.advisor.model import Evaluation, History, Objective, Recommendation
from modelpilot.advisor.predict import with_predictions
from modelpilot.advisor.rules import MIN_POINTS, RULES, build_context
from modelpilot.api.spec import AdvisorLimits, AutoscalingSpec, ModelDeploymentSpec

REQUIRED_COVERAGE = 0.6
# How a missing latency is named: TTFT and TPOT exist only for streamed OpenAI-style traffic.
LATENCY_NAMES = {
    "EndToEnd": "latency",
    "TimeToFirstToken": "time to first token (streamed OpenAI-compatible requests)",
    "TimePerOutputToken": "time per output token (streamed OpenAI-compatible requests)",
}


def missing_signals(history: History | None) -> list[str]:
    """Signals without enough data to judge. Latency is only expected where there was
    traffic (a quantile of no requests is no number)."""
    if history is None or len(history.times) < MIN_POINTS:
        return ["concurrency", "replicas", "latency"]
    missing = [
        name
        for name, signal in (("concurrency", "concurrency"), ("replicas", "active"))
        if history.coverage(signal) < REQUIRED_COVERAGE
    ]
    busy = [i for i, r in enumerate(history.rps) if r]
    if not busy and history.coverage("rps") < REQUIRED_COVERAGE:
        missing.append("requests")
    elif busy:
        with_latency = sum(history.latency[i] is not None for i in busy) / len(busy)
        if with_latency < REQUIRED_COVERAGE:
            missing.append("latency")
    return missing


def evaluate(
    namespace: str,
    name: str,
    history: History | None,
    settings: AutoscalingSpec,
    objective: Objective,
    limits: AdvisorLimits | None = None,
    zero_available: bool = False,
) -> Evaluation:
    """`limits`: in Auto mode, values are chosen inside them (see advisor.predict);
    `zero_available`: the activator is installed (minReplicas 0 may be advised)."""
    missing = [
        LATENCY_NAMES[objective.metric] if signal == "latency" else signal
        for signal in missing_signals(history)
    ]
    if missing or history is None:
        return Evaluation(
            namespace=namespace,
            name=name,
            status="insufficient-data",
            missing=missing,
            message="not enough data for "
            + ", ".join(missing)
            + ": no recommendation is made from absent data",
        )
    context = build_context(history, settings, objective, zero_available)
    best: dict[str, Recommendation] = {}
    for _, rule in RULES:
        found = rule(context)
        if (
            found is not None
            and found.recommended != found.current
            and (found.setting not in best or found.confidence > best[found.setting].confidence)
        ):
            best[found.setting] = found
    recommendations = sorted(best.values(), key=lambda r: -r.confidence)
    if math.isfinite(context.threshold):
        recommendations = with_predictions(
            history, settings, recommendations, context.threshold, limits
        )
    return Evaluation(namespace=namespace, name=name, status="ok", recommendations=recommendations)


def evaluate_since_change(
    namespace: str,
    name: str,
    history: History | None,
    settings: AutoscalingSpec,
    objective: Objective,
    last_change: float | None,
    limits: AdvisorLimits | None = None,
    zero_available: bool = False,
) -> Evaluation:
    """Judge only the history after the last applied change (unix time): what came before
    describes settings that are gone, and judging it again would repeat the same advice
    (Auto mode would step the same setting again and again on stale evidence)."""
    if history is None or last_change is None:
        return evaluate(namespace, name, history, settings, objective, limits, zero_available)
    evaluation = evaluate(
        namespace, name, history.since(last_change), settings, objective, limits, zero_available
    )
    if evaluation.status == "ok" or missing_signals(history):
        return evaluation
    return Evaluation(
        namespace=namespace,
        name=name,
        status="ok",
        message=f"judging the last change: recommendations resume once {MIN_POINTS} points of "
        "history follow it",
    )


def objective_of(spec: ModelDeploymentSpec) -> Objective:
    target = spec.advisor.latency_objective
    if target is None:
        return Objective()
    return Objective(
        metric=target.metric, percentile=target.percentile, seconds=target.milliseconds / 1000
    )
