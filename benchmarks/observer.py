"""Observer benchmark: 1,000 ModelDeployments x 10 pods on the local control plane.

Prints
- the time from the operator's start to every model's first status (pods counted and the
  scaler's first word);
- p50/p99 time from a pod status change (the kubelet's patch returning) to the
  ModelDeployment status showing it, next to the baseline: the time the same change takes
  to reach any watcher of the pod itself (the floor the operator cannot beat); target p99
  <= 1 s;
- status writes per minute while nothing changes (target 0);
- the operator's peak RSS (target <= 250 MiB).

Run: .venv/bin/python benchmarks/observer.py [--models 1000] [--pods 10] [--changes 400]

`--real-node` measures instead, on a real node (benchmarks/observer_node.py): kubelet
reports a pod Ready -> status.replicas.active, p50/p99 over 50 transitions.
"""

import argparse
import secrets
import statistics
import sys
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch

from modelpilot.advisor.rules import percentile
from modelpilot.api import GROUP, MODEL_LABEL, PLURAL, VERSION
from modelpilot.devcluster import controlplane
from modelpilot.devcluster.install import install
from modelpilot.devcluster.kubelet import FakeKubelet
from modelpilot.devcluster.processes import wait_until
from modelpilot.devcluster.servers import OperatorProcess

REPO = Path(__file__).resolve().parents[1]


