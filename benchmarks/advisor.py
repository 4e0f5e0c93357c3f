"""Advisor benchmark: one evaluation of 500 ModelDeployments with 6 h of history each.

Six hours of the contract series (meter and operator metrics) for 500 models, cycling
through the advisor's scenarios, are backfilled into a real Prometheus. One evaluation of
all of them prints the Prometheus queries and the wall time (targets <= 10 queries,
<= 5 s), next to the baseline measured in the same run: the same history read model by
model (timed on a sample and scaled to all models).

Run: .venv/bin/python benchmarks/advisor.py [--models 500] [--sample 25]
"""

import argparse
import asyncio
import shutil
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from prometheus_api_client import PrometheusConnect

from modelpilot.advisor import source
from modelpilot.advisor.judge import judge
from modelpilot.advisor.model import Evaluation, History, Objective
from modelpilot.api import Key
from modelpilot.api.spec import ModelDeploymentSpec
from modelpilot.devcluster.prometheus import PrometheusServer, backfill, to_openmetrics
from modelpilot.devcluster.scenarios import Scenario, catalogue, series, simulate

NAMESPACE = "bench"
LOOKBACK = 6 * 3600
STEP = 60


def spec_of(scenario: Scenario) -> ModelDeploymentSpec:
    """The ModelDeployment a scenario stands for: its settings and latency objective."""
    objective = {"milliseconds": scenario.objective_ms} if scenario.objective_ms else None
    return ModelDeploymentSpec.model_validate(
        {
            "template": {},
            "port": 8000,
            "autoscaling": scenario.settings.wire(),
            "advisor": {"latencyObjective": objective} if objective else {},
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=500)
    parser.add_argument("--sample", type=int, default=25, help="models timed one by one")
    parser.add_argument("--step", type=int, default=STEP, help="resolution in seconds")
    args = parser.parse_args()

    scenarios = catalogue()
    models = {f"model-{i:03d}": scenarios[i % len(scenarios)] for i in range(args.models)}
    workdir = Path(tempfile.mkdtemp(prefix="bench-advisor-"))
    prometheus = PrometheusServer(workdir / "prometheus")
    t0 = time.perf_counter()
    end = time.time() - 60
    history = []
    for i, (name, scenario) in enumerate(models.items()):
        history += series(
            simulate(scenario, LOOKBACK, step=args.step, seed=i),
            end - LOOKBACK,
            NAMESPACE,
            name,
            with_queue=scenario.async_load is not None,
        )
    backfill(to_openmetrics(history), prometheus.data_dir)
    samples = sum(len(s.samples) for s in history)
    del history
    prometheus.start()
    print(
        f"backfilled {samples / 1e6:.1f}M samples for {args.models} models in "
        f"{time.perf_counter() - t0:.0f}s"
    )
    try:
        prom = PrometheusConnect(url=prometheus.url, disable_ssl=True)
        keys = {(NAMESPACE, name): Objective() for name in models}

        specs = {name: spec_of(scenario) for name, scenario in models.items()}

        def verdict(name: str, histories: dict[Key, History]) -> Evaluation:
            key = (NAMESPACE, name)
            return judge(key, specs[name], {}, histories.get(key), datetime.now(UTC)).evaluation

        t0 = time.perf_counter()
        fetched = asyncio.run(source.fetch(prom, keys, LOOKBACK, args.step, time.time()))
        evaluations = [verdict(name, fetched.histories) for name in models]
        batched = time.perf_counter() - t0

        sample = list(models)[: args.sample]
        t0 = time.perf_counter()
        per_model_queries = 0
        for name in sample:
            one = asyncio.run(
                source.fetch(
                    prom,
                    {(NAMESPACE, name): Objective()},
                    LOOKBACK,
                    args.step,
                    time.time(),
                    matchers=f'namespace="{NAMESPACE}",model_deployment="{name}"',
                )
            )
            per_model_queries += one.queries
            verdict(name, one.histories)
        per_model = (time.perf_counter() - t0) / len(sample) * args.models
    finally:
        prometheus.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    reasons = Counter(r.reason for e in evaluations for r in e.recommendations)
    status = Counter(e.status for e in evaluations)
    print(
        f"\nadvisor benchmark: one evaluation of {args.models} ModelDeployments, 6h at "
        f"{args.step}s resolution (2 cores)"
    )
    print(
        f"  batched: {fetched.queries} Prometheus queries (target <= 10), "
        f"{batched:.2f} s wall time (target <= 5 s)"
    )
    print(
        f"  baseline, model by model: {per_model_queries // len(sample) * args.models} "
        f"queries, {per_model:.1f} s (timed on {len(sample)} models and scaled), "
        f"x{per_model / batched:.1f} the batched time"
    )
    print(f"  outcomes: {dict(status)}; recommendations by reason: {dict(reasons)}")


if __name__ == "__main__":
    main()
