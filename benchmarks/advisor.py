"""Advisor benchmark: one evaluation of 500 ModelDeployments with 6 h of history each.

Six hours of the contract series (meter and operator metrics) for 500 models, cycling
through the advisor's scenarios, are backfilled into a real Prometheus, and so is what
ModelPilot's recording rules (manifests/monitoring/prometheusrule.yaml) would have recorded
over them (`promtool tsdb create-blocks-from rules`). One evaluation of all of them, reading
the rules, prints the Prometheus queries and the wall time (targets <= 10 queries, <= 2 s;
8 s for 2,000 models), next to the references measured in the same run: the same evaluation
on the raw series (no rules), and the raw history read model by model (timed on a sample and
scaled). Each evaluation starts once Prometheus is idle (done compacting the backfill).

Run: .venv/bin/python benchmarks/advisor.py [--models 500] [--sample 25] [--runs 1]
"""

import argparse
import asyncio
import os
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
from modelpilot.advisor.parallel import Case, Judges
from modelpilot.api import Key
from modelpilot.api.spec import ModelDeploymentSpec
from modelpilot.devcluster.processes import cpu_seconds, memory_kib, wait_quiet
from modelpilot.devcluster.prometheus import (
    PrometheusServer,
    backfill,
    backfill_rules,
    recording_rules,
    to_openmetrics,
)
from modelpilot.devcluster.scenarios import Scenario, catalogue, series, simulate

RULES = Path(__file__).resolve().parents[1] / "manifests" / "monitoring" / "prometheusrule.yaml"
NAMESPACE = "bench"
LOOKBACK = 6 * 3600
STEP = 60
TARGET_PER_MODEL = 0.004  # seconds: 2 s for 500 models, 8 s for 2,000


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
    parser.add_argument(
        "--runs", type=int, default=1, help="evaluations on one backfill (the last is detailed)"
    )
    parser.add_argument(
        "--processes", type=int, default=len(os.sched_getaffinity(0)), help="judging processes"
    )
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
    backfill_rules(
        prometheus, recording_rules(RULES, workdir / "rules.yaml"), end - LOOKBACK, end + 60
    )
    print(
        f"backfilled {samples / 1e6:.1f}M samples for {args.models} models and their recording "
        f"rules in {time.perf_counter() - t0:.0f}s"
    )
    try:
        prom = PrometheusConnect(url=prometheus.url, disable_ssl=True, headers=source.UNCOMPRESSED)
        keys = {(NAMESPACE, name): Objective() for name in models}

        specs = {name: spec_of(scenario) for name, scenario in models.items()}

        def verdict(name: str, histories: dict[Key, History]) -> Evaluation:
            key = (NAMESPACE, name)
            return judge(key, specs[name], {}, histories.get(key), datetime.now(UTC)).evaluation

        def evaluation(use_rules: bool) -> tuple[source.Fetched, list[Evaluation], float, float]:
            """As the operator's advisor loop: read, then judge in the worker processes."""
            # Prometheus compacts the backfilled blocks for a while after it starts: the
            # advisor's time is measured once that is over, not on a shared core.
            quiet = prometheus.pid is not None and wait_quiet(prometheus.pid, timeout=300)
            assert quiet, "Prometheus did not go quiet within 300 s"
            t0 = time.perf_counter()
            fetched = asyncio.run(
                source.fetch(prom, keys, LOOKBACK, args.step, time.time(), use_rules=use_rules)
            )
            read = time.perf_counter() - t0
            now = datetime.now(UTC)
            cases: list[Case] = [
                (key, specs[key[1]], {}, fetched.histories.get(key), now, LOOKBACK, fetched.read)
                for key in keys
            ]
            verdicts = asyncio.run(judges.all(cases))
            evaluations = [v.evaluation for v in verdicts if not isinstance(v, Exception)]
            assert len(evaluations) == len(cases), [v for v in verdicts if isinstance(v, Exception)]
            return fetched, evaluations, read, time.perf_counter() - t0

        judges = Judges(args.processes)
        asyncio.run(judges.start())
        raw, _, raw_read, raw_time = evaluation(use_rules=False)
        repeats = []  # later evaluations on the same backfill (--runs)
        for _ in range(args.runs):
            prometheus_cpu = cpu_seconds(prometheus.pid)
            fetched, evaluations, read, batched = evaluation(use_rules=True)
            prometheus_cpu = cpu_seconds(prometheus.pid) - prometheus_cpu
            repeats.append(batched)
        # After judging everything.
        workers_rss = sum(memory_kib(pid) for pid in judges.pids()) / 1024
        judges.close()
        t0 = time.perf_counter()
        in_process = [verdict(name, fetched.histories) for name in models]
        one_process = time.perf_counter() - t0
        assert [e.recommendations for e in in_process] == [e.recommendations for e in evaluations]

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
                    use_rules=False,
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
        f"  batched, {fetched.read}: {fetched.queries} Prometheus queries (target <= 10), "
        f"{batched:.2f} s wall time (target <= {TARGET_PER_MODEL * args.models:g} s; "
        f"{read:.2f} s reading, of which Prometheus used {prometheus_cpu:.2f} s of CPU)"
    )
    if len(repeats) > 1:
        print(f"  {len(repeats)} evaluations: " + ", ".join(f"{r:.2f} s" for r in repeats))
    print(
        f"  reference, batched {raw.read}: {raw.queries} queries, {raw_time:.2f} s "
        f"({raw_read:.2f} s reading)"
    )
    print(
        f"  judging: {batched - read:.2f} s in {args.processes} worker processes "
        f"({workers_rss:.0f} MiB RSS in all), {one_process:.2f} s in one (the same verdicts)"
    )
    print(
        f"  baseline, model by model: {per_model_queries // len(sample) * args.models} "
        f"queries, {per_model:.1f} s (timed on {len(sample)} models and scaled), "
        f"x{per_model / raw_time:.1f} the batched raw time"
    )
    print(f"  outcomes: {dict(status)}; recommendations by reason: {dict(reasons)}")


if __name__ == "__main__":
    main()
