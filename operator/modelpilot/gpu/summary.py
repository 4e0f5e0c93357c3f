"""GPU usage per model from Prometheus series: the agent's, or NVIDIA DCGM exporter's.

DCGM exporter reports framebuffer memory in MiB and, scraped through Prometheus Operator
without honorLabels, moves its own pod labels to `exported_namespace` / `exported_pod`.
"""

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

PodKey = tuple[str, str]  # (namespace, pod)
MIB = 1024 * 1024
WINDOW = "5m"

QUERIES = {
    "agent_util": f"avg by (namespace, pod, gpu) (avg_over_time("
    f'modelpilot_gpu_utilization_percent{{pod!=""}}[{WINDOW}]))',
    "agent_used": f"sum by (namespace, pod, gpu) (avg_over_time("
    f'modelpilot_gpu_memory_used_bytes{{pod!=""}}[{WINDOW}]))',
    "agent_total": f"max by (namespace, pod, gpu) (avg_over_time("
    f'modelpilot_gpu_memory_total_bytes{{pod!=""}}[{WINDOW}]))',
    "dcgm_util": f"avg_over_time(DCGM_FI_DEV_GPU_UTIL[{WINDOW}])",
    "dcgm_used": f"avg_over_time(DCGM_FI_DEV_FB_USED[{WINDOW}])",
    "dcgm_free": f"avg_over_time(DCGM_FI_DEV_FB_FREE[{WINDOW}])",
}


class GpuUsage(BaseModel):
    utilization_percent: float
    memory_used_bytes: float
    memory_total_bytes: float


def _pod_of(labels: Mapping[str, str]) -> PodKey | None:
    namespace = labels.get("exported_namespace") or labels.get("namespace")
    pod = labels.get("exported_pod") or labels.get("pod")
    return (namespace, pod) if namespace and pod else None


def per_pod(results: Mapping[str, Iterable[Mapping[str, Any]]]) -> dict[PodKey, GpuUsage]:
    """Instant-query results -> usage per pod: utilization averaged over its GPUs, memory
    summed over them. The agent's series win over DCGM's for the same pod."""
    found: dict[str, dict[PodKey, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for name, result in results.items():
        source = name.split("_")[0]
        for series in result:
            labels = series.get("metric", {})
            pod = _pod_of(labels)
            value = float(series["value"][1])
            if pod is None or value != value:
                continue
            gpu = labels.get("gpu_uuid") or labels.get("UUID") or labels.get("gpu", "0")
            found[f"{source}:{name.split('_', 1)[1]}"][pod][gpu] = value
    usage = {}
    for source, scale in (("dcgm", MIB), ("agent", 1)):
        utils = found.get(f"{source}:util", {})
        for pod, by_gpu in utils.items():
            used = found.get(f"{source}:used", {}).get(pod, {})
            if source == "dcgm":
                free = found.get("dcgm:free", {}).get(pod, {})
                total = {g: used.get(g, 0.0) + free[g] for g in free}
            else:
                total = found.get("agent:total", {}).get(pod, {})
            usage[pod] = GpuUsage(
                utilization_percent=statistics.mean(by_gpu.values()),
                memory_used_bytes=sum(used.values()) * scale,
                memory_total_bytes=sum(total.values()) * scale,
            )
    return usage


def per_model(
    usage: Mapping[PodKey, GpuUsage], pods_of: Mapping[tuple[str, str], Iterable[str]]
) -> dict[tuple[str, str], dict[str, int]]:
    """status.gpu per model: averages over its pods that have GPU series (integers). A
    model with none gets no entry: absent, not zero."""
    out = {}
    for (namespace, model), pods in pods_of.items():
        seen = [usage[(namespace, p)] for p in pods if (namespace, p) in usage]
        if seen:
            out[(namespace, model)] = {
                "utilizationPercent": round(statistics.mean(u.utilization_percent for u in seen)),
                "memoryUsedBytes": round(statistics.mean(u.memory_used_bytes for u in seen)),
                "memoryTotalBytes": round(statistics.mean(u.memory_total_bytes for u in seen)),
            }
    return out
