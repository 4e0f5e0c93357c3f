"""A real node on this machine: containerd, a CNI bridge, kubelet, kube-proxy and
kube-scheduler, joined to the local control plane (`controlplane.up(node=True)`).

Pod traffic stays on the machine: pods get addresses on the bridge `mp0` (10.88.0.0/24) and
routes to that range and to Service IPs only (no default route, no masquerade); the
forwarding rule below drops anything from the bridge bound for another interface. The API
server, Prometheus and the kubelet listen on the bridge's own address, 10.88.0.1, where pods
and the host both reach them.

Everything the node writes lives under `<state>/node/` (containerd's root and state, the
kubelet's root, CNI config and IP leases), except what Linux keeps globally: the bridge,
network namespaces, the forwarding rule, and kube-proxy's iptables chains. `cleanup` removes
those too.
"""

import contextlib
import hashlib
import ipaddress
import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from modelpilot.devcluster.binaries import find_binary
from modelpilot.devcluster.pki import ensure_client_cert
from modelpilot.devcluster.ports import pick_port
from modelpilot.devcluster.processes import is_running, log_tail, spawn, stop, wait_until

NODE_NAME = "mp-node"
BRIDGE = "mp0"
HOST_IP = "10.88.0.1"  # the bridge's address: API server, Prometheus and kubelet listen here
POD_SUBNET = "10.88.0.0/24"
SERVICE_CIDR = "10.0.0.0/16"  # the API server's --service-cluster-ip-range
# What only a node has, in start order (stopped in reverse).
PROCESSES = ("containerd", "kubelet", "kube-proxy", "kube-scheduler")
# The kubelet writes container logs here whatever its root folder (not configurable in 1.20).
POD_LOGS = Path("/var/log/pods")
FORWARD_RULE = ("FORWARD", "-i", BRIDGE, "!", "-o", BRIDGE, "-j", "DROP")
KUBERNETES_SERVICE_IP = str(next(ipaddress.ip_network(SERVICE_CIDR).hosts()))


class NodeUnsupportedError(RuntimeError):
    """This machine cannot run a node (one line saying why and what to do)."""


def _sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(cmd), capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {(result.stderr or result.stdout).strip()}")
    return result


def preflight() -> None:
    """Raise NodeUnsupportedError with one actionable line when a node cannot run here."""
    if os.geteuid() != 0:
        raise NodeUnsupportedError("the node needs root (containers, mounts, the bridge)")
    if "overlay" not in Path("/proc/filesystems").read_text():
        raise NodeUnsupportedError(
            "the node needs overlayfs (containerd's snapshotter): `modprobe overlay`, "
            "or run on a kernel that has it"
        )
    if (
        not Path("/sys/fs/cgroup/memory").is_dir()
        and not Path("/sys/fs/cgroup/cgroup.controllers").exists()
    ):
        raise NodeUnsupportedError("the node needs cgroups mounted at /sys/fs/cgroup")
    for name in ("containerd", "runc", "iptables", "ip"):
        if shutil.which(name) is None:
            raise NodeUnsupportedError(f"{name} not found: run `make setup`")
    if other := running_node():
        raise NodeUnsupportedError(
            f"a node already runs on this machine (kubelet root {other}): one at a time; "
            "stop it with `python -m modelpilot.devcluster down --state-dir` its state folder"
        )
    if not Path("/usr/lib/cni/bridge").exists():
        raise NodeUnsupportedError(
            "CNI plugins not found in /usr/lib/cni: apt-get install containernetworking-plugins"
        )


