"""Scaler benchmark: one tick for 500 ModelDeployments.

A real Prometheus holds 10 minutes of the contract counter for 500 models (2 pods each,
active and queued), backfilled with promtool; the local control plane holds their 500
Deployments. Prints the Prometheus queries and the wall time of a tick that scales many
models and of a steady tick, next to the baseline: the same signal fetched one query per
model (targets: 1 query per signal, <= 1 s).

Run: .venv/bin/python benchmarks/scaler.py [--models 500]
"""

import argparse
import asyncio
import random
import secrets
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kubernetes import client, config
from prometheus_api_client import PrometheusConnect

from modelpilot.api import MODEL_LABEL, Key
from modelpilot.controller.config import OperatorConfig
from modelpilot.controller.kube import Kube, use_api_threads
from modelpilot.controller.refs import DeploymentRef, Indexes, ModelRef
from modelpilot.controller.scaler_loop import ScalerLoop
from modelpilot.controller.status_worker import StatusWorker
from modelpilot.devcluster import controlplane
from modelpilot.devcluster.install import install
from modelpilot.devcluster.prometheus import PrometheusServer, Series, backfill, to_openmetrics
from modelpilot.observer.pods import PodInfo

REPO = Path(__file__).resolve().parents[1]
WINDOW = 60


def history(namespace: str, names: list[str], end: int) -> list[Series]:
    """Each model at its own steady concurrency for 10 minutes, sampled every 15 s."""
    rng = random.Random(7)
    series = []
    for name in names:
        level = rng.uniform(0, 12)
        for pod in (f"{name}-a", f"{name}-b"):
            for state, share in (("active", 0.9), ("queued", 0.1)):
                rate = level * share / 2
                series.append(
                    Series(
                        name="modelpilot_concurrency_seconds_total",
                        labels={
                            "namespace": namespace,
                            "pod": pod,
                            "model_deployment": name,
                            "state": state,
                        },
                        samples=[
                            (t, rate * (t - end + 600)) for t in range(end - 600, end + 1, 15)
                        ],
                    )
                )
    return series


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=500)
    args = parser.parse_args()

    existing = controlplane.load_state()
    started = not (existing and controlplane.is_healthy(existing))
    state = controlplane.up()
    install(state.kubeconfig, REPO / "manifests")
    admin = config.new_client_from_config(config_file=str(state.kubeconfig))
    admin.configuration.connection_pool_maxsize = 16
    namespace = f"bench-scaler-{secrets.token_hex(3)}"
    client.CoreV1Api(admin).create_namespace({"metadata": {"name": namespace}})
    names = [f"model-{i:03d}" for i in range(args.models)]

    workdir = Path(tempfile.mkdtemp(prefix="bench-scaler-"))
    end = int(time.time()) - 2
    prometheus = PrometheusServer(workdir / "prometheus")
    backfill(to_openmetrics(history(namespace, names, end)), prometheus.data_dir)
    prometheus.start()
    try:
        apps = client.AppsV1Api(admin)

        def deployment(name: str) -> None:
            apps.create_namespaced_deployment(
                namespace,
                {
                    "metadata": {"name": name, "labels": {MODEL_LABEL: name}},
                    "spec": {
                        "replicas": 1,
                        "selector": {"matchLabels": {MODEL_LABEL: name}},
                        "template": {
                            "metadata": {"labels": {MODEL_LABEL: name}},
                            "spec": {"containers": [{"name": "m", "image": "m"}]},
                        },
                    },
                },
            )

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(deployment, names))

        spec = {
            "port": 8000,
            "template": {
                "spec": {
                    "containers": [{"name": "m", "image": "m", "ports": [{"containerPort": 8000}]}]
                }
            },
            "autoscaling": {
                "minReplicas": 1,
                "maxReplicas": 10,
                "concurrencyTarget": 1,
                "targetUtilizationPercentage": 100,
                "autoscalingWindowSeconds": WINDOW,
            },
        }
        # The operator's indexes, as kopf keeps them: plain data, no API reads in a tick.
        models: dict[Key, list[ModelRef]] = {
            (namespace, n): [
                ModelRef(
                    namespace=namespace, name=n, uid=f"uid-{n}", generation=1, spec=spec, status={}
                )
            ]
            for n in names
        }
        deployments: dict[Key, list[DeploymentRef]] = {
            (namespace, n): [DeploymentRef(name=n, replicas=1, generation=1)] for n in names
        }
        pods: dict[Key, list[PodInfo]] = {}
        kube = Kube(admin)
        prom = PrometheusConnect(url=prometheus.url, disable_ssl=True)
        indexes = Indexes(models, pods, deployments)
        worker = StatusWorker(kube, indexes, OperatorConfig())
        loop = ScalerLoop(kube, prom, worker, indexes, interval=10)

        async def ticks() -> tuple[float, float, int, int]:
            use_api_threads(16)  # as the operator does at startup
            t0 = time.perf_counter()
            await loop.tick()
            first = time.perf_counter() - t0
            scaled = sum(1 for s in loop.states.values() if s.replicas != 1)
            # The next tick sees the Deployments at their new counts (as the index would).
            for key, s in loop.states.items():
                deployments[key] = [DeploymentRef(name=key[1], replicas=s.replicas, generation=2)]
            before = loop.queries
            t0 = time.perf_counter()
            await loop.tick()
            return first, time.perf_counter() - t0, scaled, loop.queries - before

        first, steady, scaled, steady_queries = asyncio.run(ticks())

        # Baseline: the same signal asked model by model.
        t0 = time.perf_counter()
        for name in names:
            prom.custom_query(
                f"sum(rate(modelpilot_concurrency_seconds_total{{namespace="
                f'"{namespace}",model_deployment="{name}"}}[{WINDOW}s]))'
            )
        per_model = time.perf_counter() - t0
        known = sum(
            1 for s in worker.sections.values() if "desiredReplicas" in s.get("autoscaling", {})
        )
    finally:
        prometheus.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        if started:
            controlplane.down()

    print(f"\nscaler benchmark: one tick for {args.models} ModelDeployments (2 cores)")
    print(
        f"  first tick: {first * 1000:.0f} ms, {scaled} models scaled through the scale "
        f"subresource (with an Event each)"
    )
    print(
        f"  steady tick: {steady * 1000:.0f} ms, {steady_queries} Prometheus "
        f"quer{'y' if steady_queries == 1 else 'ies'} (target 1 per signal, <= 1000 ms)"
    )
    print(
        f"  baseline, one query per model: {args.models} queries, {per_model * 1000:.0f} ms "
        f"for the signal alone (x{per_model / steady:.0f} the whole steady tick)"
    )
    print(f"  models with a known desired count: {known}/{args.models}")


if __name__ == "__main__":
    main()
