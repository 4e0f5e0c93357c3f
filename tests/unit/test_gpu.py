from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest

from modelpilot.gpu.agent import AgentCollector, PodRef, sample
from modelpilot.gpu.cgroups import CgroupOwner, owner
from modelpilot.gpu.nvml import Device, GpuError, Process
from modelpilot.gpu.summary import MIB, per_model, per_pod

UID = "1f2d3c4b-aaaa-bbbb-cccc-0123456789ab"
CID = "a" * 64


def test_cgroup_flavours_name_the_pod_and_container() -> None:
    flavours = [
        # cgroup v1, cgroupfs driver
        f"12:memory:/kubepods/burstable/pod{UID}/{CID}\n1:name=systemd:/\n",
        # cgroup v1, systemd driver, containerd
        f"4:devices:/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
        f"{UID.replace('-', '_')}.slice/cri-containerd-{CID}.scope\n",
        # cgroup v2, systemd driver, CRI-O; Guaranteed QoS (no class in the path)
        f"0::/kubepods.slice/kubepods-pod{UID.replace('-', '_')}.slice/crio-{CID}.scope\n",
        # Docker with the systemd driver
        f"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod"
        f"{UID.replace('-', '_')}.slice/docker-{CID}.scope\n",
    ]
    for text in flavours:
        assert owner(text) == CgroupOwner(UID, CID), text
    assert owner(f"0::/kubepods/pod{UID}\n") == CgroupOwner(UID, None)  # the pod sandbox
    assert owner("0::/system.slice/sshd.service\n") is None


@dataclass
class FakeGpus:
    devices_: list[Device]
    processes_: dict[int, list[Process] | Exception] = field(default_factory=dict)

    def devices(self) -> list[Device]:
        return self.devices_

    def processes(self, index: int) -> list[Process]:
        found = self.processes_.get(index, [])
        if isinstance(found, Exception):
            raise found
        return found


PODS = {UID: PodRef("ml", "chat-0", {CID: "model"})}
GIB = 1024**3


def cgroups(pid: int) -> str | None:
    return {
        100: f"0::/kubepods/pod{UID}/{CID}",
        101: f"0::/kubepods/pod{UID}/{CID}",
        200: "0::/user.slice",
    }.get(pid)


def test_sampling_attributes_processes_to_pods() -> None:
    gpus = FakeGpus(
        [Device(0, "GPU-0", 87, 30 * GIB, 80 * GIB), Device(1, "GPU-1", 5, GIB, 80 * GIB)],
        {
            0: [
                Process(100, 0, 20 * GIB),
                Process(101, 0, 4 * GIB),
                Process(200, 0, GIB),
                Process(999, 0, GIB),
            ],  # 999: ended between the two calls
            1: GpuError("GPU 1 processes: Not Supported"),
        },
    )
    rows, errors = sample(gpus, cgroups, PODS)
    assert errors == ["GPU 1 processes: Not Supported"]
    by_labels = {r.labels: r for r in rows}
    chat = by_labels[("ml", "chat-0", "model", "0", "GPU-0")]
    assert (chat.utilization_percent, chat.memory_used_bytes, chat.memory_total_bytes) == (
        87,
        24 * GIB,
        80 * GIB,
    )
    assert by_labels[("", "", "", "1", "GPU-1")].memory_used_bytes == GIB  # device row
    assert len(rows) == 3


def test_export_and_nvml_missing() -> None:
    registry = CollectorRegistry()
    registry.register(
        AgentCollector(
            FakeGpus([Device(0, "GPU-0", 50, GIB, 2 * GIB)], {0: [Process(100, 0, None)]}),
            cgroups,
            lambda: PODS,
        )
    )
    text = generate_latest(registry).decode()
    assert "modelpilot_gpu_agent_up 1.0" in text
    labels = 'container="model",gpu="0",gpu_uuid="GPU-0",namespace="ml",pod="chat-0"'
    assert f"modelpilot_gpu_utilization_percent{{{labels}}} 50.0" in text
    # Memory per process unknown (MIG): no used series for the pod, never a zero.
    assert f"modelpilot_gpu_memory_used_bytes{{{labels}}}" not in text
    missing = CollectorRegistry()
    missing.register(AgentCollector(None, cgroups, lambda: PODS))
    text = generate_latest(missing).decode()
    assert "modelpilot_gpu_agent_up 0.0" in text
    assert "modelpilot_gpu_utilization_percent{" not in text


def test_lost_gpu_reports_down_not_a_crash() -> None:
    class Lost(FakeGpus):
        def devices(self) -> list[Device]:
            raise GpuError("GPU 0: GPU is lost")

    registry = CollectorRegistry()
    registry.register(AgentCollector(Lost([]), cgroups, lambda: PODS))
    assert "modelpilot_gpu_agent_up 0.0" in generate_latest(registry).decode()


def test_dcgm_and_agent_series_become_per_model_usage() -> None:
    def s(value: float, **labels: str) -> dict[str, object]:
        return {"metric": labels, "value": [0, str(value)]}

    results = {
        # DCGM through Prometheus Operator: its pod labels moved to exported_*; MiB.
        "dcgm_util": [
            s(
                80,
                exported_namespace="ml",
                exported_pod="a-0",
                namespace="gpu",
                pod="dcgm-x",
                UUID="G0",
            ),
            s(60, exported_namespace="ml", exported_pod="a-1", UUID="G1"),
        ],
        "dcgm_used": [
            s(1024, exported_namespace="ml", exported_pod="a-0", UUID="G0"),
            s(2048, exported_namespace="ml", exported_pod="a-1", UUID="G1"),
        ],
        "dcgm_free": [
            s(3072, exported_namespace="ml", exported_pod="a-0", UUID="G0"),
            s(2048, exported_namespace="ml", exported_pod="a-1", UUID="G1"),
        ],
        "agent_util": [s(40, namespace="ml", pod="b-0", gpu="0")],
        "agent_used": [s(5e9, namespace="ml", pod="b-0", gpu="0")],
        "agent_total": [s(8e9, namespace="ml", pod="b-0", gpu="0")],
    }
    usage = per_pod(results)
    assert usage[("ml", "a-0")].memory_used_bytes == 1024 * MIB
    assert usage[("ml", "a-0")].memory_total_bytes == 4096 * MIB
    models = per_model(
        usage, {("ml", "a"): ["a-0", "a-1"], ("ml", "b"): ["b-0"], ("ml", "cpu-only"): ["c-0"]}
    )
    assert models[("ml", "a")] == {
        "utilizationPercent": 70,
        "memoryUsedBytes": 1536 * MIB,
        "memoryTotalBytes": 4096 * MIB,
    }
    assert models[("ml", "b")]["utilizationPercent"] == 40
    assert ("ml", "cpu-only") not in models  # absent, not zero
