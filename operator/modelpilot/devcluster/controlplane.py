"""Start, stop and find the local control plane: etcd, kube-apiserver and Prometheus, and
for the demo kube-controller-manager; with `node=True` also a real node (see node.py).

Everything lives in one state folder (`.local/` in the repository by default):
`kubeconfig` (admin), `operator.kubeconfig` (the operator's service-account identity),
`prometheus-url`, `state.json` (ports, PIDs), `logs/`, `pki/` and the data folders.
"""

import json
import secrets
import shutil
import ssl
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import yaml
from pydantic import BaseModel

from modelpilot.devcluster import images
from modelpilot.devcluster import node as node_
from modelpilot.devcluster.binaries import find_binary
from modelpilot.devcluster.pki import ensure_client_cert, ensure_pki
from modelpilot.devcluster.ports import pick_port
from modelpilot.devcluster.processes import is_running, log_tail, spawn, stop, wait_until
from modelpilot.devcluster.prometheus import PrometheusServer, readme_scrape_jobs, scrape_config

OPERATOR_NAMESPACE = "modelpilot-system"
OPERATOR_SERVICE_ACCOUNT = "modelpilot-operator"
OPERATOR_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_SERVICE_ACCOUNT}"
OPERATOR_GROUPS = (
    "system:serviceaccounts",
    f"system:serviceaccounts:{OPERATOR_NAMESPACE}",
    "system:authenticated",
)
ACTIVATOR_USER = f"system:serviceaccount:{OPERATOR_NAMESPACE}:modelpilot-activator"
ACTIVATOR_GROUPS = OPERATOR_GROUPS

# Preferred loopback ports; any free port is used instead when one is taken.
PREFERRED_PORTS = {"etcd": 12379, "etcd-peer": 12380, "apiserver": 16443, "prometheus": 19090}

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_STATE_DIR = REPO_ROOT / ".local"


class ClusterState(BaseModel):
    """What `up` started and where to reach it (saved as state.json)."""

    state_dir: Path
    api_url: str
    etcd_url: str
    prometheus_url: str
    admin_token: str
    operator_token: str
    activator_token: str = ""  # empty in a state file from before the activator
    pids: dict[str, int]
    node: bool = False  # a real node (containerd, kubelet, kube-proxy, kube-scheduler)

    @property
    def node_dir(self) -> Path:
        return self.state_dir / "node"

    @property
    def pods_file(self) -> Path:
        """The node's pods as Prometheus' pod discovery would see them (file_sd)."""
        return self.node_dir / "pods.json"

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    @property
    def operator_kubeconfig(self) -> Path:
        return self.state_dir / "operator.kubeconfig"

    @property
    def activator_kubeconfig(self) -> Path:
        return self.state_dir / "activator.kubeconfig"

    @property
    def ca_file(self) -> Path:
        return self.state_dir / "pki" / "ca.crt"

    @property
    def prometheus_targets_dir(self) -> Path:
        """Drop file_sd JSON here to have the cluster's Prometheus scrape a process."""
        return self.state_dir / "prometheus" / "targets"


_EXES = {
    "etcd": "etcd",
    "kube-apiserver": "kube-apiserver",
    "prometheus": "prometheus",
    "kube-controller-manager": "kube-controller-manager",
    **{name: name for name in node_.PROCESSES},
    "pod-discovery": Path(sys.executable).name,
}
# Kubernetes' own Deployment -> ReplicaSet -> Pod chain and Service Endpoints (the demo). The
# tests create pods themselves, so their control plane runs without it. A real node runs
# them all (DaemonSets, service-account tokens, namespace deletion, ...).
CONTROLLERS = "deployment,replicaset,endpoint,garbagecollector"


def load_state(state_dir: Path = DEFAULT_STATE_DIR) -> ClusterState | None:
    path = state_dir / "state.json"
    if not path.exists():
        return None
    return ClusterState.model_validate_json(path.read_text())


def is_healthy(state: ClusterState) -> bool:
    """All recorded processes alive and the API server answering /readyz (and the state
    as this version writes it)."""
    if not state.activator_token:
        return False
    if not all(is_running(pid, _EXES[name]) for name, pid in state.pids.items()):
        return False
    return _apiserver_ready(state)


def _apiserver_ready(state: ClusterState) -> bool:
    context = ssl.create_default_context(cafile=str(state.ca_file))
    req = urllib.request.Request(
        f"{state.api_url}/readyz", headers={"Authorization": f"Bearer {state.admin_token}"}
    )
    try:
        with urllib.request.urlopen(req, timeout=2, context=context) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def _etcd_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1) as resp:
            return b"true" in resp.read()
    except OSError:
        return False


def _kubeconfig(state: ClusterState, user: str, token: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "modelpilot-local",
                    "cluster": {
                        "server": state.api_url,
                        "certificate-authority": str(state.ca_file),
                    },
                }
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [
                {
                    "name": "modelpilot-local",
                    "context": {"cluster": "modelpilot-local", "user": user},
                }
            ],
            "current-context": "modelpilot-local",
        },
        sort_keys=False,
    )


