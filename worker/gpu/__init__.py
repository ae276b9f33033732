"""GPU telemetry: NVML first, then nvidia-smi, amd-smi/rocm-smi or ioreg; null where unreadable.

``read_gpus()`` is the one-shot read other modules use (fit verdicts, the hello message);
``GpuSampler`` keeps a bounded history and publishes ``"gpu"`` events for the dashboard.
"""

from worker.gpu.probe import GpuProbe, candidate_probes, read_gpus
from worker.gpu.reading import GpuProcess, GpuReading
from worker.gpu.sampler import GpuSample, GpuSampler

__all__ = [
    "GpuProbe",
    "GpuProcess",
    "GpuReading",
    "GpuSample",
    "GpuSampler",
    "candidate_probes",
    "read_gpus",
]
