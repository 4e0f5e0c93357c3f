"""The chaos tier: failures injected into real servers (the API server, Prometheus, the
operator's leader, the meter's model server), each test bounded in time and printing
what it survived. Its own control plane (it stops and starts the API server), and a
dedicated operator per test."""

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from modelpilot.devcluster import controlplane, processes
from modelpilot.devcluster.install import install
from modelpilot.devcluster.kubectl import kubectl
from modelpilot.devcluster.servers import OperatorProcess
from tests.integration.conftest import exporter, namespace, scraped  # noqa: F401  (fixtures)

REPO = Path(__file__).resolve().parents[2]
StartOperator = Callable[..., OperatorProcess]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.chaos)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[controlplane.ClusterState]:
    state_dir = tmp_path_factory.mktemp("chaos-cluster")
    state = controlplane.up(state_dir)
    try:
        install(state.kubeconfig, REPO / "manifests")
        established = ("--for=condition=Established", "crd/modeldeployments.modelpilot.dev")
        kubectl(state.kubeconfig, "wait", *established)
        yield state
    finally:
        controlplane.down(state_dir)


@pytest.fixture(scope="session")
def admin_api(cluster: controlplane.ClusterState) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(cluster.kubeconfig))


@pytest.fixture
def start_operator(
    cluster: controlplane.ClusterState,
    namespace: str,  # noqa: F811 (the fixture)
    tmp_path: Path,
) -> Iterator[StartOperator]:
    """Start operators for this test's namespace (any flags); all are stopped after it,
    and none may have logged a traceback or hit RBAC limits."""
    started: list[OperatorProcess] = []

    def start(**options: object) -> OperatorProcess:
        process = OperatorProcess(
            tmp_path / f"operator-{len(started)}.log",
            cluster.operator_kubeconfig,
            **{
                "namespace": namespace,
                "prometheus_url": cluster.prometheus_url,
                "scaler_interval": 1,
                "resync_seconds": 1,
                **options,
            },
        )
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()
    for process in started:
        text = process.log_text()
        assert "Traceback" not in text and "Forbidden" not in text, text[-3000:]


FIGURES: list[str] = []


def figures(title: str, **values: object) -> None:
    """What a chaos test measured: printed together at the end of the run."""
    shown = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in values.items())
    FIGURES.append(f"{title}: {shown}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("what the chaos tier survived")
        for line in FIGURES:
            terminalreporter.write_line(line)


class Server:
    """One of the chaos control plane's processes, to stop, start again, pause and resume
    (the same command line, log and data: etcd keeps the objects, Prometheus its TSDB)."""

    def __init__(self, cluster: controlplane.ClusterState, name: str) -> None:
        self.cluster, self.name = cluster, name
        pid = cluster.pids[name]
        self.command = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]

    @property
    def pid(self) -> int:
        return self.cluster.pids[self.name]

    def stop(self) -> None:
        processes.stop(self.pid)

    def start(self) -> None:
        log = self.cluster.state_dir / "logs" / f"{self.name}.log"
        self.cluster.pids[self.name] = processes.spawn(self.command, log)
        # So that controlplane.down() stops the new process, not the old PID.
        (self.cluster.state_dir / "state.json").write_text(self.cluster.model_dump_json())

    def pause(self) -> None:
        """SIGSTOP: it keeps its sockets, accepts connections and never answers (hung)."""
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)