def up(
    state_dir: Path = DEFAULT_STATE_DIR,
    timeout: float = 60.0,
    controllers: bool = False,
    node: bool = False,
) -> ClusterState:
    """Start the control plane, or return the running one when it already answers (and runs
    the controller manager when `controllers` asks for it, a node when `node` does)."""
    controllers = controllers or node
    existing = load_state(state_dir)
    if (
        existing is not None
        and is_healthy(existing)
        and controllers == ("kube-controller-manager" in existing.pids)
        and node == existing.node
    ):
        return existing
    if existing is not None:
        down(state_dir)

    names = ["etcd", "kube-apiserver", "prometheus"]
    if controllers:
        names.append("kube-controller-manager")
    if node:
        node_.preflight()
        names += node_.PROCESSES
        node_.prepare_network(state_dir / "node")
    binaries = {name: find_binary(name) for name in names}
    logs = state_dir / "logs"
    pki = state_dir / "pki"
    ensure_pki(pki)
    # With a node, pods reach the API server and Prometheus on the bridge's address.
    host = node_.HOST_IP if node else "127.0.0.1"

    ports: dict[str, int] = {}
    for name, preferred in PREFERRED_PORTS.items():
        on = host if name in ("apiserver", "prometheus") else "127.0.0.1"
        ports[name] = pick_port(preferred, host=on, avoid=frozenset(ports.values()))

    state = ClusterState(
        state_dir=state_dir,
        api_url=f"https://{host}:{ports['apiserver']}",
        etcd_url=f"http://127.0.0.1:{ports['etcd']}",
        prometheus_url=f"http://{host}:{ports['prometheus']}",
        admin_token=secrets.token_hex(16),
        operator_token=secrets.token_hex(16),
        activator_token=secrets.token_hex(16),
        pids={},
        node=node,
    )
    tokens = state_dir / "tokens.csv"
    tokens.write_text(
        f"{state.admin_token},admin,admin,system:masters\n"
        f'{state.operator_token},{OPERATOR_USER},modelpilot-operator,"{",".join(OPERATOR_GROUPS)}"\n'
        f'{state.activator_token},{ACTIVATOR_USER},modelpilot-activator,"{",".join(ACTIVATOR_GROUPS)}"\n'
    )
    tokens.chmod(0o600)

    def save() -> None:
        (state_dir / "state.json").write_text(state.model_dump_json(indent=2))

    try:
        peer = f"http://127.0.0.1:{ports['etcd-peer']}"
        etcd_data = state_dir / "etcd-data"
        shutil.rmtree(etcd_data, ignore_errors=True)
        state.pids["etcd"] = spawn(
            [
                binaries["etcd"],
                "--name=local",
                f"--data-dir={etcd_data}",
                f"--listen-client-urls={state.etcd_url}",
                f"--advertise-client-urls={state.etcd_url}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=local={peer}",
                "--log-level=warn",
            ],
            logs / "etcd.log",
        )
        save()
        if not wait_until(lambda: _etcd_ready(state.etcd_url), timeout, interval=0.2):
            raise RuntimeError(f"etcd did not start:\n{log_tail(logs / 'etcd.log')}")

        state.pids["kube-apiserver"] = spawn(
            [
                binaries["kube-apiserver"],
                f"--etcd-servers={state.etcd_url}",
                f"--secure-port={ports['apiserver']}",
                f"--bind-address={host}",
                f"--advertise-address={host}",
                f"--cert-dir={pki}",
                f"--tls-cert-file={pki / 'serving.crt'}",
                f"--tls-private-key-file={pki / 'serving.key'}",
                f"--token-auth-file={tokens}",
                *(_node_apiserver_flags(pki) if node else _apiserver_flags()),
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc",
                # Room for many models: every ModelDeployment has a Service (a /24 ran out).
                "--service-cluster-ip-range=10.0.0.0/16",
                "--insecure-port=0",
                "--allow-privileged=true",
                "--v=0",
            ],
            logs / "kube-apiserver.log",
        )
        save()

        config = scrape_config(file_sd_dir=state.prometheus_targets_dir)
        if node:
            # The README's scrape jobs as users apply them; the pod discovery they ask for is
            # played by devcluster/discovery.py (Debian's Prometheus is built without it).
            discovery = {
                "file_sd_configs": [{"files": [str(state.pods_file)], "refresh_interval": "1s"}]
            }
            config["scrape_configs"] += readme_scrape_jobs(REPO_ROOT / "README.md", discovery)
        prometheus = PrometheusServer(
            state_dir / "prometheus",
            config=config,
            port=ports["prometheus"],
            data_dir=state_dir / "prometheus-data",
            host=host,
        )
        shutil.rmtree(prometheus.data_dir, ignore_errors=True)
        state.prometheus_targets_dir.mkdir(parents=True, exist_ok=True)
        prometheus.log_path = logs / "prometheus.log"
        prometheus.start(timeout)
        assert prometheus.pid is not None
        state.pids["prometheus"] = prometheus.pid
        save()

        if not wait_until(lambda: _apiserver_ready(state), timeout, interval=0.2):
            raise RuntimeError(
                f"kube-apiserver did not get ready:\n{log_tail(logs / 'kube-apiserver.log')}"
            )
    except BaseException:
        down(state_dir)
        raise

    state.kubeconfig.write_text(_kubeconfig(state, "admin", state.admin_token))
    state.operator_kubeconfig.write_text(
        _kubeconfig(state, OPERATOR_SERVICE_ACCOUNT, state.operator_token)
    )
    state.activator_kubeconfig.write_text(
        _kubeconfig(state, "modelpilot-activator", state.activator_token)
    )
    for path in (state.kubeconfig, state.operator_kubeconfig, state.activator_kubeconfig):
        path.chmod(0o600)
    if controllers:
        try:
            state.pids["kube-controller-manager"] = spawn(
                [
                    binaries["kube-controller-manager"],
                    f"--kubeconfig={state.kubeconfig}",
                    *(
                        [
                            "--controllers=*",
                            f"--service-account-private-key-file={pki / 'sa.key'}",
                            f"--root-ca-file={state.ca_file}",
                        ]
                        if node
                        else [f"--controllers={CONTROLLERS}"]
                    ),
                    "--leader-elect=false",
                    "--port=0",
                    "--secure-port=0",
                    "--v=0",
                ],
                logs / "kube-controller-manager.log",
            )
            save()
            if node:
                _start_node(state, save)
        except BaseException:
            down(state_dir)
            raise
    (state_dir / "prometheus-url").write_text(state.prometheus_url + "\n")
    return state


