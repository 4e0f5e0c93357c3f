"""Scale to zero: a model at 0 replicas, the operator's activator EndpointSlice, and the
real activator processes holding requests until a replica is Ready.

The tests play two parts a cluster would: kube-proxy (a request to the Service goes to an
address and port of one of its EndpointSlices: here the activator's, read from the API) and
the kubelet (a pod created when the scaler asks for one, Ready once its server answers).
"""

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from kubernetes import client

from modelpilot.devcluster import controlplane
from modelpilot.devcluster.kubelet import FakeKubelet
from modelpilot.devcluster.ports import pick_port
from modelpilot.devcluster.servers import ActivatorProcess, OperatorProcess
from modelpilot.meter.proxy import HELD_HEADER

from .conftest import ACTIVATOR_IPS, DEDICATED_SHARD, SHARD_LABEL, Exporter, until
from .operator_helpers import Models, equal, eventually, model_spec, pod_labels, replicas

pytestmark = pytest.mark.usefixtures("operator", "activators")

ModelServer = Callable[[], Awaitable[int]]


@pytest.fixture
async def model_server() -> AsyncIterator[ModelServer]:
    """A model replica's serving port on 127.0.0.1 (the fake pods' IP): JSON answers that
    say how long the activator held the request; a short event stream for SSE clients."""
    runners: list[web.AppRunner] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        held = request.headers.get(HELD_HEADER)
        if "text/event-stream" in request.headers.get("Accept", ""):
            stream = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await stream.prepare(request)
            for token in ("Hello", "world"):
                await stream.write(f"data: {token}\n\n".encode())
            await stream.write_eof()
            return stream
        return web.json_response({"path": request.path, "held": held})

    async def start() -> int:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", answer)
        runner = web.AppRunner(app)
        await runner.setup()
        port = pick_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
        return port

    yield start
    for runner in runners:
        await runner.cleanup()


def zero_spec(meter_port: int, **autoscaling: Any) -> dict[str, Any]:
    return model_spec(
        meter={"port": meter_port},
        autoscaling={
            "minReplicas": 0,
            "maxReplicas": 2,
            "targetUtilizationPercentage": 100,  # a replica per held request
            "autoscalingWindowSeconds": 10,
            "scaleDownDelaySeconds": 3,
            **autoscaling,
        },
    )


