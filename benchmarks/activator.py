"""Activator benchmark: models at zero woken by their first request, on the local control
plane with the real operator (scaler tick 10 s, its default) and two real activators.

Prints, side by side in one run:
- time from a model's first request to the scale decision (the Deployment at 1 replica),
  p50/p99 over --sequential models woken one at a time;
- the same for --burst models woken at once: all served? decision p99 (target <= 2 s;
  Knative's CI holds p95 <= 2 s for 25 services at once);
- the latency the activator adds once a replica is Ready, against the direct path through
  the meter (client -> activator -> meter -> model vs client -> meter -> model);
- that a warm model's traffic leaves the activator: its EndpointSlice is gone.

The benchmark plays kube-proxy (requests go to the activator address and port of the model's
EndpointSlice) and the kubelet (a pod, Ready after --cold-start seconds, once the scaler
asks for it). Run: .venv/bin/python benchmarks/activator.py [--sequential 60] [--burst 100]
"""

import argparse
import asyncio
import contextlib
import secrets
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes import client, config, watch

from modelpilot.advisor.rules import percentile
from modelpilot.api import ACTIVATOR_APP, GROUP, MODEL_LABEL, PLURAL, VERSION
from modelpilot.devcluster import controlplane
from modelpilot.devcluster.install import install
from modelpilot.devcluster.kubelet import FakeKubelet
from modelpilot.devcluster.processes import wait_until
from modelpilot.devcluster.servers import (
    ActivatorProcess,
    FakeModelProcess,
    MeterProcess,
    OperatorProcess,
)

REPO = Path(__file__).resolve().parents[1]
ACTIVATOR_IPS = ("127.0.0.2", "127.0.0.3")
BODY = b'{"input": "hello"}'  # the sample model's /predict


class Kubelet(threading.Thread):
    """Watches the namespace's Deployments: records when each first asks for a replica and
    starts that replica (a pod, Ready after the cold start)."""

    def __init__(self, admin: client.ApiClient, namespace: str, cold_start: float) -> None:
        super().__init__(daemon=True)
        self.apps, self.namespace, self.cold_start = client.AppsV1Api(admin), namespace, cold_start
        self.kubelet = FakeKubelet(admin)
        self.asked: dict[str, float] = {}
        self.pool = ThreadPoolExecutor(16)

    def run(self) -> None:
        stream = watch.Watch().stream(self.apps.list_namespaced_deployment, self.namespace)
        with contextlib.suppress(Exception):  # the stream ends with the benchmark
            self._follow(stream)

    def _follow(self, stream: Any) -> None:
        for event in stream:
            deployment = event["object"]
            name = deployment.metadata.name
            if (deployment.spec.replicas or 0) >= 1 and name not in self.asked:
                self.asked[name] = time.monotonic()
                self.pool.submit(self._start, name)

    def _start(self, name: str) -> None:
        time.sleep(self.cold_start)
        self.kubelet.create_pod(self.namespace, f"{name}-0", labels={MODEL_LABEL: name})
        self.kubelet.set_status(self.namespace, f"{name}-0", "True")


def zero_model(meter_port: int) -> dict[str, Any]:
    return {
        "port": 8000,
        "meter": {"port": meter_port},
        "template": {
            "spec": {
                "containers": [{"name": "m", "image": "m", "ports": [{"containerPort": 8000}]}]
            }
        },
        "autoscaling": {"minReplicas": 0, "maxReplicas": 2, "scaleDownDelaySeconds": 900},
    }


async def wake(
    http: aiohttp.ClientSession, port: int, kubelet: Kubelet, name: str
) -> tuple[float, int]:
    """One request to a model at zero: (seconds to the scale decision, status)."""
    sent = time.monotonic()
    async with http.post(f"http://{ACTIVATOR_IPS[0]}:{port}/predict", data=BODY) as response:
        await response.read()
        return kubelet.asked[name] - sent, response.status


