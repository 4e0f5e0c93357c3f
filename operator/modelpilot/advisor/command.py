"""`modelpilot advise` (one evaluation of each model through the operator's judge) and
`modelpilot whatif` (its traffic replayed under other settings), printed; no writes."""

import json
import math
from pathlib import Path

import click
import yaml

from modelpilot.advisor import replay, whatif
from modelpilot.advisor.advise import document, table
from modelpilot.advisor.auto import changes_of
from modelpilot.advisor.evaluate import objective_of
from modelpilot.advisor.judge import with_measured_cold_start
from modelpilot.advisor.model import History
from modelpilot.advisor.rules import build_context
from modelpilot.oneshot import CommandError, connect_prometheus, judge_models, load_models
from modelpilot.times import format_duration, milliseconds


def run_advise(
    *,
    name: str | None,
    namespace: str | None,
    prometheus_url: str,
    from_file: str | None,
    lookback: int,
    step: int,
    output: str,
    scrape_interval: int = 15,
) -> None:
    prometheus = connect_prometheus(prometheus_url)
    models = load_models(from_file, namespace, name)
    if not models:
        raise CommandError("no ModelDeployments found")
    judged = judge_models(models, prometheus, lookback, step, scrape_interval)
    evaluations = [j.verdict.evaluation for j in judged]
    read = judged[0].read
    if output == "json":
        click.echo(json.dumps(document(evaluations, read), indent=2))
    elif output == "yaml":
        click.echo(yaml.safe_dump(document(evaluations, read), sort_keys=False))
    else:
        click.echo(table(evaluations) + f"\nHistory read {read}.")


def run_whatif(
    *,
    name: str,
    namespace: str,
    prometheus_url: str,
    from_file: str | None,
    candidates: tuple[str, ...],
    trace: str | None,
    lookback: int,
    step: int,
    output: str,
    scrape_interval: int = 15,
) -> None:
    """Fit the model from its history, replay it (or `trace`) under each candidate."""
    try:
        changes = [(text, whatif.parse_candidate(text)) for text in candidates]
    except ValueError as exc:
        raise CommandError(f"--set {exc}") from None
    prometheus = connect_prometheus(prometheus_url)
    found = load_models(from_file, namespace, name)
    if not found:
        raise CommandError(f"ModelDeployment {namespace}/{name} not found")
    (judged,) = judge_models(found[:1], prometheus, lookback, step, scrape_interval)
    history = with_measured_cold_start(judged.history, judged.status)
    if history is not None:
        history = replay.measured(history)  # what is replayed, and compared with it
    current = judged.verdict.settings
    ran = whatif.as_it_ran(current, changes_of(judged.status), history.times) if history else None
    fitted = replay.fit(history) if history is not None else None
    if history is None or ran is None or fitted is None:
        raise CommandError(
            f"{namespace}/{name}: too little history in the last {format_duration(lookback)} "
            "to fit its latency curve (it needs traffic the meters measured)"
        )
    try:
        settings = [(text, whatif.candidate_settings(current, c)) for text, c in changes]
    except ValueError as exc:
        raise CommandError(f"--set {exc}") from None
    observed: History | None = history
    if trace is not None:
        try:
            arrivals = whatif.parse_trace(Path(trace).read_text().splitlines())
        except (OSError, ValueError) as exc:
            raise CommandError(f"--trace {trace}: {exc}") from None
        # Before a launch: the trace's arrivals from minReplicas, on the fitted model.
        traced = replay.trace_arrivals(arrivals, step)
        fitted = fitted.model_copy(update={"arrivals": traced, "initial": None})
        observed = None  # the trace never ran here: nothing to compare with
    objective = objective_of(judged.spec)
    threshold = build_context(history, current, objective).threshold
    columns = whatif.compare(
        fitted,
        current,
        settings,
        threshold if math.isfinite(threshold) else None,
        whatif.gpus_per_replica(judged.spec.template),
        observed,
        ran,
    )
    if output == "table":
        label = f"p{objective.percentile} within {milliseconds(threshold)}" + (
            "" if objective.seconds is not None else " (no objective set: 1.5x the quiet latency)"
        )
        click.echo(whatif.table(columns, label, fitted))
        return
    doc = whatif.document(columns, fitted)
    click.echo(
        json.dumps(doc, indent=2) if output == "json" else yaml.safe_dump(doc, sort_keys=False)
    )
