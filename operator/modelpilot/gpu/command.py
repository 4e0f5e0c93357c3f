"""`modelpilot gpu-agent`: NVML (or nothing, said once), the node's pods, /metrics."""

import logging
import signal
import threading
from pathlib import Path

from kubernetes import config
from prometheus_client import REGISTRY, start_http_server

from modelpilot.gpu.agent import AgentCollector, NodePods, read_cgroup
from modelpilot.gpu.nvml import GpuError, NvmlGpus

log = logging.getLogger("modelpilot.gpu-agent")


def run_agent(listen: str, node_name: str, proc: str, pod_refresh: float) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    gpus: NvmlGpus | None
    try:
        gpus = NvmlGpus()
    except GpuError as exc:
        # No driver or no GPU: say so once and keep serving modelpilot_gpu_agent_up 0
        # rather than crash-loop.
        log.error("%s; serving modelpilot_gpu_agent_up 0", exc)
        gpus = None
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    REGISTRY.register(
        AgentCollector(gpus, read_cgroup(Path(proc)), NodePods(node_name, pod_refresh))
    )
    host, _, port = listen.rpartition(":")
    start_http_server(int(port), addr=host or "0.0.0.0")
    log.info("gpu-agent on %s for node %s", listen, node_name)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