async def latency(http: aiohttp.ClientSession, url: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        async with http.post(url, data=BODY) as response:
            await response.read()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequential", type=int, default=60)
    parser.add_argument("--burst", type=int, default=100)
    parser.add_argument("--cold-start", type=float, default=0.5)
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()

    existing = controlplane.load_state()
    started = not (existing and controlplane.is_healthy(existing))
    state = controlplane.up()
    install(state.kubeconfig, REPO / "manifests")
    admin = config.new_client_from_config(config_file=str(state.kubeconfig))
    core, custom = client.CoreV1Api(admin), client.CustomObjectsApi(admin)
    namespace = f"bench-activator-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": namespace}})
    workdir = Path(tempfile.mkdtemp(prefix="bench-activator-"))
    kube = FakeKubelet(admin)
    kube.register_node()
    processes: list[Any] = []
    try:
        model = FakeModelProcess(workdir, base_ms=0, per_request_ms=0)
        meter = MeterProcess(workdir, model.url)
        processes += [model, meter]
        operator = OperatorProcess(
            workdir / "operator.log",
            state.operator_kubeconfig,
            namespace=namespace,
            prometheus_url=state.prometheus_url,
            activator_namespace=controlplane.OPERATOR_NAMESPACE,
        )
        processes.append(operator)
        for i, ip in enumerate(ACTIVATOR_IPS):
            name = f"bench-activator-{i}-{secrets.token_hex(2)}"
            labels = {"app.kubernetes.io/name": ACTIVATOR_APP}
            kube.create_pod(controlplane.OPERATOR_NAMESPACE, name, labels=labels)
            processes.append(
                ActivatorProcess(workdir / f"{name}.log", state.activator_kubeconfig, ip)
            )
            kube.set_status(controlplane.OPERATOR_NAMESPACE, name, "True", pod_ip=ip)

        kubelet = Kubelet(admin, namespace, args.cold_start)
        kubelet.start()
        names = [f"m{i:03d}" for i in range(args.sequential + args.burst)]
        body = zero_model(meter.port)
        with ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda n: custom.create_namespaced_custom_object(
                        GROUP,
                        VERSION,
                        namespace,
                        PLURAL,
                        {
                            "apiVersion": f"{GROUP}/{VERSION}",
                            "kind": "ModelDeployment",
                            "metadata": {"name": n},
                            "spec": body,
                        },
                    ),
                    names,
                )
            )

        def ports() -> dict[str, int]:
            listed = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
            return {
                m["metadata"]["name"]: m["status"]["activator"]["port"]
                for m in listed["items"]
                if (m.get("status") or {}).get("activator", {}).get("routing") == "Activator"
            }

        if not wait_until(lambda: len(ports()) == len(names), 120, interval=0.5):
            sys.exit(f"only {len(ports())} of {len(names)} models routed to the activator")
        port_of = ports()
        time.sleep(2)  # the activators open their listeners from the same status

        async def run() -> tuple[
            list[float], list[tuple[float, int]], float, list[float], list[float]
        ]:
            async with aiohttp.ClientSession() as http:
                sequential = []
                for name in names[: args.sequential]:
                    decided, status = await wake(http, port_of[name], kubelet, name)
                    assert status == 200, status
                    sequential.append(decided)
                t0 = time.monotonic()
                burst = await asyncio.gather(
                    *(wake(http, port_of[n], kubelet, n) for n in names[args.sequential :])
                )
                burst_all = time.monotonic() - t0
                # Warm now: through the activator (a Ready replica, no hold) vs the meter.
                warm = names[0]
                held_path = f"http://{ACTIVATOR_IPS[0]}:{port_of[warm]}/predict"
                direct = f"{meter.url}/predict"
                await latency(http, direct, 50)  # warm both paths' connections
                await latency(http, held_path, 50)
                via_meter = await latency(http, direct, args.requests)
                via_activator = await latency(http, held_path, args.requests)
                return sequential, burst, burst_all, via_meter, via_activator

        sequential, burst, burst_all, via_meter, via_activator = asyncio.run(run())

        def sliced(name: str) -> bool:
            try:
                custom.get_namespaced_custom_object(
                    "discovery.k8s.io", "v1beta1", namespace, "endpointslices", f"{name}-activator"
                )
            except client.ApiException as exc:
                return exc.status != 404
            return True

        left = wait_until(lambda: not any(sliced(n) for n in names[:5]), 20, interval=0.5)
        activator_rss = max(p.rss_peak_kib() for p in processes if isinstance(p, ActivatorProcess))
        operator_rss = operator.rss_peak_kib()
    finally:
        for process in reversed(processes):
            process.stop()
        for pod in core.list_namespaced_pod(controlplane.OPERATOR_NAMESPACE).items:
            if pod.metadata.name.startswith("bench-activator-"):
                core.delete_namespaced_pod(pod.metadata.name, controlplane.OPERATOR_NAMESPACE)
        if started:
            controlplane.down()

    ms = 1000
    served = sum(1 for _, status in burst if status == 200)
    decided = [d for d, _ in burst]
    print("\nactivator benchmark (local control plane, 2 cores; scaler tick 10 s)")
    print(
        f"  first request -> scale decision, {len(sequential)} models one at a time: "
        f"p50 {statistics.median(sequential) * ms:.0f} ms, p99 "
        f"{percentile(sequential, 99) * ms:.0f} ms (the scaler's tick alone: up to 10,000 ms)"
    )
    print(
        f"  {len(burst)} models woken at once: {served}/{len(burst)} served, decision p50 "
        f"{statistics.median(decided) * ms:.0f} ms, p99 {percentile(decided, 99) * ms:.0f} ms "
        f"(target p99 <= 2000 ms), all answered in {burst_all:.1f} s "
        f"(cold start {args.cold_start:.1f} s)"
    )
    meter_p50, act_p50 = statistics.median(via_meter), statistics.median(via_activator)
    print(
        f"  warm model, {args.requests} requests: direct through the meter p50 "
        f"{meter_p50 * ms:.2f} ms p99 {percentile(via_meter, 99) * ms:.2f} ms; through the "
        f"activator p50 {act_p50 * ms:.2f} ms p99 {percentile(via_activator, 99) * ms:.2f} ms "
        f"(+{(act_p50 - meter_p50) * ms:.2f} ms; paid only while a model has no Ready replica)"
    )
    print(f"  activator slice removed once replicas served: {'yes' if left else 'NO'}")
    print(
        f"  peak RSS: activator {activator_rss / 1024:.0f} MiB ({len(names)} models routed, "
        f"their pods watched), operator {operator_rss / 1024:.0f} MiB"
    )


if __name__ == "__main__":
    main()
