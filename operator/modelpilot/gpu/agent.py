"""`modelpilot gpu-agent`: per-GPU utilization and memory, attributed to the pods whose
processes use each GPU, as Prometheus series (sampled at each scrape)."""

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from modelpilot.gpu.cgroups import owner
from modelpilot.gpu.nvml import GpuError, Gpus

log = logging.getLogger("modelpilot.gpu-agent")
LABELS = ["namespace", "pod", "container", "gpu", "gpu_uuid"]


@dataclass(frozen=True)
class PodRef:
    namespace: str
    name: str
    containers: Mapping[str, str]  # container ID (no runtime prefix) -> container name


@dataclass(frozen=True)
class Row:
    labels: tuple[str, str, str, str, str]
    utilization_percent: int
    memory_used_bytes: int | None
    memory_total_bytes: int


def read_cgroup(proc: Path) -> Callable[[int], str | None]:
    def read(pid: int) -> str | None:
        try:
            return (proc / str(pid) / "cgroup").read_text()
        except OSError:  # the process ended, or another PID namespace
            return None

    return read


def sample(
    gpus: Gpus, cgroup_of: Callable[[int], str | None], pods: Mapping[str, PodRef]
) -> tuple[list[Row], list[str]]:
    """Rows per (pod, container, GPU) plus one per GPU with empty pod labels (the whole
    device); and the errors met (a lost GPU does not hide the others)."""
    rows, errors = [], []
    for device in gpus.devices():
        gpu = (str(device.index), device.uuid)
        rows.append(
            Row(
                ("", "", "", *gpu),
                device.utilization_percent,
                device.memory_used_bytes,
                device.memory_total_bytes,
            )
        )
        try:
            processes = gpus.processes(device.index)
        except GpuError as exc:
            errors.append(str(exc))
            continue
        used: dict[tuple[str, str, str], int | None] = defaultdict(int)
        for process in processes:
            cgroup = cgroup_of(process.pid)
            found = owner(cgroup) if cgroup else None
            pod = pods.get(found.pod_uid) if found else None
            if found is None or pod is None:
                continue
            container = pod.containers.get(found.container_id or "", "")
            key = (pod.namespace, pod.name, container)
            current = used[key]
            used[key] = (
                None
                if process.memory_used_bytes is None or current is None
                else current + process.memory_used_bytes
            )
        rows.extend(
            Row((*key, *gpu), device.utilization_percent, memory, device.memory_total_bytes)
            for key, memory in used.items()
        )
    return rows, errors


class AgentCollector(Collector):
    def __init__(
        self,
        gpus: Gpus | None,
        cgroup_of: Callable[[int], str | None],
        pods: Callable[[], Mapping[str, PodRef]],
    ) -> None:
        self.gpus, self.cgroup_of, self.pods = gpus, cgroup_of, pods

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("modelpilot_gpu_agent_up", "1 when NVML answered the last sample.")
        util = GaugeMetricFamily(
            "modelpilot_gpu_utilization_percent",
            "Share of time a kernel ran on the GPU.",
            labels=LABELS,
        )
        used = GaugeMetricFamily(
            "modelpilot_gpu_memory_used_bytes",
            "GPU memory held by the container's processes (or, with "
            "empty pod labels, the whole GPU's).",
            labels=LABELS,
        )
        total = GaugeMetricFamily(
            "modelpilot_gpu_memory_total_bytes", "GPU memory of the device.", labels=LABELS
        )
        ok = self.gpus is not None
        if self.gpus is not None:
            try:
                rows, errors = sample(self.gpus, self.cgroup_of, self.pods())
            except GpuError as exc:
                rows, errors, ok = [], [str(exc)], False
            for error in errors:
                log.warning("%s", error)
            for row in rows:
                util.add_metric(list(row.labels), row.utilization_percent)
                if row.memory_used_bytes is not None:
                    used.add_metric(list(row.labels), row.memory_used_bytes)
                total.add_metric(list(row.labels), row.memory_total_bytes)
        up.add_metric([], 1 if ok else 0)
        yield from (up, util, used, total)


class NodePods:
    """Pods on this node by UID, listed from the API server at most every `refresh` s."""

    def __init__(self, node: str, refresh: float = 30.0) -> None:
        self.node, self.refresh = node, refresh
        self._cache: dict[str, PodRef] = {}
        self._at = 0.0

    def __call__(self) -> Mapping[str, PodRef]:
        if time.monotonic() - self._at < self.refresh:
            return self._cache
        from kubernetes import client

        try:
            listed = client.CoreV1Api().list_pod_for_all_namespaces(
                field_selector=f"spec.nodeName={self.node}"
            )
        except Exception as exc:  # keep the last answer; try again next scrape
            log.warning("cannot list pods on %s: %s", self.node, exc)
            return self._cache
        self._cache = {
            pod.metadata.uid: PodRef(
                pod.metadata.namespace,
                pod.metadata.name,
                {
                    (cs.container_id or "").split("://")[-1]: cs.name
                    for cs in (pod.status.container_statuses or [])
                },
            )
            for pod in listed.items
        }
        self._at = time.monotonic()
        return self._cache