def activator_slice(admin_api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    """The model's activator EndpointSlice (discovery.k8s.io/v1beta1 on the 1.20 control
    plane), as kube-proxy would read it; {} when there is none."""
    try:
        found: dict[str, Any] = client.CustomObjectsApi(admin_api).get_namespaced_custom_object(
            "discovery.k8s.io", "v1beta1", namespace, "endpointslices", f"{name}-activator"
        )
    except client.ApiException as exc:
        if exc.status == 404:
            return {}
        raise
    return found


async def at_zero(admin_api: client.ApiClient, models: Models, name: str) -> int:
    """Wait until the model routes through the activator; its activator port."""

    def routed() -> bool:
        activator = models.status(name).get("activator") or {}
        return activator.get("routing") == "Activator"

    assert await until(routed, 20), models.status(name)
    port: int = models.status(name)["activator"]["port"]
    found = activator_slice(admin_api, models.namespace, name)
    assert found["ports"] == [{"name": "http", "port": port, "protocol": "TCP"}]
    assert sorted(a for e in found["endpoints"] for a in e["addresses"]) == list(ACTIVATOR_IPS)
    assert replicas(admin_api, models.namespace, name) == 0
    return port


def scaling(models: Models, name: str) -> str | None:
    """The ScalingActive condition's reason (None before the scaler's first word)."""
    found = [c for c in models.status(name).get("conditions", []) if c["type"] == "ScalingActive"]
    return found[0]["reason"] if found else None


async def start_replica(kubelet: FakeKubelet, namespace: str, name: str) -> None:
    """The kubelet's part: the pod, then Ready (its server is already listening)."""
    await asyncio.to_thread(kubelet.create_pod, namespace, name, pod_labels(name.rsplit("-", 1)[0]))
    await asyncio.to_thread(kubelet.set_status, namespace, name, "True")


async def test_one_request_wakes_a_model_at_zero_and_it_goes_back_to_zero(
    admin_api: client.ApiClient,
    namespace: str,
    kubelet: FakeKubelet,
    exporter: Exporter,
    model_server: ModelServer,
    http: aiohttp.ClientSession,
) -> None:
    models = Models(admin_api, namespace)
    models.create("chat", zero_spec(await model_server()))
    port = await at_zero(admin_api, models, "chat")
    assert await until(lambda: scaling(models, "chat") == "ScaledToZero", 5)
    # Ready: a request now is served (after a cold start), not refused.
    ready = models.condition("chat", "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "ScaledToZero"), ready

    sent = time.monotonic()
    request = asyncio.create_task(http.get(f"http://{ACTIVATOR_IPS[0]}:{port}/v1/models"))
    assert await until(lambda: replicas(admin_api, namespace, "chat") == 1, 5)
    decided = time.monotonic() - sent
    cold_start = 1.0  # the model "loads" this long before its pod is Ready
    await asyncio.sleep(cold_start)
    await start_replica(kubelet, namespace, "chat-0")
    response = await request
    took = time.monotonic() - sent
    assert response.status == 200, await response.text()
    answer = await response.json()
    print(f"scale decision {decided:.2f}s after the request; answered after {took:.2f}s")
    assert decided <= 1.0
    assert answer["path"] == "/v1/models"
    assert float(answer["held"]) >= cold_start  # the meter is told how long it waited
    events = client.CoreV1Api(admin_api).list_namespaced_event(
        namespace, field_selector="involvedObject.name=chat"
    )
    assert "ScaledFromZero" in {e.reason for e in events.items}

    # Served: the activator steps off the data path.
    assert await until(lambda: models.status("chat")["activator"]["routing"] == "Pods", 10)
    assert activator_slice(admin_api, namespace, "chat") == {}

    # Idle (the meter's series reads 0 in flight): back to zero after the delay.
    exporter(namespace, "chat")
    assert await until(lambda: replicas(admin_api, namespace, "chat") == 0, 40)
    # The activator is back on the path before the last replica goes (it still serves):
    # its EndpointSlice is written before the scale. Status says so with the next write
    # (batched with the model's others, so it may land just after the scale).
    assert activator_slice(admin_api, namespace, "chat") != {}
    assert await until(lambda: models.status("chat")["activator"]["routing"] == "Activator", 5)
    await asyncio.to_thread(kubelet.core.delete_namespaced_pod, "chat-0", namespace)
    assert await at_zero(admin_api, models, "chat") == port
    # The pod observer's summary is its own batched status write: it may land just after.
    assert await until(lambda: models.status("chat")["replicas"]["desired"] == 0, 5)


async def test_a_burst_during_a_cold_start_is_all_served_and_overflow_is_refused(
    admin_api: client.ApiClient,
    namespace: str,
    kubelet: FakeKubelet,
    model_server: ModelServer,
    http: aiohttp.ClientSession,
) -> None:
    models = Models(admin_api, namespace)
    models.create("burst", zero_spec(await model_server(), activationQueueSize=50))
    port = await at_zero(admin_api, models, "burst")
    url = f"http://{ACTIVATOR_IPS[0]}:{port}/v1/completions"

    async def post() -> tuple[int, str, str]:
        async with http.post(url, json={"prompt": "hi"}) as response:
            return response.status, response.headers.get("Retry-After", ""), await response.text()

    burst = [asyncio.create_task(post()) for _ in range(50)]
    assert await until(lambda: replicas(admin_api, namespace, "burst") >= 1, 5)
    # The activator's next stamp says 50 are waiting: as many replicas as allowed at once.
    assert await until(lambda: replicas(admin_api, namespace, "burst") == 2, 5)
    status, retry_after, text = await post()  # the 51st: over the queue
    assert (status, retry_after) == (503, "5"), text
    assert "50 requests are already waiting" in text
    await start_replica(kubelet, namespace, "burst-0")
    answers = await asyncio.gather(*burst)
    assert [a[0] for a in answers] == [200] * 50


async def test_streaming_clients_get_keep_alives_while_held_and_a_model_that_never_starts_times_out(
    admin_api: client.ApiClient,
    namespace: str,
    kubelet: FakeKubelet,
    model_server: ModelServer,
    http: aiohttp.ClientSession,
) -> None:
    models = Models(admin_api, namespace)
    models.create("stream", zero_spec(await model_server()))
    port = await at_zero(admin_api, models, "stream")
    url = f"http://{ACTIVATOR_IPS[1]}:{port}/v1/chat/completions"
    async with http.post(url, headers={"Accept": "text/event-stream"}, json={}) as response:
        assert response.status == 200
        first = await response.content.readuntil(b"\n\n")
        second = await response.content.readuntil(b"\n\n")
        assert first.startswith(b": ") and second.startswith(b": ")  # comments: ignored by SSE
        await start_replica(kubelet, namespace, "stream-0")
        rest = (await response.content.read()).decode()
    assert "data: Hello\n\ndata: world\n\n" in rest

    models.create("never", zero_spec(await model_server(), activationTimeoutSeconds=1))
    port = await at_zero(admin_api, models, "never")
    async with http.get(f"http://{ACTIVATOR_IPS[0]}:{port}/") as response:
        assert response.status == 503
        assert response.headers["Retry-After"] == "30"
        assert "no replica of this model became ready within 1s" in await response.text()


async def test_an_activator_killed_during_a_hold_fails_its_clients_at_once_and_the_other_serves(
    admin_api: client.ApiClient,
    namespace: str,
    kubelet: FakeKubelet,
    cluster: controlplane.ClusterState,
    model_server: ModelServer,
    http: aiohttp.ClientSession,
    tmp_path: Any,
) -> None:
    models = Models(admin_api, namespace)
    models.create("failover", zero_spec(await model_server()))
    port = await at_zero(admin_api, models, "failover")
    doomed = await asyncio.to_thread(
        ActivatorProcess, tmp_path / "doomed.log", cluster.activator_kubeconfig, "127.0.0.4"
    )
    try:
        assert await asyncio.to_thread(_listening, "127.0.0.4", port)
        held = asyncio.create_task(http.get(f"http://127.0.0.4:{port}/held"))
        assert await until(lambda: replicas(admin_api, namespace, "failover") == 1, 5)
        await asyncio.to_thread(doomed.kill)
        killed = time.monotonic()
        with pytest.raises(aiohttp.ClientError):
            await held
        assert time.monotonic() - killed < 1.0  # an error at once, not a hang
    finally:
        doomed.stop()
    # Stopped cleanly (SIGTERM: a rollout or a drain), it answers what it holds at once with
    # 503 + Retry-After, so clients retry through the other replica.
    stopping = await asyncio.to_thread(
        ActivatorProcess, tmp_path / "stopping.log", cluster.activator_kubeconfig, "127.0.0.4"
    )
    assert await asyncio.to_thread(_listening, "127.0.0.4", port)
    held = asyncio.create_task(http.get(f"http://127.0.0.4:{port}/held"))
    await asyncio.sleep(0.3)
    stopped = time.monotonic()
    await asyncio.to_thread(stopping.stop)
    response = await held
    assert (response.status, response.headers["Retry-After"]) == (503, "1")
    assert time.monotonic() - stopped < 3.0
    assert "shutting down" in await response.text()
    survivor = asyncio.create_task(http.get(f"http://{ACTIVATOR_IPS[0]}:{port}/again"))
    await asyncio.sleep(0.2)
    await start_replica(kubelet, namespace, "failover-0")
    response = await survivor
    assert response.status == 200 and (await response.json())["path"] == "/again"


def _listening(host: str, port: int, seconds: float = 10) -> bool:
    import socket

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex((host, port)) == 0:
                return True
        time.sleep(0.05)
    return False


def test_without_the_activator_min_zero_is_held_at_one_and_status_says_why(
    admin_api: client.ApiClient,
    namespace: str,
    cluster: controlplane.ClusterState,
    kubeconfigs: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    """An operator run without --activator-namespace: nothing could hold the requests of a
    model at zero, so it keeps one replica and says what to install."""
    models = Models(admin_api, namespace)
    models.create("alone", zero_spec(8099), labels={SHARD_LABEL: DEDICATED_SHARD})
    operator = OperatorProcess(
        tmp_path / "operator.log",
        kubeconfigs[1],
        namespace=namespace,
        selector=f"{SHARD_LABEL}={DEDICATED_SHARD}",
        prometheus_url=cluster.prometheus_url,
        scaler_interval=1,
        resync_seconds=1,
    )
    try:
        eventually(lambda: equal(replicas(admin_api, namespace, "alone"), 1))
        condition = eventually(lambda: models.condition("alone", "ScaleToZero"))
        assert (condition["status"], condition["reason"]) == ("False", "ActivatorNotInstalled")
        assert "install manifests/activator" in condition["message"]
        eventually(
            lambda: equal(models.status("alone")["autoscaling"]["effective"]["minReplicas"], 1)
        )
        assert "activator" not in models.status("alone")
        assert activator_slice(admin_api, namespace, "alone") == {}
        # Scaling to zero by hand is put back to the minimum that can be honoured.
        client.AppsV1Api(admin_api).patch_namespaced_deployment_scale(
            "alone", namespace, {"spec": {"replicas": 0}}
        )
        eventually(lambda: equal(replicas(admin_api, namespace, "alone"), 1))
    finally:
        operator.stop()
    assert "Traceback" not in operator.log_text()
