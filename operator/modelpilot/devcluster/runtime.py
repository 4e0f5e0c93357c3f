"""A development-only node for the local control plane: it plays the scheduler and the
kubelet, running each pod's containers as local processes (the demo's runtime).

What it does as a kubelet would: binds unscheduled pods to its node, gives each pod its
own address (so every pod can listen on the same ports), starts the
containers, runs their readiness probes, restarts containers that exit (counting restarts
and why), reports all of it in pod status, and on deletion sends SIGTERM, waits out the
grace period and confirms the deletion. It also writes a Prometheus file_sd target for each
pod that asks to be scraped (`prometheus.io/*` annotations).

What it simulates: the network. A pod listens on loopback 127.0.1.N and reports the pod IP
10.244.0.N (the API server refuses loopback addresses in Endpoints); `local_address` maps
one to the other, as a CNI would route. Images are not pulled: each image maps to a local
command (`images`), and a container whose image has none waits with ErrImagePull. Liveness
probes, resource limits, volumes and network isolation are not implemented.
"""

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from modelpilot.devcluster.kubelet import NODE_NAME, FakeKubelet, now_text, replace_status
from modelpilot.devcluster.processes import stop as stop_process

log = logging.getLogger(__name__)

RESTART_BACKOFF_SECONDS = 2.0
LOOPBACK_HOSTS = ("0.0.0.0", "127.0.0.1", "localhost")


POD_NETWORK = "10.244.0."
LOCAL_NETWORK = "127.0.1."


def local_address(pod_ip: str) -> str:
    """Where a pod IP this runtime handed out is served on this machine."""
    if pod_ip.startswith(POD_NETWORK):
        return LOCAL_NETWORK + pod_ip.removeprefix(POD_NETWORK)
    return pod_ip


def image_repository(image: str) -> str:
    """`registry/name:tag` or `name@sha256:...` -> `registry/name`."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)
    if ":" in last[-1]:
        name = name.rsplit(":", 1)[0]
    return name


def container_argv(
    container: Mapping[str, Any], images: Mapping[str, list[str]], pod_ip: str
) -> list[str] | None:
    """The local command for a container (its image's entrypoint, or its own `command`,
    then `args`), with loopback and wildcard hosts in the arguments moved to the pod's own
    address. None when the image has no local command."""
    entrypoint = images.get(image_repository(str(container.get("image", ""))))
    if entrypoint is None:
        return None
    command = list(container.get("command") or entrypoint)
    if command and command[0] in ("python", "python3"):
        command[0] = sys.executable
    argv = [*command, *[str(a) for a in container.get("args") or []]]
    for host in LOOPBACK_HOSTS:
        argv = [a.replace(host, pod_ip) for a in argv]
    return argv


def resolve_port(container: Mapping[str, Any], port: int | str) -> int | None:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    return None


def readiness_url(container: Mapping[str, Any], pod_ip: str) -> str | None:
    """Where the container's HTTP readiness probe asks; None when it has none."""
    get = (container.get("readinessProbe") or {}).get("httpGet")
    if not get:
        return None
    port = resolve_port(container, get.get("port", 80))
    return f"http://{pod_ip}:{port}{get.get('path', '/')}"


