"""What the one-shot commands (`advise`, `report`) share: ModelDeployments from the
cluster or a file, a Prometheus that answers, and each model's verdict from its history
through the one judge the operator uses. Errors are one line saying what to do."""

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import click
import yaml
from prometheus_api_client import PrometheusConnect

from modelpilot.advisor import source
from modelpilot.advisor.evaluate import objective_of
from modelpilot.advisor.judge import Verdict, judge
from modelpilot.advisor.model import History
from modelpilot.api import GROUP, KIND, PLURAL, VERSION, Key
from modelpilot.api.spec import ModelDeploymentSpec
from modelpilot.workload.validate import validate


class CommandError(click.ClickException):
    """A one-line error ("error: ..."), exit 1, no traceback."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.message}", err=True)


def load_models(
    from_file: str | None, namespace: str | None, name: str | None
) -> list[dict[str, Any]]:
    """ModelDeployment documents from a YAML file or the cluster (KUBECONFIG)."""
    if from_file:
        docs = [
            d
            for d in yaml.safe_load_all(Path(from_file).read_text())
            if isinstance(d, dict) and d.get("kind") == KIND
        ]
        for doc in docs:
            doc.setdefault("metadata", {}).setdefault("namespace", namespace or "default")
    else:
        docs = _list_cluster(namespace)
    if namespace:
        docs = [d for d in docs if d["metadata"].get("namespace") == namespace]
    return [d for d in docs if name is None or d["metadata"]["name"] == name]


def _list_cluster(namespace: str | None) -> list[dict[str, Any]]:
    from kubernetes import client, config

    try:
        config.load_kube_config()
    except (config.ConfigException, OSError) as exc:
        raise CommandError(
            f"no usable kubeconfig ({exc}): set KUBECONFIG, or pass --from-file"
        ) from None
    custom = client.CustomObjectsApi()
    try:
        listing = (
            custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
            if namespace
            else custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        )
    except client.ApiException as exc:
        raise CommandError(
            f"the API server refused to list ModelDeployments: {exc.reason}"
        ) from None
    except Exception as exc:  # connection refused, DNS, TLS
        host = client.Configuration.get_default_copy().host
        raise CommandError(
            f"cannot reach the API server at {host} ({type(exc).__name__}): check KUBECONFIG"
        ) from None
    items: list[dict[str, Any]] = listing["items"]
    return items


def connect_prometheus(url: str) -> PrometheusConnect:
    """A Prometheus client, once it has answered."""
    prometheus = PrometheusConnect(url=url, disable_ssl=True, headers=source.UNCOMPRESSED)
    try:
        reachable = prometheus.check_prometheus_connection()
    except Exception:
        reachable = False
    if not reachable:
        raise CommandError(f"cannot reach Prometheus at {url}")
    return prometheus


def parse_models(
    docs: list[dict[str, Any]],
) -> dict[Key, tuple[ModelDeploymentSpec, dict[str, Any]]]:
    """Each document's spec (validated as the operator does) and status."""
    parsed = {}
    for doc in docs:
        key = (doc["metadata"]["namespace"], doc["metadata"]["name"])
        spec, problems = validate(doc.get("spec"), key[1])
        if spec is None:
            raise CommandError(f"{key[0]}/{key[1]}: invalid spec: {'; '.join(problems)}")
        parsed[key] = (spec, doc.get("status") or {})
    return parsed


@dataclass(frozen=True)
class Judged:
    key: Key
    spec: ModelDeploymentSpec
    status: dict[str, Any]
    history: History | None
    verdict: Verdict
    read: str  # where the history came from (advisor.source.FROM_RULES or FROM_RAW)


def judge_models(
    docs: list[dict[str, Any]],
    prometheus: PrometheusConnect,
    lookback: int,
    step: int,
    scrape_interval: int = 15,
) -> list[Judged]:
    """Every model's verdict (sorted by namespace and name), from one batched fetch."""
    parsed = parse_models(docs)
    objectives = {k: objective_of(spec) for k, (spec, _) in parsed.items()}
    end = time.time()
    fetched = asyncio.run(
        source.fetch(prometheus, objectives, lookback, step, end, scrape_interval=scrape_interval)
    )
    now = datetime.fromtimestamp(end, UTC)
    out = []
    for key, (spec, status) in sorted(parsed.items()):
        history = fetched.histories.get(key)
        verdict = judge(key, spec, status, history, now, lookback, fetched.read)
        out.append(Judged(key, spec, status, history, verdict, fetched.read))
    return out
