"""The nvidia-smi fallback: pure CSV parsing, then the probe against a fake ``nvidia-smi``
executable on PATH (a real process; CI has no NVIDIA driver)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pynvml
import pytest
from gpu_fake_nvml import FakeNvml

from worker.gpu.errors import ProbeUnavailable
from worker.gpu.nvidia_smi import NvidiaSmiProbe, parse_apps_csv, parse_gpu_csv
from worker.gpu.nvml import NvmlProbe
from worker.gpu.probe import read_gpus

DATA = Path(__file__).parent / "data"
MIB = 1024 * 1024
GPU_CSV = (DATA / "nvidia-smi-query-gpu.csv").read_text()
APPS_CSV = (DATA / "nvidia-smi-query-apps.csv").read_text()


def test_parse_gpu_csv_turns_na_and_not_supported_into_null() -> None:
    h100, rtx = parse_gpu_csv(GPU_CSV)
    assert (h100.index, h100.name, h100.utilization) == (0, "NVIDIA H100 80GB HBM3", 0.0)
    assert h100.memory_total == 81559 * MIB and h100.memory_used == 2575 * MIB
    assert h100.temperature == 37.0 and h100.power_w == pytest.approx(80.1)
    assert h100.source == "nvidia-smi"
    assert rtx.utilization is None
    assert rtx.temperature is None
    assert rtx.power_w is None
    assert rtx.memory_total == 12288 * MIB


def test_parse_apps_groups_processes_by_gpu_uuid() -> None:
    apps = parse_apps_csv(APPS_CSV)
    (h100,) = parse_gpu_csv(GPU_CSV, apps)[:1]
    assert [(p.pid, p.name, p.memory_used) for p in h100.processes] == [
        (399, "/usr/bin/python3", 2566 * MIB),
        (1402, "ollama", None),
    ]


def test_truncated_and_blank_lines_are_skipped() -> None:
    text = GPU_CSV + "\n\n2, GPU-x, Half a line\n"
    assert len(parse_gpu_csv(text)) == 2
    assert parse_gpu_csv("") == []


def _install_fake(bin_dir: Path, body: str, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "nvidia-smi"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")


def _working_fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    body = f"""
case "$1" in
  --query-gpu=index,uuid,name,utilization.gpu,memory.total,memory.used,temperature.gpu,power.draw)
    cat '{DATA / "nvidia-smi-query-gpu.csv"}' ;;
  --query-compute-apps=gpu_uuid,pid,process_name,used_memory)
    cat '{DATA / "nvidia-smi-query-apps.csv"}' ;;
  *) echo "unexpected arguments: $*" >&2; exit 2 ;;
esac
"""
    _install_fake(tmp_path / "bin", body, monkeypatch)


def test_probe_runs_the_tool_and_reads_devices_and_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _working_fake(tmp_path, monkeypatch)
    probe = NvidiaSmiProbe()
    probe.open()
    readings = probe.read()
    probe.close()
    assert [r.name for r in readings] == ["NVIDIA H100 80GB HBM3", "NVIDIA GeForce RTX 3060"]
    assert len(readings[0].processes) == 2


def test_read_gpus_falls_back_to_nvidia_smi_when_nvml_cannot_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _working_fake(tmp_path, monkeypatch)
    no_library = FakeNvml([], init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    readings = read_gpus([NvmlProbe(no_library), NvidiaSmiProbe()])
    assert [r.source for r in readings] == ["nvidia-smi", "nvidia-smi"]


def test_a_failing_tool_is_unavailable_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = 'echo "NVIDIA-SMI has failed because it couldn\'t communicate with the driver" >&2\n'
    _install_fake(tmp_path / "bin", body + "exit 9\n", monkeypatch)
    with pytest.raises(ProbeUnavailable, match="exited 9: NVIDIA-SMI has failed"):
        NvidiaSmiProbe().open()
    assert read_gpus([NvidiaSmiProbe()]) == []


def test_a_hung_tool_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install_fake(tmp_path / "bin", "exec sleep 30\n", monkeypatch)
    with pytest.raises(ProbeUnavailable, match="timed out"):
        NvidiaSmiProbe(timeout_s=0.5).open()


def test_missing_tool_is_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(ProbeUnavailable, match="not on PATH"):
        NvidiaSmiProbe().open()
