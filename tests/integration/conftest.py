"""Integration tier: one real control plane per session, a fresh namespace per test.

The control plane is the one `make cluster-up` left running when it answers; otherwise it
is started here and stopped at the end of the session. With MODELPILOT_TEST_KUBECONFIG and
MODELPILOT_TEST_OPERATOR_KUBECONFIG (set by `make test-kind`) an external cluster is used
instead, and tests that need the local control plane itself are skipped.
"""

import asyncio
import contextlib
import json
import os
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import aiohttp
import pytest
import yaml
from kubernetes import client, config
from prometheus_client import MetricsHandler

from modelpilot.api import ACTIVATOR_APP
from modelpilot.devcluster import controlplane
from modelpilot.devcluster.install import install
from modelpilot.devcluster.kubelet import FakeKubelet
from modelpilot.devcluster.processes import wait_until
from modelpilot.devcluster.prometheus import PrometheusServer, Series, backfill, scrape_config
from modelpilot.devcluster.prometheus import to_openmetrics as to_openmetrics
from modelpilot.devcluster.redis import RedisServer
from modelpilot.devcluster.servers import ActivatorProcess, MeterProcess, OperatorProcess
from modelpilot.meter.concurrency import ConcurrencyTracker
from modelpilot.meter.metrics import MeterMetrics

REPO = Path(__file__).resolve().parents[2]
CRDS = REPO / "crds"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.integration)


EXTERNAL_ADMIN = os.environ.get("MODELPILOT_TEST_KUBECONFIG")
EXTERNAL_OPERATOR = os.environ.get("MODELPILOT_TEST_OPERATOR_KUBECONFIG")


@pytest.fixture(scope="session")
def cluster() -> Iterator[controlplane.ClusterState]:
    """The local control plane (skips the test on an external cluster)."""
    if EXTERNAL_ADMIN:
        pytest.skip("needs the local control plane, not an external cluster")
    existing = controlplane.load_state()
    if existing is not None and controlplane.is_healthy(existing):
        yield existing
        return
    state = controlplane.up()
    try:
        yield state
    finally:
        controlplane.down()


@pytest.fixture(scope="session")
def kubeconfigs(request: pytest.FixtureRequest) -> tuple[Path, Path]:
    """(admin, operator) kubeconfig paths."""
    if EXTERNAL_ADMIN and EXTERNAL_OPERATOR:
        return Path(EXTERNAL_ADMIN), Path(EXTERNAL_OPERATOR)
    state: controlplane.ClusterState = request.getfixturevalue("cluster")
    return state.kubeconfig, state.operator_kubeconfig


@pytest.fixture(scope="session")
def admin_api(kubeconfigs: tuple[Path, Path]) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(kubeconfigs[0]))


@pytest.fixture(scope="session")
def operator_api(kubeconfigs: tuple[Path, Path]) -> client.ApiClient:
    """The operator's own identity (its service-account user), for RBAC checks."""
    return config.new_client_from_config(config_file=str(kubeconfigs[1]))


