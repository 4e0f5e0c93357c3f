"""The leader SIGKILLed 20 times at random while ModelDeployments are created, edited and
deleted: a standby takes over each time, and every survivor converges (its Deployment
matches its spec, observedGeneration = generation), nothing is made twice, and no Event is
posted twice. Leases of 3 s here (15 s in production) keep the run short."""

import random
import statistics
import time

from kubernetes import client

from modelpilot.devcluster.servers import OperatorProcess
from tests.integration.operator_helpers import Models, equal, eventually, model_spec

from .conftest import StartOperator, figures

KILLS = 20
LEASE = 3


def _leader(operators: list[OperatorProcess]) -> OperatorProcess | None:
    alive = [p for p in operators if p.proc.poll() is None]
    leading = [p for p in alive if p.health().get("leader")]
    assert len(leading) <= 1, "two leaders at once"
    return leading[0] if leading else None


def test_leader_killed_twenty_times_while_models_change(
    admin_api: client.ApiClient, namespace: str, start_operator: StartOperator
) -> None:
    rng = random.Random(18)
    operators = [start_operator(lease_duration=LEASE) for _ in range(2)]
    models = Models(admin_api, namespace)
    live: dict[str, int] = {}  # model -> the meter.maxConcurrency it should end with
    failovers: list[float] = []
    n = 0
    for _ in range(KILLS):
        eventually(lambda: equal(_leader(operators) is not None, True), timeout=LEASE * 4)
        # Churn for a random while: create, edit and delete models.
        until = time.monotonic() + rng.uniform(0.5, 3.0)
        while time.monotonic() < until:
            time.sleep(0.05)  # a busy team, not a load test: about 20 changes a second
            action = rng.choice(["create", "create", "edit", "edit", "delete"])
            if action == "create" or not live:
                n += 1
                models.create(f"m{n}", model_spec(meter={"maxConcurrency": 1}))
                live[f"m{n}"] = 1
            elif action == "edit":
                name = rng.choice(sorted(live))
                live[name] += 1
                models.patch_spec(name, {"meter": {"maxConcurrency": live[name]}})
            else:
                name = rng.choice(sorted(live))
                models.custom.delete_namespaced_custom_object(
                    "modelpilot.dev", "v1alpha1", namespace, "modeldeployments", name
                )
                del live[name]
        leader = _leader(operators)
        assert leader is not None
        leader.kill()
        killed = time.monotonic()
        operators.append(start_operator(lease_duration=LEASE))  # Kubernetes restarts the pod
        eventually(lambda: equal(_leader(operators) is not None, True), timeout=LEASE * 4)
        failovers.append(time.monotonic() - killed)

    apps = client.AppsV1Api(admin_api)

    def converged() -> None:
        for name, concurrency in live.items():
            body = models.get(name)
            assert (
                body.get("status", {}).get("observedGeneration") == body["metadata"]["generation"]
            ), name
            deployment = apps.read_namespaced_deployment(name, namespace)
            owner = deployment.metadata.owner_references[0]
            assert owner.uid == body["metadata"]["uid"], name
            meter = next(c for c in deployment.spec.template.spec.containers if "meter" in c.name)
            assert f"--max-concurrency={concurrency}" in meter.args, name

    eventually(converged, timeout=60)
    events = client.CoreV1Api(admin_api).list_namespaced_event(namespace).items
    posted = [(e.involved_object.name, e.reason, e.message) for e in events]
    doubled = {p for p in posted if posted.count(p) > 1}
    assert not doubled, sorted(doubled)[:5]
    figures(
        f"leader SIGKILLed {KILLS}x during churn (lease {LEASE}s)",
        models_created=n,
        survivors_converged=len(live),
        failover_p50=f"{statistics.median(failovers):.1f}s",
        failover_max=f"{max(failovers):.1f}s",
        doubled_events=0,
    )
