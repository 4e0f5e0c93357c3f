"""Async requests on a real Redis shared by real meters in front of a real (fake) model
server, with a real webhook receiver that checks signatures: all on loopback."""

import asyncio
import json
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from kubernetes import client

from modelpilot.devcluster.install import install
from modelpilot.devcluster.redis import RedisServer
from modelpilot.devcluster.servers import FakeModelProcess, MeterProcess
from modelpilot.meter import webhooks
from tests.integration.conftest import REPO, Scraped, until
from tests.integration.operator_helpers import Models, equal, eventually, model_spec, replicas

SECRET = "whsec_" + "c2VjcmV0LWZvci10aGUtdGVzdHM="  # Standard Webhooks form
KEY = webhooks.secret_key(SECRET)


@pytest.fixture
def model(tmp_path: Path) -> Iterator[FakeModelProcess]:
    server = FakeModelProcess(tmp_path, base_ms=20, per_request_ms=0)
    yield server
    server.stop()


@pytest.fixture
def async_meter(
    start_meter: Callable[..., MeterProcess], model: FakeModelProcess
) -> Callable[..., MeterProcess]:
    """Meters of one model (a namespace of the test's own) on a broker."""
    namespace = f"t-{secrets.token_hex(4)}"

    def start(broker: str, **flags: object) -> MeterProcess:
        options: dict[str, object] = {
            "namespace": namespace,
            "async_broker": broker,
            "async_webhook_secret": SECRET,
            "async_visibility_timeout": 1,
            "async_webhook_backoff": 0.05,
            "max_concurrency": 1,
        }
        return start_meter(model.url, **(options | flags))

    return start