def apply_crds(api: client.ApiClient, folder: Path = CRDS) -> list[str]:
    """Create or replace every CRD in `folder` and wait until each is Established."""
    ext = client.ApiextensionsV1Api(api)
    names = []
    for path in sorted(folder.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            names.append(apply_crd(ext, doc))
    return names


def apply_crd(ext: client.ApiextensionsV1Api, doc: dict[str, object]) -> str:
    name = str(doc["metadata"]["name"])  # type: ignore[index]
    try:
        current = ext.read_custom_resource_definition(name)
        doc["metadata"]["resourceVersion"] = current.metadata.resource_version  # type: ignore[index]
        ext.replace_custom_resource_definition(name, doc)
    except client.ApiException as exc:
        if exc.status != 404:
            raise
        ext.create_custom_resource_definition(doc)
    wait_established(ext, name)
    return name


def wait_established(ext: client.ApiextensionsV1Api, name: str, timeout: float = 20) -> None:
    def established() -> bool:
        crd = ext.read_custom_resource_definition(name)
        return any(
            c.type == "Established" and c.status == "True" for c in (crd.status.conditions or [])
        )

    if not wait_until(established, timeout, interval=0.1):
        raise TimeoutError(f"CRD {name} not Established after {timeout}s")


@pytest.fixture(scope="session", autouse=True)
def crds(admin_api: client.ApiClient) -> list[str]:
    return apply_crds(admin_api)


@pytest.fixture
def namespace(admin_api: client.ApiClient, request: pytest.FixtureRequest) -> str:
    """A fresh namespace for this test (never deleted: the local control plane has no
    namespace controller to finish a deletion, and it is new each session anyway)."""
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{base}-{secrets.token_hex(3)}"
    client.CoreV1Api(admin_api).create_namespace({"metadata": {"name": name}})
    return name


@pytest.fixture(scope="session")
def kubelet(admin_api: client.ApiClient) -> FakeKubelet:
    fake = FakeKubelet(admin_api)
    fake.register_node()
    return fake


@pytest.fixture
def prometheus_with_history(tmp_path: Path) -> Iterator[Callable[[list[Series]], PrometheusServer]]:
    """Backfill series into a new Prometheus and start it: `start(series) -> server`."""
    servers: list[PrometheusServer] = []

    def start(series: list[Series]) -> PrometheusServer:
        workdir = tmp_path / f"prometheus-{len(servers)}"
        server = PrometheusServer(workdir)
        backfill(to_openmetrics(series), server.data_dir)
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def prometheus_scraping(tmp_path: Path) -> Iterator[Callable[..., PrometheusServer]]:
    """A new Prometheus scraping static targets: `start({"job": ["host:port"]}) -> server`."""
    servers: list[PrometheusServer] = []

    def start(targets: dict[str, list[str]], interval_seconds: float = 1) -> PrometheusServer:
        workdir = tmp_path / f"prometheus-scrape-{len(servers)}"
        config_ = scrape_config(interval_seconds=interval_seconds, static_targets=targets)
        server = PrometheusServer(workdir, config=config_)
        servers.append(server)
        server.start()
        if not wait_until(server.targets_up, 20, interval=0.25):
            raise RuntimeError(f"Prometheus did not scrape {targets}")
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(autouse=True)
def _no_proxy_for_loopback() -> None:
    # requests (prometheus-api-client) would route loopback through a configured proxy.
    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")


SHARD_LABEL = "modelpilot.dev/shard"
DEDICATED_SHARD = "dedicated"


@pytest.fixture(scope="session")
def operator(
    kubeconfigs: tuple[Path, Path],
    crds: list[str],
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[OperatorProcess]:
    """The operator installed as a user would (`kubectl apply -k manifests/` for the CRD and
    RBAC) and run locally with the ServiceAccount's credentials. At the end of the session
    its log must hold no Forbidden (the RBAC in manifests/ is enough) and no traceback."""
    admin, operator_kubeconfig = kubeconfigs
    install(admin, REPO / "manifests")
    # On the local control plane the activator's pods are the tests' (`activators`).
    prometheus = (
        {}
        if EXTERNAL_ADMIN
        else {
            "prometheus_url": request.getfixturevalue("cluster").prometheus_url,
            "activator_namespace": controlplane.OPERATOR_NAMESPACE,
        }
    )
    log_path = tmp_path_factory.mktemp("operator") / "operator.log"
    running = OperatorProcess(
        log_path,
        operator_kubeconfig,
        verbose=True,
        resync_seconds=1,
        scaler_interval=1,
        gpu_interval=1,
        advisor_processes=2,  # as a fleet would run it (the dedicated operator judges in-process)
        # Models labelled for a dedicated test operator are not this one's.
        selector=f"{SHARD_LABEL}!={DEDICATED_SHARD}",
        **prometheus,
    )
    try:
        yield running
    finally:
        running.stop()
        print(f"operator log: {log_path}")
    log = running.log_text()
    assert "Forbidden" not in log, f"the operator hit RBAC limits; see {log_path}"
    assert "Traceback" not in log, f"the operator raised; see {log_path}"


ACTIVATOR_IPS = ("127.0.0.2", "127.0.0.3")  # the activator pods' IPs, served on loopback


@pytest.fixture(scope="session")
def activators(
    cluster: controlplane.ClusterState,
    operator: OperatorProcess,
    kubelet: FakeKubelet,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[list[ActivatorProcess]]:
    """The activator as installed: two replicas (pods the operator sees, each IP served by
    a real `modelpilot activator` under its own ServiceAccount's RBAC from manifests/)."""
    logs = tmp_path_factory.mktemp("activator")
    namespace = controlplane.OPERATOR_NAMESPACE
    labels = {"app.kubernetes.io/name": ACTIVATOR_APP}
    running: list[ActivatorProcess] = []
    try:
        for i, ip in enumerate(ACTIVATOR_IPS):
            name = f"modelpilot-activator-{i}"
            with contextlib.suppress(client.ApiException):  # left by an earlier session
                kubelet.core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
            wait_until(lambda n=name: _gone(kubelet, namespace, n), 10, interval=0.1)
            kubelet.create_pod(namespace, name, labels=labels, containers=("activator",))
            running.append(
                ActivatorProcess(
                    logs / f"{name}.log",
                    cluster.activator_kubeconfig,
                    ip,
                    keep_alive_seconds=0.2,
                    verbose=True,
                )
            )
            kubelet.set_status(namespace, name, "True", pod_ip=ip)
        yield running
    finally:
        for activator in running:
            activator.stop()
    for activator in running:
        log = activator.log_text()
        assert "Forbidden" not in log and " 403" not in log, f"RBAC: see {activator.log}"
        assert "Traceback" not in log, f"the activator raised; see {activator.log}"


def _gone(kubelet: FakeKubelet, namespace: str, name: str) -> bool:
    try:
        kubelet.core.read_namespaced_pod(name, namespace)
    except client.ApiException as exc:
        return exc.status == 404
    return False


Exporter = Callable[[str, str], ConcurrencyTracker]
Scraped = Callable[[str, str, str], None]


@pytest.fixture
def scraped(cluster: controlplane.ClusterState) -> Iterator[Scraped]:
    """Have the cluster's Prometheus scrape host:port as a model's pod, with the namespace
    and pod labels its Kubernetes scrape config would add."""
    files: list[Path] = []

    def add(target: str, namespace: str, model: str) -> None:
        path = cluster.prometheus_targets_dir / f"{namespace}-{model}.json"
        labels = {"namespace": namespace, "pod": f"{model}-0"}
        path.write_text(json.dumps([{"targets": [target], "labels": labels}]))
        files.append(path)

    yield add
    for path in files:
        path.unlink(missing_ok=True)


@pytest.fixture
def exporter(scraped: Scraped) -> Iterator[Exporter]:
    """Serve the meter's own series for a model, scraped by the cluster's Prometheus.
    Returns the tracker: change its counts to set the concurrency."""
    servers = []

    def start(namespace: str, model: str) -> ConcurrencyTracker:
        tracker = ConcurrencyTracker()
        metrics = MeterMetrics(model, tracker)
        server = ThreadingHTTPServer(("127.0.0.1", 0), MetricsHandler.factory(metrics.registry))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        scraped(f"127.0.0.1:{server.server_address[1]}", namespace, model)
        servers.append(server)
        return tracker

    yield start
    for server in servers:
        server.shutdown()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real Redis (Debian's) for the async queue, shared by the session: each test keeps
    to a model (namespace) of its own."""
    server = RedisServer(tmp_path_factory.mktemp("broker"))
    yield server
    server.stop()


@pytest.fixture
def start_meter(tmp_path: Path) -> Iterator[Callable[..., MeterProcess]]:
    meters: list[MeterProcess] = []

    def start(upstream: str, **flags: object) -> MeterProcess:
        meters.append(MeterProcess(tmp_path, upstream, **flags))
        return meters[-1]

    yield start
    for meter in meters:
        meter.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def until(check: Callable[[], bool], seconds: float = 5) -> bool:
    """wait_until for async tests: sleeping keeps the loop (and its sockets) running."""
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True