def down(state_dir: Path = DEFAULT_STATE_DIR) -> list[str]:
    """Stop the processes `up` recorded (and nothing else); returns what was stopped."""
    state = load_state(state_dir)
    if state is None:
        # `up` stopped before it saved its state (or the file is gone): nothing recorded to
        # stop, but what a node mounted under this folder is this folder's to undo (the
        # bridge and the iptables rules may be another state folder's node: left alone).
        node_.unmount_under(state_dir / "node")
        return []
    stopped = []
    if state.node:
        if (pid := state.pids.get("pod-discovery")) and is_running(pid, _EXES["pod-discovery"]):
            stop(pid)
        stopped += node_.stop_processes(state.pids, state.node_dir)
        node_.cleanup(state.node_dir)
    # Reverse start order: the API server before its etcd.
    for name in ("kube-controller-manager", "prometheus", "kube-apiserver", "etcd"):
        if (pid := state.pids.get(name)) is not None and is_running(pid, _EXES[name]):
            stop(pid, _EXES[name])
            stopped.append(name)
    for leftover in ("state.json", "kubeconfig", "operator.kubeconfig", "prometheus-url"):
        (state_dir / leftover).unlink(missing_ok=True)
    for data in ("etcd-data", "prometheus-data"):
        shutil.rmtree(state_dir / data, ignore_errors=True)
    return stopped


def _apiserver_flags() -> list[str]:
    # No controller manager makes service-account tokens here: pods the tests create
    # directly must not wait for one.
    return ["--authorization-mode=RBAC", "--disable-admission-plugins=ServiceAccount"]


def _node_apiserver_flags(pki: Path) -> list[str]:
    """A kubelet authenticates with its client certificate and may touch only its own Node
    and pods (the Node authorizer and NodeRestriction); the API server reaches kubelets with
    a client certificate of its own."""
    ensure_client_cert(pki, "apiserver-kubelet-client", "kube-apiserver", "system:masters")
    return [
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        f"--client-ca-file={pki / 'ca.crt'}",
        f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
        "--kubelet-preferred-address-types=InternalIP",
    ]


def _start_node(state: ClusterState, save: Callable[[], None]) -> None:
    """containerd, the pause image, then kubelet, kube-proxy and kube-scheduler."""
    pause = images.pause_image()
    archive = images.build(pause)

    def record(name: str, pid: int) -> None:
        state.pids[name] = pid
        save()

    node_.start(
        state.node_dir,
        state.state_dir / "pki",
        state.api_url,
        state.kubeconfig,
        pause.ref,
        record,
        before_kubelet=lambda: images.import_into(
            archive, pause.ref, node_.containerd_socket(state.node_dir)
        ),
    )
    record(
        "pod-discovery",
        spawn(
            [
                sys.executable,
                "-m",
                "modelpilot.devcluster.discovery",
                f"--kubeconfig={state.kubeconfig}",
                f"--out={state.pods_file}",
            ],
            state.state_dir / "logs" / "pod-discovery.log",
        ),
    )


def summary(state: ClusterState) -> str:
    return json.dumps(
        {
            "kubeconfig": str(state.kubeconfig),
            "operatorKubeconfig": str(state.operator_kubeconfig),
            "apiServer": state.api_url,
            "prometheus": state.prometheus_url,
            "logs": str(state.state_dir / "logs"),
        },
        indent=2,
    )