@dataclass
class Receiver:
    """A webhook endpoint that verifies signatures with `key` and fails the first
    `fail_first` attempts of each delivery."""

    key: bytes = KEY
    fail_first: int = 0
    url: str = ""
    attempts: Counter[str] = field(default_factory=Counter)
    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)
    duplicates: int = 0
    refused: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not webhooks.verify(self.key, request.headers, body):
            self.refused += 1
            return web.Response(status=401, text="bad signature\n")
        job_id = request.headers[webhooks.ID]
        self.attempts[job_id] += 1
        if self.attempts[job_id] <= self.fail_first:
            return web.Response(status=500)
        if job_id in self.accepted:
            self.duplicates += 1  # at least once: a receiver de-duplicates on the id
        self.accepted[job_id] = json.loads(body)
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[Callable[..., Receiver]]:
    runners: list[web.AppRunner] = []

    async def start(**options: Any) -> Receiver:
        hook = Receiver(**options)
        app = web.Application()
        app.router.add_post("/hook", hook.handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        hook.url = f"http://127.0.0.1:{port}/hook"
        runners.append(runner)
        return hook

    yield start  # type: ignore[misc]
    for runner in runners:
        await runner.cleanup()


CHAT = {"messages": [{"role": "user", "content": "Say hello in three words"}], "max_tokens": 3}


async def submit(
    http: aiohttp.ClientSession, meter: MeterProcess, path: str = "/predict", **headers: str
) -> dict[str, Any]:
    method = "GET" if path.startswith("/slow") else "POST"
    body = CHAT if path.startswith("/v1/") else {"input": "later"}
    async with http.request(
        method,
        meter.url + path,
        json=body if method == "POST" else None,
        headers={"Prefer": "respond-async", **headers},
    ) as resp:
        assert resp.status == 202, await resp.text()
        accepted: dict[str, Any] = await resp.json()
        return accepted


async def status(http: aiohttp.ClientSession, meter: MeterProcess, job_id: str) -> dict[str, Any]:
    async with http.get(f"{meter.url}/_modelpilot/async/{job_id}/status") as resp:
        assert resp.status == 200
        doc: dict[str, Any] = await resp.json()
        return doc


async def settled(
    http: aiohttp.ClientSession, meter: MeterProcess, job_id: str, seconds: float = 10
) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        doc = await status(http, meter, job_id)
        if doc["status"] not in ("QUEUED", "IN_PROGRESS") or time.monotonic() > deadline:
            return doc
        await asyncio.sleep(0.05)


async def test_a_request_on_one_meter_is_run_and_read_through_another(
    redis_server: RedisServer,
    async_meter: Callable[..., MeterProcess],
    http: aiohttp.ClientSession,
) -> None:
    first, second = async_meter(redis_server.url), async_meter(redis_server.url)
    accepted = await submit(http, first, "/v1/chat/completions")
    assert accepted["status"] == "QUEUED"
    doc = await settled(http, second, accepted["id"])
    assert doc["status"] == "SUCCEEDED" and doc["statusCode"] == 200
    async with http.get(second.url + accepted["statusUrl"]) as resp:
        assert resp.status == 200
        assert resp.headers["X-Modelpilot-Async-Status"] == "SUCCEEDED"
        assert (await resp.json())["object"] == "chat.completion"
    counted = sum(m.value("modelpilot_requests_total", is_async="true") for m in (first, second))
    assert counted == 1  # once, by the meter that ran it
    ran = next(m for m in (first, second) if m.value("modelpilot_requests_total"))
    assert ran.value("modelpilot_tokens_total", direction="output") == 3
    assert ran.value("modelpilot_time_in_async_queue_seconds_count") == 1
    # The queue is the model's: every meter reports the same length.
    assert (
        first.value("modelpilot_async_queue_size")
        == second.value("modelpilot_async_queue_size")
        == 0
    )
    async with http.get(f"{first.url}/_modelpilot/async/not-an-id") as resp:
        assert resp.status == 404


async def test_bad_options_get_a_clear_400(
    redis_server: RedisServer,
    async_meter: Callable[..., MeterProcess],
    http: aiohttp.ClientSession,
) -> None:
    meter = async_meter(redis_server.url, async_webhook_host="*.example.com")
    for headers, words in (
        ({"X-Modelpilot-Priority": "urgent"}, "must be one of high, normal, low"),
        ({"X-Modelpilot-Max-Queue-Seconds": "soon"}, "must be a number of seconds"),
        ({"X-Modelpilot-Max-Queue-Seconds": "99999"}, "must be a number of seconds"),
        ({"X-Modelpilot-Webhook": "ftp://x.example.com/"}, "http:// or https://"),
        ({"X-Modelpilot-Webhook": "http://10.0.0.1/"}, "is not allowed here"),
    ):
        async with http.post(
            f"{meter.url}/predict", json={}, headers={"Prefer": "respond-async", **headers}
        ) as resp:
            assert resp.status == 400
            assert words in await resp.text()


async def test_without_a_signing_secret_webhooks_are_refused(
    redis_server: RedisServer,
    start_meter: Callable[..., MeterProcess],
    model: FakeModelProcess,
    http: aiohttp.ClientSession,
) -> None:
    meter = start_meter(model.url, namespace="nosecret", async_broker=redis_server.url)
    async with http.post(
        f"{meter.url}/predict",
        json={},
        headers={"Prefer": "respond-async", "X-Modelpilot-Webhook": "http://127.0.0.1:1/"},
    ) as resp:
        assert resp.status == 400
        assert "webhookSecretRef" in await resp.text()


async def test_a_broker_that_does_not_answer_gets_503_and_an_unknown_queue(
    async_meter: Callable[..., MeterProcess], http: aiohttp.ClientSession
) -> None:
    meter = async_meter("redis://127.0.0.1:1/0")
    async with http.post(
        f"{meter.url}/predict", json={}, headers={"Prefer": "respond-async"}
    ) as resp:
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "1"
        assert "try again" in await resp.text()
    assert not [n for n, _ in meter.scrape() if n == "modelpilot_async_queue_size"]
    async with http.post(f"{meter.url}/predict", json={"input": "x"}) as resp:
        assert resp.status == 200  # synchronous traffic does not depend on the broker


async def test_higher_priority_runs_first(
    redis_server: RedisServer,
    async_meter: Callable[..., MeterProcess],
    http: aiohttp.ClientSession,
) -> None:
    meter = async_meter(redis_server.url)
    busy = await submit(http, meter, "/slow?seconds=0.5")  # holds the only slot
    assert await until(lambda: meter.value("modelpilot_concurrent_requests", state="active") == 1)
    order = ["low", "normal", "high", "low", "high", "normal"]
    ids = [(await submit(http, meter, **{"X-Modelpilot-Priority": p}))["id"] for p in order]
    docs = [await settled(http, meter, job_id) for job_id in [busy["id"], *ids]]
    assert all(d["status"] == "SUCCEEDED" for d in docs)
    started = sorted(zip((d["startedAt"] for d in docs[1:]), order, strict=True))
    assert [p for _, p in started] == ["high", "high", "normal", "normal", "low", "low"]


async def test_expired_requests_are_not_run_and_canceled_ones_neither(
    redis_server: RedisServer,
    async_meter: Callable[..., MeterProcess],
    model: FakeModelProcess,
    receiver: Callable[..., Any],
    http: aiohttp.ClientSession,
) -> None:
    hook = await receiver()
    meter = async_meter(redis_server.url)
    busy = await submit(http, meter, "/slow?seconds=0.6")
    assert await until(lambda: meter.value("modelpilot_concurrent_requests", state="active") == 1)
    # Counted by the model server once it has the request, a moment after the meter's slot
    # (CI once read 0 here, then 1 at the end).
    assert await until(lambda: model.stats()["requests"] == 1)
    before = 1
    expiring = await submit(
        http,
        meter,
        **{"X-Modelpilot-Max-Queue-Seconds": "0.2", "X-Modelpilot-Webhook": hook.url},
    )
    canceled = await submit(http, meter)
    assert meter.value("modelpilot_async_queue_size") == 2
    async with http.delete(f"{meter.url}/_modelpilot/async/{canceled['id']}") as resp:
        assert resp.status == 200
        assert (await resp.json())["status"] == "CANCELED"
    async with http.delete(f"{meter.url}/_modelpilot/async/{busy['id']}") as resp:
        assert resp.status == 409  # already running
        assert "only a QUEUED request can be canceled" in (await resp.json())["error"]
    assert meter.value("modelpilot_async_queue_size") == 1

    assert (await settled(http, meter, busy["id"]))["status"] == "SUCCEEDED"
    assert (await settled(http, meter, expiring["id"]))["status"] == "EXPIRED"
    for job in (expiring, canceled):
        async with http.get(meter.url + job["statusUrl"]) as resp:
            assert resp.status == 410
    assert model.stats()["requests"] == before  # neither reached the model server
    assert await until(lambda: expiring["id"] in hook.accepted)
    assert hook.accepted[expiring["id"]]["status"] == "EXPIRED"
    assert meter.value("modelpilot_async_queue_size") == 0


async def test_webhooks_are_retried_until_taken_and_a_bad_signature_is_refused(
    redis_server: RedisServer,
    async_meter: Callable[..., MeterProcess],
    receiver: Callable[..., Any],
    http: aiohttp.ClientSession,
) -> None:
    flaky = await receiver(fail_first=2)
    other_key = await receiver(key=b"not the meter's secret")
    meter = async_meter(redis_server.url, async_webhook_attempts=4)
    retried = await submit(http, meter, **{"X-Modelpilot-Webhook": flaky.url})
    refused = await submit(http, meter, **{"X-Modelpilot-Webhook": other_key.url})

    assert await until(lambda: retried["id"] in flaky.accepted)
    assert flaky.attempts[retried["id"]] == 3 and flaky.duplicates == 0
    delivery = flaky.accepted[retried["id"]]
    assert delivery["status"] == "SUCCEEDED" and delivery["statusCode"] == 200
    assert "echo:later" in delivery["body"]

    assert await until(lambda: other_key.refused == 4)
    assert not other_key.accepted
    assert await until(
        lambda: meter.value("modelpilot_async_webhook_deliveries_total", outcome="gave_up") == 1
    )
    assert meter.value("modelpilot_async_webhook_deliveries_total", outcome="delivered") == 1
    assert meter.value("modelpilot_async_webhook_deliveries_total", outcome="retried") == 2 + 3
    assert (await status(http, meter, refused["id"]))["webhook"] == "gave_up"
    assert (await status(http, meter, retried["id"]))["webhook"] == "delivered"


async def test_a_thousand_requests_survive_a_meter_kill_and_a_broker_restart(
    tmp_path: Path,
    async_meter: Callable[..., MeterProcess],
    model: FakeModelProcess,
    receiver: Callable[..., Any],
    http: aiohttp.ClientSession,
) -> None:
    broker = RedisServer(tmp_path)  # its own: this test kills it
    hook = await receiver()
    meters = [async_meter(broker.url, max_concurrency=8) for _ in range(3)]
    total, ids = 1000, []

    async def send(n: int) -> str:
        """Submit with an idempotency key, retrying through outages: once accepted, the
        same key gives the same id, so a retried submission is never a second request."""
        key = f"request-{n}"
        for attempt in range(200):
            meter = meters[(n + attempt) % len(meters)]
            try:
                async with http.post(
                    f"{meter.url}/predict",
                    json={"input": n},
                    headers={
                        "Prefer": "respond-async",
                        "Idempotency-Key": key,
                        "X-Modelpilot-Webhook": hook.url,
                    },
                ) as resp:
                    if resp.status == 202:
                        return str((await resp.json())["id"])
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise AssertionError(f"request {n} was never accepted")

    async def submit_all() -> None:
        for start in range(0, total, 50):
            ids.extend(await asyncio.gather(*(send(n) for n in range(start, start + 50))))

    submitting = asyncio.create_task(submit_all())
    assert await until(lambda: len(hook.accepted) >= 200, 60)
    meters[0].kill()  # mid-work: up to 8 requests held by it
    assert await until(lambda: len(hook.accepted) >= 450, 60)
    broker.kill()
    await asyncio.sleep(0.5)
    broker.start()  # the append-only file brings back every acknowledged write
    await submitting
    assert await until(lambda: len(hook.accepted) >= total, 120)

    states = Counter([(await status(http, meters[1], job_id))["status"] for job_id in ids])
    runs = model.stats()["requests"]
    print(
        f"\nsubmitted {len(ids)} (unique {len(set(ids))}), states {dict(states)}, "
        f"webhooks: {len(hook.accepted)} unique, {hook.duplicates} duplicates, "
        f"{hook.refused} refused; model server runs: {runs} ({runs - total} repeated)"
    )
    assert len(set(ids)) == total
    assert states == {"SUCCEEDED": total}
    assert set(hook.accepted) == set(ids)
    assert all(d["status"] == "SUCCEEDED" for d in hook.accepted.values())
    assert hook.refused == 0
    broker.stop()


@pytest.mark.usefixtures("operator")
async def test_a_backlog_adds_replicas_and_the_queue_drains(
    admin_api: client.ApiClient,
    namespace: str,
    redis_server: RedisServer,
    start_meter: Callable[..., MeterProcess],
    scraped: Scraped,
    tmp_path: Path,
    http: aiohttp.ClientSession,
) -> None:
    """The operator on the local control plane reads the backlog that a real meter reports
    from the real queue (through the cluster's Prometheus) as demand."""
    models = Models(admin_api, namespace)
    models.create(
        "chat",
        model_spec(
            autoscaling={
                "minReplicas": 1,
                "maxReplicas": 4,
                "concurrencyTarget": 1,
                "targetUtilizationPercentage": 100,
                "autoscalingWindowSeconds": 10,
                "scaleDownDelaySeconds": 5,
            }
        ),
    )
    eventually(lambda: equal(replicas(admin_api, namespace, "chat"), 1))
    model = FakeModelProcess(tmp_path)
    try:
        meter = start_meter(
            model.url, namespace=namespace, async_broker=redis_server.url, max_concurrency=1
        )
        scraped(f"127.0.0.1:{meter.metrics_port}", namespace, "chat")
        ids = [(await submit(http, meter, "/slow?seconds=0.4"))["id"] for _ in range(40)]
        assert meter.value("modelpilot_async_queue_size") >= 35  # one replica drains 2.5/s

        eventually(lambda: equal(replicas(admin_api, namespace, "chat"), 4), timeout=30)

        def explained() -> None:  # status is written just after the scale, not with it
            assert models.status("chat")["autoscaling"]["asyncBacklog"] > 0
            assert "async backlog" in models.condition("chat", "ScalingActive")["message"]

        eventually(explained, timeout=5)

        drained = [await settled(http, meter, job_id, seconds=40) for job_id in ids]
        assert {d["status"] for d in drained} == {"SUCCEEDED"}
        assert meter.value("modelpilot_async_queue_size") == 0
        eventually(lambda: equal(replicas(admin_api, namespace, "chat"), 1), timeout=60)
    finally:
        model.stop()


def test_the_dev_broker_installs_non_root_and_only_meters_may_reach_it(
    kubeconfigs: tuple[Path, Path], admin_api: client.ApiClient
) -> None:
    install(kubeconfigs[0], REPO / "manifests")  # the operator's namespace first, as users do
    assert install(kubeconfigs[0], REPO / "manifests" / "async") == []
    redis = client.AppsV1Api(admin_api).read_namespaced_deployment(
        "modelpilot-redis", "modelpilot-system"
    )
    pod = redis.spec.template.spec
    assert pod.security_context.run_as_non_root is True
    assert pod.automount_service_account_token is False
    container = pod.containers[0]
    assert container.security_context.read_only_root_filesystem is True
    assert {"--appendonly", "--appendfsync", "always"} <= set(container.args)
    policy = client.NetworkingV1Api(admin_api).read_namespaced_network_policy(
        "modelpilot-redis", "modelpilot-system"
    )
    (rule,) = policy.spec.ingress
    assert rule._from[0].pod_selector.match_labels == {"app.kubernetes.io/managed-by": "modelpilot"}
