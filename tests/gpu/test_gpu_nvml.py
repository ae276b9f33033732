"""The NVML probe against a fake NVML library (CI has no NVIDIA GPU; see gpu_fake_nvml.py)."""

from __future__ import annotations

import pynvml
import pytest
from gpu_fake_nvml import MIB, NOT_AVAILABLE, FakeDevice, FakeNvml

from worker.gpu.errors import ProbeUnavailable
from worker.gpu.nvml import NvmlProbe
from worker.gpu.probe import read_gpus


def _names(pid: int) -> str | None:
    return {399: "python3", 512: "Xorg"}.get(pid)


def test_reads_every_value_of_every_gpu_with_the_v2_memory_api() -> None:
    lib = FakeNvml([FakeDevice(), FakeDevice(uuid="GPU-second", util=90, compute=[])])
    probe = NvmlProbe(lib, process_name=_names)
    probe.open()
    first, second = probe.read()
    probe.close()

    assert first.index == 0 and second.index == 1
    assert first.name == "NVIDIA H100 80GB HBM3"
    assert first.uuid == "GPU-5f0c0a4e-1b2c-4d5e-8f90-123456789abc"
    assert first.utilization == 37.0
    assert first.memory_total == 81559 * MIB
    assert first.memory_used == 2574 * MIB  # v2: excludes the 480 MiB the driver reserves
    assert first.temperature == 37.0
    assert first.power_w == pytest.approx(80.108)
    assert [(p.pid, p.name, p.memory_used) for p in first.processes] == [
        (399, "python3", 2566 * MIB)
    ]
    assert first.source == "nvml"
    assert second.utilization == 90.0 and second.processes == ()
    assert lib.initialised == 0, "close() shuts NVML down again"


def test_each_unsupported_query_is_null_and_the_rest_survives() -> None:
    device = FakeDevice(broken={"power", "temperature", "util", "uuid", "compute"})
    probe = NvmlProbe(FakeNvml([device]), process_name=_names)
    probe.open()
    (reading,) = probe.read()
    assert reading.power_w is None
    assert reading.temperature is None
    assert reading.utilization is None
    assert reading.uuid is None
    assert reading.processes == ()
    assert reading.memory_used == 2574 * MIB, "memory is still read"
    assert reading.name == "NVIDIA H100 80GB HBM3"


def test_memory_falls_back_to_v1_on_drivers_without_v2() -> None:
    lib = FakeNvml([FakeDevice()], has_memory_v2=False)
    probe = NvmlProbe(lib, process_name=_names)
    probe.open()
    (reading,) = probe.read()
    assert reading.memory_used == (2574 + 480) * MIB
    assert "memory_v2" in lib.calls and "memory_v1" in lib.calls


def test_both_memory_calls_failing_gives_null_memory() -> None:
    device = FakeDevice(broken={"memory_v2", "memory_v1"})
    probe = NvmlProbe(FakeNvml([device]), process_name=_names)
    probe.open()
    (reading,) = probe.read()
    assert reading.memory_used is None and reading.memory_total is None


def test_processes_merge_compute_and_graphics_and_hide_unavailable_memory() -> None:
    device = FakeDevice(
        compute=[(399, 2566 * MIB), (700, NOT_AVAILABLE)],
        graphics=[(512, 64 * MIB), (399, 1)],  # 399 appears twice: counted once, compute wins
    )
    probe = NvmlProbe(FakeNvml([device]), process_name=_names)
    probe.open()
    (reading,) = probe.read()
    assert [(p.pid, p.memory_used, p.name) for p in reading.processes] == [
        (399, 2566 * MIB, "python3"),
        (512, 64 * MIB, "Xorg"),
        (700, None, None),
    ]


def test_bytes_names_from_old_bindings_are_decoded() -> None:
    probe = NvmlProbe(FakeNvml([FakeDevice(name=b"Tesla T4")]), process_name=_names)
    probe.open()
    assert probe.read()[0].name == "Tesla T4"


def test_a_lost_handle_keeps_the_gpu_listed_with_null_values() -> None:
    lib = FakeNvml([FakeDevice(broken={"handle"}), FakeDevice()])
    probe = NvmlProbe(lib, process_name=_names)
    probe.open()
    lost, fine = probe.read()
    assert lost.name == "GPU 0" and lost.memory_total is None and lost.utilization is None
    assert fine.memory_total == 81559 * MIB


@pytest.mark.parametrize(
    "code", [pynvml.NVML_ERROR_LIBRARY_NOT_FOUND, pynvml.NVML_ERROR_DRIVER_NOT_LOADED]
)
def test_no_driver_makes_the_probe_unavailable(code: int) -> None:
    probe = NvmlProbe(FakeNvml([FakeDevice()], init_error=code))
    with pytest.raises(ProbeUnavailable, match="NVML is not available"):
        probe.open()


def test_a_driver_without_gpus_is_unavailable_and_shut_down() -> None:
    lib = FakeNvml([])
    with pytest.raises(ProbeUnavailable, match="no GPU"):
        NvmlProbe(lib).open()
    assert lib.initialised == 0


def test_read_gpus_never_raises_and_returns_empty_without_a_source() -> None:
    lib = FakeNvml([], init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    assert read_gpus([NvmlProbe(lib)]) == []


def test_read_gpus_one_shot_opens_and_closes() -> None:
    lib = FakeNvml([FakeDevice()])
    readings = read_gpus([NvmlProbe(lib, process_name=_names)])
    assert [r.name for r in readings] == ["NVIDIA H100 80GB HBM3"]
    assert lib.initialised == 0


def test_reading_dict_has_the_status_document_keys() -> None:
    probe = NvmlProbe(FakeNvml([FakeDevice()]), process_name=_names)
    probe.open()
    data = probe.read()[0].as_dict()
    for key in (
        "index",
        "name",
        "utilization",
        "memory_used",
        "memory_total",
        "temperature",
        "power_w",
        "uuid",
        "processes",
    ):
        assert key in data
    assert data["processes"] == [{"pid": 399, "name": "python3", "memory_used": 2566 * MIB}]
