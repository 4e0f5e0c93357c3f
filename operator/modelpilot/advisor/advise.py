"""`modelpilot advise`: one evaluation, printed as a table, JSON or YAML."""

import asyncio
import json
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import click
import yaml
from prometheus_api_client import PrometheusConnect

from modelpilot.advisor import source
from modelpilot.advisor.auto import change_times, changes_of
from modelpilot.advisor.evaluate import evaluate_since_change, objective_of
from modelpilot.advisor.model import Evaluation
from modelpilot.api import GROUP, KIND, PLURAL, VERSION
from modelpilot.scaler.effective import effective, overrides_of
from modelpilot.workload.validate import validate


def load_models(
    from_file: str | None, namespace: str | None, name: str | None
) -> list[dict[str, Any]]:
    if from_file:
        docs = [
            d
            for d in yaml.safe_load_all(Path(from_file).read_text())
            if isinstance(d, dict) and d.get("kind") == KIND
        ]
        for doc in docs:
            doc.setdefault("metadata", {}).setdefault("namespace", namespace or "default")
    else:
        from kubernetes import client, config

        config.load_kube_config()
        custom = client.CustomObjectsApi()
        listing = (
            custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
            if namespace
            else custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        )
        docs = listing["items"]
    if namespace:
        docs = [d for d in docs if d["metadata"].get("namespace") == namespace]
    return [d for d in docs if name is None or d["metadata"]["name"] == name]


def evaluate_all(
    models: list[dict[str, Any]],
    prometheus: PrometheusConnect,
    lookback: int,
    step: int,
    scrape_interval: int = 15,
) -> tuple[list[Evaluation], int]:
    parsed = {}
    for doc in models:
        key = (doc["metadata"]["namespace"], doc["metadata"]["name"])
        spec, problems = validate(doc.get("spec") or {})
        if spec is None:
            raise click.ClickException(f"{key[0]}/{key[1]}: invalid spec: {'; '.join(problems)}")
        parsed[key] = (spec, doc.get("status") or {})
    percentile_of = {k: objective_of(spec).percentile for k, (spec, _) in parsed.items()}
    fetched = asyncio.run(
        source.fetch(
            prometheus, percentile_of, lookback, step, time.time(), scrape_interval=scrape_interval
        )
    )
    evaluations = [
        evaluate_since_change(
            k[0],
            k[1],
            fetched.histories.get(k),
            effective(spec.autoscaling, overrides_of(status), spec.advisor.limits),
            objective_of(spec),
            max(change_times(changes_of(status)).values(), default=None),
        )
        for k, (spec, status) in sorted(parsed.items())
    ]
    return evaluations, fetched.queries


def table(evaluations: list[Evaluation]) -> str:
    """One line per recommendation, within 100 columns; the reasoning indented below."""
    lines = [f"{'MODEL':<26} {'SETTING':<28} {'CHANGE':<12} {'REASON':<24} CONF"]
    for ev in evaluations:
        model = f"{ev.namespace}/{ev.name}"[:26]
        if ev.status != "ok":
            lines.append(f"{model:<26} insufficient data: {', '.join(ev.missing)}"[:100])
        elif not ev.recommendations:
            lines.append(f"{model:<26} ok: no recommendation")
        for rec in ev.recommendations:
            change = f"{rec.current} -> {rec.recommended}"
            lines.append(
                f"{model:<26} {rec.setting:<28} {change:<12} {rec.reason:<24} {rec.confidence:.2f}"
            )
            lines.extend(
                textwrap.wrap(
                    rec.message, width=96, initial_indent="    ", subsequent_indent="    "
                )
            )
    return "\n".join(lines)


def document(evaluations: list[Evaluation]) -> dict[str, Any]:
    return {
        "items": [
            {
                "namespace": ev.namespace,
                "name": ev.name,
                "status": ev.status,
                "recommendations": [r.wire() for r in ev.recommendations],
                **({"missing": ev.missing} if ev.missing else {}),
            }
            for ev in evaluations
        ]
    }


def require_prometheus(prometheus: PrometheusConnect, url: str) -> None:
    """Exit 1 with one line naming the URL when Prometheus does not answer."""
    try:
        reachable = prometheus.check_prometheus_connection()
    except Exception:
        reachable = False
    if not reachable:
        click.echo(f"error: cannot reach Prometheus at {url}", err=True)
        sys.exit(1)


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
    prometheus = PrometheusConnect(url=prometheus_url, disable_ssl=True)
    require_prometheus(prometheus, prometheus_url)
    models = load_models(from_file, namespace, name)
    if not models:
        click.echo("no ModelDeployments found", err=True)
        sys.exit(1)
    evaluations, _ = evaluate_all(models, prometheus, lookback, step, scrape_interval)
    if output == "json":
        click.echo(json.dumps(document(evaluations), indent=2))
    elif output == "yaml":
        click.echo(yaml.safe_dump(document(evaluations), sort_keys=False))
    else:
        click.echo(table(evaluations))