class Watcher(threading.Thread):
    """Records when each object was last seen in a given state, from a watch stream."""

    def __init__(self, list_fn: Any, *args: Any, key: Any) -> None:
        super().__init__(daemon=True)
        self.list_fn, self.args, self.key = list_fn, args, key
        self.seen: dict[tuple[str, Any], float] = {}
        self.modified = 0
        self.lock = threading.Lock()
        self.stopped = False
        self.broke: float | None = None  # when the watch broke off (its counts stop there)
        self.version = ""

    def start(self) -> None:
        # From the collection's current version: no replay of 10,000 pods as ADDED events
        # first (that took seconds, and changes made meanwhile looked seconds late).
        listed = self.list_fn(*self.args, limit=1)
        if isinstance(listed, dict):  # custom objects come as plain dicts
            self.version = listed["metadata"]["resourceVersion"]
        else:
            self.version = listed.metadata.resource_version
        super().start()

    def run(self) -> None:
        try:
            self._watch()
        except Exception:
            self.broke = time.monotonic()
            if not self.stopped:
                raise

    def _watch(self) -> None:
        stream = watch.Watch()
        for event in stream.stream(
            self.list_fn, *self.args, resource_version=self.version, timeout_seconds=3600
        ):
            now = time.monotonic()
            obj = event["object"]
            obj = (
                obj if isinstance(obj, dict) else client.ApiClient().sanitize_for_serialization(obj)
            )
            with self.lock:
                if event["type"] == "MODIFIED":
                    self.modified += 1
                state = self.key(obj)
                self.seen.setdefault((obj["metadata"]["name"], state), now)
            if self.stopped:
                break

    def first_seen(self, name: str, state: Any) -> float | None:
        with self.lock:
            return self.seen.get((name, state))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--pods", type=int, default=10)
    parser.add_argument("--changes", type=int, default=400, help="pod status changes to time")
    parser.add_argument("--rate", type=float, default=20.0, help="changes per second")
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--real-node", action="store_true", help="see observer_node.py")
    parser.add_argument("--transitions", type=int, default=50, help="with --real-node")
    args = parser.parse_args()
    if args.real_node:
        sys.path.insert(0, str(Path(__file__).parent))
        from observer_node import run

        run(models=5 if args.models == 1000 else args.models, transitions=args.transitions)
        return

    existing = controlplane.load_state()
    started = not (existing and controlplane.is_healthy(existing))
    state = controlplane.up()
    admin = config.new_client_from_config(config_file=str(state.kubeconfig))
    admin.configuration.connection_pool_maxsize = 16
    install(state.kubeconfig, REPO / "manifests")
    core, custom = client.CoreV1Api(admin), client.CustomObjectsApi(admin)
    namespace = f"bench-observer-{secrets.token_hex(3)}"
    core.create_namespace({"metadata": {"name": namespace}})
    kubelet = FakeKubelet(admin)
    names = [f"model-{i:03d}" for i in range(args.models)]
    pool = ThreadPoolExecutor(8)

    def create_model(name: str) -> None:
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "ModelDeployment",
                "metadata": {"name": name},
                "spec": {
                    "port": 8000,
                    "autoscaling": {"minReplicas": args.pods, "maxReplicas": args.pods},
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "name": "model",
                                    "image": "example.invalid/m:1",
                                    "ports": [{"containerPort": 8000}],
                                }
                            ]
                        }
                    },
                },
            },
        )
        for p in range(args.pods):
            pod = f"{name}-{p}"
            kubelet.create_pod(namespace, pod, labels={MODEL_LABEL: name})
            kubelet.set_status(namespace, pod, ready="False")

    t0 = time.monotonic()
    list(pool.map(create_model, names))
    print(
        f"created {args.models} ModelDeployments and {args.models * args.pods} pods "
        f"in {time.monotonic() - t0:.1f}s"
    )

    log_path = state.state_dir / "logs" / "operator-bench.log"
    started_at = time.monotonic()
    operator = OperatorProcess(log_path, state.operator_kubeconfig, namespace=namespace)
    try:

        def all_counted() -> bool:
            items = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]
            # Also the scaler's first word on each model (ScalingActive), so that the idle
            # window below measures steady state, not the operator's first pass.
            return sum(
                i.get("status", {}).get("replicas", {}).get("starting", 0) for i in items
            ) == args.models * args.pods and all(
                any(c["type"] == "ScalingActive" for c in i.get("status", {}).get("conditions", []))
                for i in items
            )

        if not wait_until(all_counted, 600, interval=1):
            sys.exit(f"operator did not catch up; see {log_path}")
        first_status = time.monotonic() - started_at
        print(f"operator reflected all pods in {first_status:.1f}s after start")

        models_watch = Watcher(
            custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            key=lambda o: o.get("status", {}).get("replicas", {}).get("active"),
        )
        pods_watch = Watcher(
            core.list_namespaced_pod,
            namespace,
            key=lambda o: next(
                (c["status"] for c in o["status"].get("conditions") or [] if c["type"] == "Ready"),
                None,
            ),
        )
        models_watch.start()
        pods_watch.start()
        time.sleep(2)

        # Flip one pod of a model to Ready, then later another: each change moves `active`.
        active: dict[str, int] = defaultdict(int)
        samples: list[tuple[str, str, int, float]] = []
        interval = 1.0 / args.rate
        for i in range(args.changes):
            model = names[i % args.models]
            pod = f"{model}-{active[model] % args.pods}"
            ready = "True" if active[model] < args.pods else "False"
            kubelet.set_status(namespace, pod, ready=ready)
            active[model] += 1
            samples.append((model, pod, active[model], time.monotonic()))
            time.sleep(interval)

        def reflected() -> bool:
            return all(models_watch.first_seen(m, n) for m, _, n, _ in samples)

        if not wait_until(reflected, 30, interval=0.2):
            model, _, count, _ = next(s for s in samples if not models_watch.first_seen(s[0], s[2]))
            body = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, model)
            replicas = body.get("status", {}).get("replicas")
            sys.exit(
                f"{model}: active {count} never seen in 30 s (watch events: "
                f"{models_watch.modified}); its status now: {replicas}"
            )
        latencies, floors, missing = [], [], 0
        for model, pod, count, at in samples:
            seen = models_watch.first_seen(model, count)
            pod_seen = pods_watch.first_seen(pod, "True")
            if seen is None:
                missing += 1
                continue
            latencies.append(seen - at)
            if pod_seen is not None:
                floors.append(max(pod_seen - at, 0.0))

        # Idle: nothing changes; count every write to the ModelDeployments.
        time.sleep(3)
        before = models_watch.modified
        time.sleep(args.idle_seconds)
        idle_writes = models_watch.modified - before
        if models_watch.broke is not None:
            sys.exit("the ModelDeployment watch broke off before the idle window ended")
        models_watch.stopped = pods_watch.stopped = True

        peak_kib = operator.rss_peak_kib()
    finally:
        operator.stop()
        core.delete_namespace(namespace)  # a cluster left running must not keep 10,000 pods
        if started:
            controlplane.down()

    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    b50, b99 = percentile(floors, 50), percentile(floors, 99)
    print(
        f"\nobserver benchmark: {args.models} ModelDeployments x {args.pods} pods, "
        f"{len(samples)} pod status changes at {args.rate:.0f}/s"
    )
    missed = f"; {missing} changes never reflected" if missing else ""
    print(
        f"  pod change -> ModelDeployment status: p50 {p50 * 1000:.0f} ms, "
        f"p99 {p99 * 1000:.0f} ms (target p99 <= 1000 ms){missed}"
    )
    print(
        f"  baseline, pod change -> pod watch:     p50 {b50 * 1000:.0f} ms, p99 {b99 * 1000:.0f} ms"
    )
    print(f"  ratio to baseline: p50 x{p50 / max(b50, 1e-3):.1f}, p99 x{p99 / max(b99, 1e-3):.1f}")
    print(
        f"  status writes while idle: {idle_writes / args.idle_seconds * 60:.1f} per minute "
        f"(target 0; {idle_writes} in {args.idle_seconds:.0f}s)"
    )
    print(f"  operator peak RSS: {peak_kib / 1024:.0f} MiB (target <= 250 MiB)")
    print(f"  operator start -> every model's first status: {first_status:.1f} s")
    print(f"  mean latency {statistics.mean(latencies) * 1000:.0f} ms; operator log: {log_path}")


if __name__ == "__main__":
    main()