def running_node() -> str | None:
    """The kubelet root folder of a node of ours that runs now, if any (its pods would share
    the bridge and its addresses)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if cmdline[0].endswith("kubelet") and f"--hostname-override={NODE_NAME}" in cmdline:
            root = next((a for a in cmdline if a.startswith("--root-dir=")), "--root-dir=?")
            return root.split("=", 1)[1]
    return None


# --- configuration (pure) -----------------------------------------------------------------


def cni_config(ipam_dir: Path) -> dict[str, Any]:
    """A bridge network with routes to the pod range and Service IPs only."""
    return {
        "cniVersion": "0.4.0",
        "name": "modelpilot",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(ipam_dir),
                    "ranges": [[{"subnet": POD_SUBNET, "gateway": HOST_IP}]],
                    "routes": [{"dst": POD_SUBNET}, {"dst": SERVICE_CIDR}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
            {"type": "loopback"},
        ],
    }


def containerd_config(root: Path, socket: Path, cni_dir: Path, pause_ref: str) -> str:
    """containerd's config.toml: its own root, state and socket; the CRI on runc, overlayfs,
    our CNI config and pause image."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""version = 2
root = "{root / "root"}"
state = "{root / "state"}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{socket}"

[{cri}]
  sandbox_image = "{pause_ref}"
  # This machine's kernel has no AppArmor, and runc here may not lower oom_score_adj.
  disable_apparmor = true
  restrict_oom_score_adj = true
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [{cri}.cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni_dir}"
"""


def kubelet_config(ca_file: Path, port: int, healthz_port: int) -> dict[str, Any]:
    """KubeletConfiguration: serves on the bridge address only, authenticates callers with
    client certificates and asks the API server what they may do (no anonymous access)."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": HOST_IP,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca_file)},
        },
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "cgroupfs",
        "failSwapOn": False,
        # A development machine: no reserved resources, no eviction on a busy disk, and our
        # imported images (never pulled again) are not garbage-collected.
        "enforceNodeAllocatable": [],
        "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        # Pods resolve no names: nothing they look up can leave the machine.
        "resolvConf": "",
        "serializeImagePulls": False,
        "nodeStatusUpdateFrequency": "4s",
        "syncFrequency": "10s",
    }


def kubeconfig(api_url: str, ca_file: Path, cert: Path, key: Path, user: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {"server": api_url, "certificate-authority": str(ca_file)},
                }
            ],
            "users": [
                {"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}
            ],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
            "current-context": "local",
        }
    )


# --- processes ----------------------------------------------------------------------------


def prepare_network(node_dir: Path) -> None:
    """The bridge with the host's address on it (the API server binds there before any pod
    exists), forwarding on (as it was is put back by `cleanup`), and the rule that keeps pod
    traffic on this machine."""
    node_dir.mkdir(parents=True, exist_ok=True)
    forwarding = Path("/proc/sys/net/ipv4/ip_forward")
    saved = node_dir / "ip_forward-before"
    if not saved.exists():
        saved.write_text(forwarding.read_text())
    if _sh("ip", "link", "show", BRIDGE, check=False).returncode != 0:
        _sh("ip", "link", "add", BRIDGE, "type", "bridge")
    if HOST_IP not in _sh("ip", "-4", "addr", "show", BRIDGE).stdout:
        _sh("ip", "addr", "add", f"{HOST_IP}/24", "dev", BRIDGE)
    _sh("ip", "link", "set", BRIDGE, "up")
    forwarding.write_text("1\n")
    if _sh("iptables", "-C", *FORWARD_RULE, check=False).returncode != 0:
        _sh("iptables", "-I", *FORWARD_RULE)


