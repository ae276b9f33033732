"""AMD (amd-smi, rocm-smi) and Apple (ioreg) parsers against recorded tool output, and the AMD probe
against a fake ``amd-smi`` on PATH. There is no AMD or Apple GPU here: the files under data/ follow
the JSON/plist shapes these tools print (including the quirks: "N/A" values, a warning line before
the JSON, the ROCm 6.4 ``gpu_data`` wrapper)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from worker.gpu.amd import (
    AmdSmiProbe,
    RocmSmiProbe,
    parse_amd_smi_metric,
    parse_amd_smi_static,
    parse_rocm_smi,
)
from worker.gpu.apple import parse_ioreg
from worker.gpu.probe import read_gpus

DATA = Path(__file__).parent / "data"
MIB = 1024 * 1024


def _json(name: str) -> object:
    text = (DATA / name).read_text()
    return json.loads(text[text.index("[") if "WARNING" in text else 0 :])


def test_amd_smi_metric_list_shape() -> None:
    names = parse_amd_smi_static(_json("amd-smi-static-asic.json"))
    busy, idle = parse_amd_smi_metric(_json("amd-smi-metric-rocm62.json"), names)
    assert busy.name == "AMD Instinct MI300X"
    assert busy.utilization == 97.0
    assert busy.memory_used == 150211 * MIB and busy.memory_total == 196592 * MIB
    assert busy.temperature == 71.0, "edge is N/A on MI300X: the hotspot sensor is used"
    assert busy.power_w == 612.0
    assert busy.source == "amd-smi"
    assert (idle.index, idle.utilization, idle.memory_used) == (1, 0.0, 283 * MIB)


def test_amd_smi_metric_gpu_data_shape_with_na_sections() -> None:
    card, unknown = parse_amd_smi_metric(_json("amd-smi-metric-rocm64.json"))
    assert card.name == "AMD GPU 0"
    assert card.temperature == 44.0
    assert card.power_w == 23.0, "socket_power N/A falls back to average_socket_power"
    assert card.memory_total == 20464 * MIB
    assert unknown.index == 1
    assert (unknown.utilization, unknown.memory_used, unknown.temperature, unknown.power_w) == (
        None,
        None,
        None,
        None,
    )


def test_rocm_smi_cards() -> None:
    xtx, apu = parse_rocm_smi(_json("rocm-smi.json"))
    assert xtx.name == "Radeon RX 7900 XTX"
    assert xtx.utilization == 37.0
    assert xtx.temperature == 44.0
    assert xtx.power_w == 22.0
    assert xtx.memory_total == 25753026560 and xtx.memory_used == 1331675136
    assert apu.name == "AMD GPU 1"
    assert apu.utilization is None and apu.temperature is None
    assert apu.power_w == pytest.approx(8.015)


@pytest.mark.parametrize("garbage", [None, "text", 3, [1, 2], {"gpu_data": "N/A"}, {}])
def test_amd_parsers_never_raise_on_unexpected_shapes(garbage: object) -> None:
    assert isinstance(parse_amd_smi_metric(garbage), list)
    assert isinstance(parse_rocm_smi(garbage), list)
    assert isinstance(parse_amd_smi_static(garbage), dict)


def test_ioreg_plist_apple_silicon() -> None:
    (gpu,) = parse_ioreg((DATA / "ioreg-ioaccelerator.plist").read_bytes(), 32 * 1024**3)
    assert gpu.name == "Apple M2 Pro (19-core GPU)"
    assert gpu.utilization == 23.0
    assert gpu.memory_used == 2684354560
    assert gpu.memory_total == 32 * 1024**3, "unified memory: the system's RAM"
    assert gpu.temperature is None and gpu.power_w is None
    assert gpu.source == "ioreg"


@pytest.mark.parametrize("data", [b"", b"not a plist", b"<?xml version='1.0'?><plist><dict/>"])
def test_ioreg_unreadable_output_is_no_gpu(data: bytes) -> None:
    assert parse_ioreg(data, None) == []


def _fake_tool(tmp_path: Path, name: str, body: str, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / name
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")


def test_amd_smi_probe_runs_the_tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    body = f"""
case "$1 $2" in
  "static --asic") cat '{DATA / "amd-smi-static-asic.json"}' ;;
  "metric --json") cat '{DATA / "amd-smi-metric-rocm62.json"}' ;;
  *) exit 2 ;;
esac
"""
    _fake_tool(tmp_path, "amd-smi", body, monkeypatch)
    readings = read_gpus([AmdSmiProbe()])
    assert [(r.name, r.utilization) for r in readings] == [
        ("AMD Instinct MI300X", 97.0),
        ("AMD Instinct MI300X", 0.0),
    ]


def test_rocm_smi_probe_runs_the_tool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_tool(tmp_path, "rocm-smi", f"cat '{DATA / 'rocm-smi.json'}'\n", monkeypatch)
    assert [r.name for r in read_gpus([RocmSmiProbe()])] == ["Radeon RX 7900 XTX", "AMD GPU 1"]


def test_amd_smi_without_json_is_no_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_tool(tmp_path, "amd-smi", "echo 'amdsmi library not found'\n", monkeypatch)
    assert read_gpus([AmdSmiProbe()]) == []
