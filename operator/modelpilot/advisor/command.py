"""`modelpilot advise`: one evaluation of each model through the operator's judge, printed;
no writes anywhere."""

import json

import click
import yaml

from modelpilot.advisor.advise import document, table
from modelpilot.oneshot import CommandError, connect_prometheus, judge_models, load_models


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
    if output == "json":
        click.echo(json.dumps(document(evaluations), indent=2))
    elif output == "yaml":
        click.echo(yaml.safe_dump(document(evaluations), sort_keys=False))
    else:
        click.echo(table(evaluations))