def start(
    node_dir: Path,
    pki: Path,
    api_url: str,
    admin_kubeconfig: Path,
    pause_ref: str,
    record: Callable[[str, int], None],
    before_kubelet: Callable[[], None],
    timeout: float = 60.0,
) -> None:
    """Start containerd, then kubelet, kube-proxy and kube-scheduler; `record(name, pid)`
    as each starts; `before_kubelet` runs once containerd answers (to import the pause
    image). The Node's readiness is the caller's to wait for."""
    logs = node_dir.parent / "logs"
    for d in ("containerd", "kubelet", "cni/net.d", "cni/ipam"):
        (node_dir / d).mkdir(parents=True, exist_ok=True)
    socket = containerd_socket(node_dir)
    socket.parent.mkdir(parents=True, exist_ok=True)
    # What was there before is not ours to remove.
    before = sorted(p.name for p in POD_LOGS.iterdir()) if POD_LOGS.is_dir() else []
    (node_dir / "pod-logs-before.json").write_text(json.dumps(before))
    cni_dir = node_dir / "cni" / "net.d"
    (cni_dir / "10-modelpilot.conflist").write_text(
        json.dumps(cni_config(node_dir / "cni" / "ipam"), indent=2)
    )
    config = node_dir / "containerd" / "config.toml"
    config.write_text(containerd_config(node_dir / "containerd", socket, cni_dir, pause_ref))
    record(
        "containerd",
        spawn([find_binary("containerd"), f"--config={config}"], logs / "containerd.log"),
    )
    if not wait_until(lambda: _containerd_ready(socket), timeout, interval=0.2):
        raise RuntimeError(f"containerd did not start:\n{log_tail(logs / 'containerd.log')}")
    before_kubelet()

    ca = pki / "ca.crt"
    ensure_client_cert(pki, "kubelet", f"system:node:{NODE_NAME}", "system:nodes")
    ensure_client_cert(pki, "kube-proxy", "system:kube-proxy")
    configs = {}
    for name, user in (
        ("kubelet", f"system:node:{NODE_NAME}"),
        ("kube-proxy", "system:kube-proxy"),
    ):
        path = node_dir / f"{name}.kubeconfig"
        path.write_text(kubeconfig(api_url, ca, pki / f"{name}.crt", pki / f"{name}.key", user))
        path.chmod(0o600)
        configs[name] = path

    kubelet_yaml = node_dir / "kubelet" / "config.yaml"
    kubelet_yaml.write_text(yaml.safe_dump(kubelet_config(ca, pick_port(10250), pick_port(10248))))
    record(
        "kubelet",
        spawn(
            [
                find_binary("kubelet"),
                f"--config={kubelet_yaml}",
                f"--kubeconfig={configs['kubelet']}",
                "--container-runtime=remote",
                f"--container-runtime-endpoint=unix://{socket}",
                f"--root-dir={node_dir / 'kubelet'}",
                f"--cert-dir={node_dir / 'kubelet' / 'pki'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={HOST_IP}",
                f"--pod-infra-container-image={pause_ref}",
                "--v=1",
            ],
            logs / "kubelet.log",
        ),
    )
    record(
        "kube-proxy",
        spawn(
            [
                find_binary("kube-proxy"),
                f"--kubeconfig={configs['kube-proxy']}",
                f"--hostname-override={NODE_NAME}",
                "--proxy-mode=iptables",
                f"--cluster-cidr={POD_SUBNET}",
                # Pods reach a Service backed by a pod on the same bridge: the answer must come
                # back through the host to be translated back.
                "--masquerade-all",
                f"--nodeport-addresses={HOST_IP}/32",
                f"--healthz-bind-address=127.0.0.1:{pick_port()}",
                f"--metrics-bind-address=127.0.0.1:{pick_port()}",
                "--conntrack-max-per-core=0",
                "--v=0",
            ],
            logs / "kube-proxy.log",
        ),
    )
    record(
        "kube-scheduler",
        spawn(
            [
                find_binary("kube-scheduler"),
                f"--kubeconfig={admin_kubeconfig}",
                f"--authentication-kubeconfig={admin_kubeconfig}",
                f"--authorization-kubeconfig={admin_kubeconfig}",
                "--leader-elect=false",
                "--port=0",
                "--bind-address=127.0.0.1",
                f"--secure-port={pick_port()}",
                "--v=0",
            ],
            logs / "kube-scheduler.log",
        ),
    )


def containerd_socket(node_dir: Path) -> Path:
    """Under /run: a socket path has room for 107 bytes, a state folder may be deep."""
    digest = hashlib.sha256(str(node_dir).encode()).hexdigest()[:12]
    return Path("/run/modelpilot") / digest / "containerd.sock"


def _containerd_ready(socket: Path) -> bool:
    if not socket.exists():
        return False
    return (
        subprocess.run(
            [find_binary("ctr"), f"--address={socket}", "version"], capture_output=True
        ).returncode
        == 0
    )


