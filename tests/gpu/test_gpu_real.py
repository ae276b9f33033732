"""Against a real NVIDIA GPU when there is one (NVML initialises); skipped cleanly otherwise."""

from __future__ import annotations

import pytest

from worker.gpu.nvml import NvmlProbe
from worker.gpu.probe import read_gpus


def _nvml_works() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        return True
    except Exception:
        return False


pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not _nvml_works(), reason="no NVIDIA GPU/driver: NVML does not initialise"),
]


def test_real_gpu_readings_are_complete_and_sane() -> None:
    readings = read_gpus()
    assert readings, "NVML initialised, so at least one GPU is read"
    for gpu in readings:
        assert gpu.source == "nvml"
        assert gpu.name and gpu.uuid
        assert gpu.memory_total and gpu.memory_total > 1024**3
        assert gpu.memory_used is not None and 0 <= gpu.memory_used <= gpu.memory_total
        assert gpu.utilization is None or 0 <= gpu.utilization <= 100
        assert gpu.temperature is None or 0 < gpu.temperature < 120
        assert gpu.power_w is None or 0 < gpu.power_w < 2000


def test_real_probe_reads_repeatedly() -> None:
    probe = NvmlProbe()
    probe.open()
    try:
        first, second = probe.read(), probe.read()
    finally:
        probe.close()
    assert [g.uuid for g in first] == [g.uuid for g in second]
