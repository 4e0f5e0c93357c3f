"""The GPU as the agent sees it, behind one small interface: the real one talks to NVML
(pynvml, from nvidia-ml-py); tests use a fake with the same shape."""

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Device:
    index: int
    uuid: str
    utilization_percent: int  # share of time a kernel ran, over the driver's last interval
    memory_used_bytes: int
    memory_total_bytes: int


@dataclass(frozen=True)
class Process:
    pid: int
    gpu_index: int
    memory_used_bytes: int | None  # None: the driver cannot say (e.g. MIG, WDDM)


class GpuError(Exception):
    """NVML failed for one device (lost, unsupported); the others still count."""


class Gpus(Protocol):
    def devices(self) -> list[Device]: ...

    def processes(self, index: int) -> list[Process]: ...


class NvmlGpus:
    """The real GPUs. Construction fails with GpuError when NVML is missing (no driver)."""

    def __init__(self) -> None:
        try:
            import pynvml

            pynvml.nvmlInit()
        except Exception as exc:  # ImportError, NVMLError_LibraryNotFound, DriverNotLoaded
            raise GpuError(f"NVML unavailable: {exc}") from exc
        self._nvml = pynvml

    def _handle(self, index: int) -> object:
        return self._nvml.nvmlDeviceGetHandleByIndex(index)

    def devices(self) -> list[Device]:
        nvml, found = self._nvml, []
        for index in range(nvml.nvmlDeviceGetCount()):
            try:
                handle = self._handle(index)
                uuid = nvml.nvmlDeviceGetUUID(handle)
                rates = nvml.nvmlDeviceGetUtilizationRates(handle)
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
            except nvml.NVMLError as exc:
                raise GpuError(f"GPU {index}: {exc}") from exc
            found.append(
                Device(
                    index,
                    uuid if isinstance(uuid, str) else uuid.decode(),
                    int(rates.gpu),
                    int(memory.used),
                    int(memory.total),
                )
            )
        return found

    def processes(self, index: int) -> list[Process]:
        nvml = self._nvml
        try:
            handle = self._handle(index)
            running = [
                *nvml.nvmlDeviceGetComputeRunningProcesses(handle),
                *nvml.nvmlDeviceGetGraphicsRunningProcesses(handle),
            ]
        except nvml.NVMLError as exc:
            raise GpuError(f"GPU {index} processes: {exc}") from exc
        return [
            Process(p.pid, index, p.usedGpuMemory if isinstance(p.usedGpuMemory, int) else None)
            for p in running
        ]