def ctr(node_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _sh(
        find_binary("ctr"), f"--address={containerd_socket(node_dir)}", "-n", "k8s.io", *args
    )


def stop_processes(pids: Mapping[str, int], node_dir: Path) -> list[str]:
    """Stop the node's processes (recorded in `pids`): the kubelet first, so nothing is
    restarted, then every container, then containerd."""
    stopped = []
    for name in ("kube-scheduler", "kube-proxy", "kubelet"):
        if (pid := pids.get(name)) is not None and is_running(pid, name):
            stop(pid, name)
            stopped.append(name)
    pid = pids.get("containerd")
    if pid is not None and is_running(pid, "containerd"):
        with contextlib.suppress(RuntimeError):
            tasks = ctr(node_dir, "tasks", "list", "-q").stdout.split()
            for task in tasks:
                ctr(node_dir, "tasks", "kill", "-s", "SIGKILL", task)
        stop(pid, "containerd")
        stopped.append("containerd")
    _kill_shims(containerd_socket(node_dir))
    return stopped


def _kill_shims(socket: Path) -> None:
    """containerd's shims outlive it by design; ours name its socket on their command line."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            cmdline
            and cmdline[0].endswith(b"containerd-shim-runc-v2")
            and str(socket).encode() in cmdline
        ):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc.name), 9)


def cleanup(node_dir: Path) -> None:
    """Undo what the node left in the kernel: mounts under its folder, pod network
    namespaces, the bridge, kube-proxy's chains and the forwarding rule."""
    unmount_under(node_dir)
    for netns in _pod_netns():
        _sh("ip", "netns", "delete", netns, check=False)
    _sh("ip", "link", "delete", BRIDGE, check=False)
    shutil.rmtree(containerd_socket(node_dir).parent, ignore_errors=True)
    before_file = node_dir / "pod-logs-before.json"
    if before_file.exists() and POD_LOGS.is_dir():
        before = set(json.loads(before_file.read_text()))
        for logs in POD_LOGS.iterdir():
            if logs.name not in before:
                shutil.rmtree(logs, ignore_errors=True)
    _remove_kube_chains()
    while _sh("iptables", "-C", *FORWARD_RULE, check=False).returncode == 0:
        _sh("iptables", "-D", *FORWARD_RULE)
    saved = node_dir / "ip_forward-before"
    if saved.exists():
        Path("/proc/sys/net/ipv4/ip_forward").write_text(saved.read_text())
        saved.unlink()


def unmount_under(folder: Path) -> None:
    """Unmount everything mounted under `folder` (containerd's snapshots, pods' volumes),
    deepest first."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    inside = (m for m in mounts if m == str(folder) or m.startswith(f"{folder}/"))
    for mount in sorted(inside, key=len, reverse=True):
        _sh("umount", "-l", mount, check=False)


def _remove_kube_chains() -> None:
    """The KUBE-* iptables chains kube-proxy and the kubelet made, and the jumps to them."""
    for table in ("filter", "nat", "mangle"):
        rules = _sh("iptables", "-t", table, "-S", check=False).stdout.splitlines()
        for rule in rules:
            parts = shlex.split(rule)  # comments are quoted
            if parts[:1] == ["-A"] and not parts[1].startswith("KUBE-") and "KUBE-" in rule:
                _sh("iptables", "-t", table, "-D", *parts[1:], check=False)
        chains = [r.split()[1] for r in rules if r.startswith("-N KUBE-")]
        for chain in chains:
            _sh("iptables", "-t", table, "-F", chain, check=False)
        for chain in chains:
            _sh("iptables", "-t", table, "-X", chain, check=False)


def _pod_netns() -> list[str]:
    """Network namespaces the CRI made for our pods: named cni-*, with an address in our
    pod range."""
    found = []
    for netns in _sh("ip", "netns", "list", check=False).stdout.split("\n"):
        name = netns.split(" ")[0]
        if not name.startswith("cni-"):
            continue
        addrs = _sh("ip", "-n", name, "-4", "-o", "addr", check=False).stdout
        if f" {POD_SUBNET.rsplit('.', 1)[0]}." in addrs:
            found.append(name)
    return found