def scrape_target(pod: Mapping[str, Any], pod_ip: str) -> str | None:
    """host:port to scrape when the pod asks for it (prometheus.io/scrape and /port)."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    if annotations.get("prometheus.io/scrape") != "true" or not annotations.get(
        "prometheus.io/port"
    ):
        return None
    return f"{pod_ip}:{annotations['prometheus.io/port']}"


@dataclass
class ContainerRun:
    spec: dict[str, Any]
    argv: list[str] | None
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    started_at: str = ""
    ready: bool = False
    restarts: int = 0
    last_terminated: dict[str, Any] | None = None
    restart_at: float = 0.0

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, env: Mapping[str, str], cwd: Path) -> None:
        assert self.argv is not None
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=dict(env),
                start_new_session=True,
            )
        self.started_at = now_text()
        self.ready = False

    def status(self) -> dict[str, Any]:
        image = str(self.spec.get("image", ""))
        status: dict[str, Any] = {
            "name": self.name,
            "image": image,
            "imageID": "",
            "ready": self.ready,
            "restartCount": self.restarts,
            "started": self.running(),
        }
        if self.argv is None:
            status["state"] = {
                "waiting": {
                    "reason": "ErrImagePull",
                    "message": f"the local runtime has no command for image {image}",
                }
            }
        elif self.running():
            status["state"] = {"running": {"startedAt": self.started_at}}
        else:
            status["state"] = {"waiting": {"reason": "CrashLoopBackOff"}}
        if self.last_terminated:
            status["lastState"] = {"terminated": self.last_terminated}
        return status


@dataclass
class PodRun:
    namespace: str
    name: str
    uid: str
    ip: str
    workdir: Path
    containers: list[ContainerRun]
    start_time: str
    scrape: str | None
    grace_seconds: float = 30.0
    stop_deadline: float | None = None
    last_status: dict[str, Any] | None = None
    transitions: dict[str, tuple[str, str]] = field(default_factory=dict)

    def ready(self) -> bool:
        return all(c.ready for c in self.containers)

    @property
    def pod_ip(self) -> str:
        return POD_NETWORK + self.ip.removeprefix(LOCAL_NETWORK)

    def condition(self, kind: str, value: bool) -> dict[str, Any]:
        status = "True" if value else "False"
        previous = self.transitions.get(kind)
        if previous is None or previous[0] != status:
            self.transitions[kind] = (status, now_text())
        return {"type": kind, "status": status, "lastTransitionTime": self.transitions[kind][1]}

    def status(self) -> dict[str, Any]:
        ready = self.ready()
        return {
            "phase": "Running",
            "conditions": [
                self.condition("Initialized", True),
                self.condition("Ready", ready),
                self.condition("ContainersReady", ready),
                self.condition("PodScheduled", True),
            ],
            "hostIP": "127.0.0.1",
            "podIP": self.pod_ip,
            "podIPs": [{"ip": self.pod_ip}],
            "startTime": self.start_time,
            "containerStatuses": [c.status() for c in self.containers],
        }


def _probe(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(200 <= resp.status < 400)
    except (urllib.error.URLError, OSError):
        return False


class LocalRuntime:
    """Runs the pods of `namespaces` on this machine until `stop()`."""

    def __init__(
        self,
        api: client.ApiClient,
        workdir: Path,
        images: Mapping[str, list[str]],
        targets_dir: Path,
        namespaces: tuple[str, ...],
        node_name: str = NODE_NAME,
        interval: float = 0.5,
    ) -> None:
        self.core = client.CoreV1Api(api)
        self.workdir, self.images, self.targets_dir = workdir, dict(images), targets_dir
        self.namespaces, self.node_name, self.interval = namespaces, node_name, interval
        self.runs: dict[str, PodRun] = {}
        self._free_ips = [f"{LOCAL_NETWORK}{i}" for i in range(2, 255)]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- lifecycle ---------------------------------------------------------------------
    @property
    def _pid_file(self) -> Path:
        return self.workdir / "pids"

    def _reap_leftovers(self) -> None:
        """Stop containers a runtime that was killed (not stopped) left running: they would
        hold the pod addresses' ports."""
        if self._pid_file.exists():
            for pid in {int(p) for p in self._pid_file.read_text().split()}:
                stop_process(pid, sys.executable, timeout=5)
        self._pid_file.write_text("")
        for old in self.workdir.iterdir():  # the last run's pod logs
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)

    def _started(self, c: ContainerRun) -> None:
        if c.proc is not None:
            with self._pid_file.open("a") as out:
                out.write(f"{c.proc.pid}\n")

    def start(self) -> "LocalRuntime":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._reap_leftovers()
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        FakeKubelet(self.core.api_client, self.node_name).register_node()
        self._thread = threading.Thread(target=self._loop, name="local-runtime", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the loop and every container it started (SIGTERM, then SIGKILL)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for run in list(self.runs.values()):
            self._signal(run, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(
            c.running() for r in self.runs.values() for c in r.containers
        ):
            time.sleep(0.1)
        for run in list(self.runs.values()):
            self._signal(run, signal.SIGKILL)
            self._forget(run)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync()
            except Exception:  # the API server restarting, a pod racing away: retry
                log.exception("local runtime sync failed")
            self._stop.wait(self.interval)

    # --- one pass ------------------------------------------------------------------------
    def sync(self) -> None:
        pods = [pod for ns in self.namespaces for pod in self._list_pods(ns)]
        seen = set()
        for pod in pods:
            meta, spec = pod["metadata"], pod["spec"]
            uid = meta["uid"]
            seen.add(uid)
            if not spec.get("nodeName"):
                if not meta.get("deletionTimestamp"):
                    self._bind(meta["namespace"], meta["name"])
                continue
            if spec["nodeName"] != self.node_name:
                continue
            run = self.runs.get(uid)
            if meta.get("deletionTimestamp"):
                self._terminate(meta, run)
            elif run is None:
                self._start(pod)
            else:
                self._tend(run)
        for uid in [u for u in self.runs if u not in seen]:  # deleted behind our back
            run = self.runs[uid]
            self._signal(run, signal.SIGKILL)
            self._forget(run)

    def _list_pods(self, namespace: str) -> list[dict[str, Any]]:
        # Raw JSON: the pod spec exactly as written (camelCase), as a kubelet reads it.
        response = self.core.list_namespaced_pod(namespace, _preload_content=False)
        items: list[dict[str, Any]] = json.loads(response.data)["items"]
        return items

    def _bind(self, namespace: str, name: str) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
        }
        # The client cannot read the Binding it gets back (no `target`): skip decoding.
        with contextlib.suppress(client.ApiException):
            self.core.create_namespaced_binding(namespace, body, _preload_content=False)

    def _start(self, pod: dict[str, Any]) -> None:
        meta, spec = pod["metadata"], pod["spec"]
        ip = self._free_ips.pop(0)
        workdir = self.workdir / f"{meta['namespace']}_{meta['name']}"
        workdir.mkdir(parents=True, exist_ok=True)
        run = PodRun(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=meta["uid"],
            ip=ip,
            workdir=workdir,
            containers=[
                ContainerRun(c, container_argv(c, self.images, ip), workdir / f"{c['name']}.log")
                for c in spec["containers"]
            ],
            start_time=now_text(),
            scrape=scrape_target(pod, ip),
            grace_seconds=float(spec.get("terminationGracePeriodSeconds") or 30),
        )
        self.runs[run.uid] = run
        for c in run.containers:
            if c.argv is not None:
                c.start(self._env(c.spec, run), workdir)
                self._started(c)
        if run.scrape:
            labels = {"namespace": run.namespace, "pod": run.name}
            self._target_path(run).write_text(
                json.dumps([{"targets": [run.scrape], "labels": labels}])
            )
        self._write_status(run)

    def _env(self, container: Mapping[str, Any], run: PodRun) -> dict[str, str]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "POD_IP": run.ip, "POD_NAME": run.name}
        for item in container.get("env") or []:
            if "value" in item:  # valueFrom (secrets, field refs) is not simulated
                env[item["name"]] = str(item["value"])
        return env

    def _tend(self, run: PodRun) -> None:
        for c in run.containers:
            if c.argv is None:
                continue
            if c.proc is not None and not c.running():
                code = c.proc.returncode
                c.restarts += 1
                c.last_terminated = {
                    "exitCode": code,
                    "reason": "Completed" if code == 0 else "Error",
                    "startedAt": c.started_at,
                    "finishedAt": now_text(),
                }
                c.proc, c.ready = None, False
                c.restart_at = time.monotonic() + RESTART_BACKOFF_SECONDS
            if c.proc is None and time.monotonic() >= c.restart_at:
                c.start(self._env(c.spec, run), run.workdir)
                self._started(c)
            url = readiness_url(c.spec, run.ip)
            c.ready = c.running() and (url is None or _probe(url))
        self._write_status(run)

    def _terminate(self, meta: Mapping[str, Any], run: PodRun | None) -> None:
        """SIGTERM, wait for the containers (at most the grace period), then confirm."""
        if run is not None:
            if run.stop_deadline is None:
                run.stop_deadline = time.monotonic() + run.grace_seconds
                self._signal(run, signal.SIGTERM)
            if any(c.running() for c in run.containers):
                if time.monotonic() < run.stop_deadline:
                    return
                self._signal(run, signal.SIGKILL)
            self._forget(run)
        with contextlib.suppress(client.ApiException):
            self.core.delete_namespaced_pod(meta["name"], meta["namespace"], grace_period_seconds=0)

    # --- helpers -------------------------------------------------------------------------
    def _write_status(self, run: PodRun) -> None:
        status = run.status()
        if status == run.last_status:
            return
        replace_status(self.core, run.namespace, run.name, status)
        run.last_status = status

    def _signal(self, run: PodRun, sig: int) -> None:
        for c in run.containers:
            if c.running() and c.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(c.proc.pid, sig)

    def _target_path(self, run: PodRun) -> Path:
        return self.targets_dir / f"pod-{run.namespace}-{run.name}.json"

    def _forget(self, run: PodRun) -> None:
        for c in run.containers:
            if c.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    c.proc.wait(timeout=1)
        self._target_path(run).unlink(missing_ok=True)
        self.runs.pop(run.uid, None)
        self._free_ips.append(run.ip)
