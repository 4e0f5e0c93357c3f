"""The demo's scale-to-zero part: a second sample model that idles at 0 replicas, then a
burst through its Service wakes it (kube-proxy sends it to the activator pods, which hold
the requests until the model answers)."""

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from kubernetes import client

from modelpilot.api import ACTIVATOR_APP, GROUP, PLURAL, VERSION
from modelpilot.demo.traffic import CHAT
from modelpilot.devcluster.controlplane import OPERATOR_NAMESPACE, REPO_ROOT
from modelpilot.devcluster.processes import wait_until
from modelpilot.devcluster.servers import scrape, value
from modelpilot.times import clock

MANIFEST = REPO_ROOT / "examples" / "sample-model" / "sample-chat-zero.yaml"
BURST = 12
ACTIVATOR_METRICS_PORT = 9090  # manifests/activator/activator.yaml


class ZeroModel:
    def __init__(self, api: client.ApiClient, namespace: str, say: Callable[[str], None]) -> None:
        self.custom, self.apps = client.CustomObjectsApi(api), client.AppsV1Api(api)
        self.core = client.CoreV1Api(api)
        self.namespace, self.name, self.say = namespace, "sample-chat-zero", say

    def status(self) -> dict[str, Any]:
        body = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, self.name
        )
        return dict(body.get("status") or {})

    def replicas(self) -> int:
        return int(self.apps.read_namespaced_deployment(self.name, self.namespace).spec.replicas)

    def held(self) -> float:
        """Requests the activator pods hold now (their /metrics)."""
        pods = self.core.list_namespaced_pod(
            OPERATOR_NAMESPACE, label_selector=f"app.kubernetes.io/name={ACTIVATOR_APP}"
        ).items
        return sum(
            value(
                scrape(f"http://{pod.status.pod_ip}:{ACTIVATOR_METRICS_PORT}/metrics"),
                "modelpilot_activator_requests_held",
            )
            for pod in pods
            if pod.status.pod_ip
        )

    async def wake(self) -> bool:
        """A burst at the model while it has no replica: True when every request got 200."""
        status = await asyncio.to_thread(self.status)
        activator_status = status.get("activator") or {}
        conditions: list[dict[str, Any]] = status.get("conditions") or []
        ready = next((c for c in conditions if c.get("type") == "Ready"), {})
        if activator_status.get("routing") != "Activator":
            self.say(f"{self.name} is not routed through the activator: {activator_status}")
            return False
        port = activator_status["port"]
        service = await asyncio.to_thread(
            self.core.read_namespaced_service, self.name, self.namespace
        )
        url = f"http://{service.spec.cluster_ip}:{service.spec.ports[0].port}"
        self.say(
            f"\n== Scale to zero: {self.name} (minReplicas 0) has {status['replicas']['desired']} "
            f"replicas; Ready={ready.get('status')} ({ready.get('reason')}); its Service sends "
            f"traffic to the activator, port {port} =="
        )
        self.say(f"sending a burst of {BURST} chat requests through its Service...")
        started = time.monotonic()
        decided: float | None = None
        asked = 0
        async with aiohttp.ClientSession() as http:

            async def ask() -> tuple[int, float]:
                async with http.post(
                    f"{url}/v1/chat/completions",
                    data=CHAT,
                    headers={"Content-Type": "application/json"},
                ) as response:
                    await response.read()
                    return response.status, time.monotonic() - started

            burst = asyncio.gather(*(ask() for _ in range(BURST)))
            next_line = 0.0
            while not burst.done():
                now = time.monotonic() - started
                count = await asyncio.to_thread(self.replicas)
                if count > asked:
                    decided = now if decided is None else decided
                    self.say(
                        f"[+{now:.2f}s] the scaler asks for {count} replica"
                        f"{'s' if count > 1 else ''} ({asked} -> {count}; Event "
                        f"{'ScaledFromZero' if asked == 0 else 'ScaledUp'}): held requests count"
                    )
                    asked = count
                if now >= next_line:
                    held = await asyncio.to_thread(self.held)
                    replicas = (await asyncio.to_thread(self.status)).get("replicas") or {}
                    self.say(
                        f"[+{now:.0f}s] held at the activator: {held:.0f}; replicas starting "
                        f"{replicas.get('starting', 0)}, active {replicas.get('active', 0)}"
                    )
                    next_line = now + 2
                await asyncio.sleep(0.05)
            answers = burst.result()
        served = sum(1 for code, _ in answers if code == 200)
        slowest = max(t for _, t in answers)
        cold = ((await asyncio.to_thread(self.status)).get("coldStart") or {}).get("lastSeconds")
        self.say(
            f"{served}/{BURST} answered 200, the last after {slowest:.1f}s: the cold start "
            f"(measured {cold if cold is not None else '?'} s, in status.coldStart)"
        )
        self.say("idle again: back to 0 once no demand held for scaleDownDelaySeconds (10 s)...")
        gone = await asyncio.to_thread(wait_until, lambda: self.replicas() == 0, 90, 0.5)
        if gone:
            self.say(f"[{clock(time.monotonic() - started)}] scaled 1 -> 0: no replica, no GPU")
        return served == BURST and decided is not None and gone
