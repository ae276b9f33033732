"""Fit verdicts over hand-made machine profiles (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.fit import (
    GIB,
    FitKind,
    fit_verdict,
    kv_bytes_estimate,
    memory_needed,
    parse_parameters,
)
from worker.hardware import GpuMemory, MachineProfile, free_disk

H100 = GpuMemory("NVIDIA H100 80GB HBM3", 80 * GIB)
RTX = GpuMemory("NVIDIA GeForce RTX 4060", 8 * GIB)


def variant(size_gb: float, min_vram_gb: float | None = None) -> dict:
    return {
        "size_bytes": int(size_gb * GIB),
        "min_vram_bytes": int(min_vram_gb * GIB) if min_vram_gb else None,
    }


@pytest.mark.parametrize(
    ("profile", "size", "expected"),
    [
        (MachineProfile((H100,), 128 * GIB, 500 * GIB), 20, FitKind.GPU),
        (MachineProfile((H100,), 128 * GIB, 500 * GIB), 65, FitKind.GPU),
        (MachineProfile((H100,), 128 * GIB, 500 * GIB), 120, FitKind.PARTIAL),
        (MachineProfile((H100, H100), 256 * GIB, 500 * GIB), 120, FitKind.GPU),
        (MachineProfile((RTX,), 32 * GIB, 500 * GIB), 4, FitKind.GPU),
        (MachineProfile((RTX,), 32 * GIB, 500 * GIB), 13, FitKind.PARTIAL),
        (MachineProfile((RTX,), 32 * GIB, 500 * GIB), 40, FitKind.NO),
        (MachineProfile((), 16 * GIB, 500 * GIB), 4, FitKind.CPU),
        (MachineProfile((), 16 * GIB, 500 * GIB), 13, FitKind.NO),
        (MachineProfile((), 64 * GIB, 10 * GIB), 13, FitKind.NO),  # disk
        (MachineProfile((), 64 * GIB, None), 13, FitKind.CPU),  # disk unknown: not held against
        (MachineProfile((), 64 * GIB, 500 * GIB, unified_memory=True), 13, FitKind.GPU),
        (MachineProfile((), 16 * GIB, 500 * GIB, unified_memory=True), 13, FitKind.NO),
        (MachineProfile((GpuMemory("?", None),), 16 * GIB, 500 * GIB), 4, FitKind.CPU),
    ],
)
def test_verdicts(profile: MachineProfile, size: float, expected: FitKind) -> None:
    fit = fit_verdict(profile, variant(size))
    assert fit.verdict is expected, fit.reason
    assert str(fit.verdict) == expected.value
    assert fit.reason


def test_disk_shortage_names_needed_and_free() -> None:
    fit = fit_verdict(MachineProfile((H100,), 128 * GIB, 2 * GIB), variant(5))
    assert fit.verdict is FitKind.NO
    assert "disk" in fit.reason and "5.4 GB" in fit.reason and "2.1 GB free" in fit.reason


def test_installed_models_need_no_download_space() -> None:
    profile = MachineProfile((H100,), 128 * GIB, 0)
    assert fit_verdict(profile, variant(5), installed=True).verdict is FitKind.GPU


def test_min_vram_from_the_catalogue_wins_over_the_estimate() -> None:
    profile = MachineProfile((RTX,), 32 * GIB, 500 * GIB)
    assert fit_verdict(profile, variant(4)).verdict is FitKind.GPU
    assert fit_verdict(profile, variant(4, min_vram_gb=9)).verdict is FitKind.PARTIAL


def test_memory_counts_weights_and_the_kv_cache_at_the_default_context() -> None:
    # An 8B model: ~128 KiB of f16 KV per token, 8192 tokens by default = 1 GiB of KV.
    eight_b = memory_needed(5 * GIB, parameters="8B", context_length=131072)
    kv = kv_bytes_estimate(5 * GIB, "8B", 8192)
    assert abs(kv / (128 * 1024 * 8192) - 1) < 0.1
    assert eight_b == 5 * GIB + kv + 512 * 1024 * 1024
    # The model's own shorter context, a smaller builtin.max_context and q8_0 all cost less.
    assert memory_needed(5 * GIB, parameters="8B", context_length=4096) < eight_b
    assert memory_needed(5 * GIB, parameters="8B", max_context=2048) < eight_b
    assert memory_needed(5 * GIB, parameters="8B", kv_type="q8_0") < eight_b
    # Without a label the parameters come from the size (a Q4 file: ~1.7 per byte).
    assert kv_bytes_estimate(5 * GIB, None, 8192) > kv_bytes_estimate(GIB, None, 8192)
    assert [parse_parameters(x) for x in ("27B", "270M", "8x7B", "1.5B", "big")] == [
        27.0, 0.27, 56.0, 1.5, None
    ]  # fmt: skip


def test_a_long_context_can_tip_a_model_out_of_the_gpu() -> None:
    profile = MachineProfile((RTX,), 32 * GIB, 500 * GIB)
    model = {"size_bytes": int(6.5 * GIB), "parameters": "12B", "context_length": 131072}
    assert fit_verdict(profile, model, max_context=2048).verdict is FitKind.GPU
    tight = fit_verdict(profile, model, max_context=32768)
    assert tight.verdict is FitKind.PARTIAL


def test_unknown_size_is_unknown_not_a_guess() -> None:
    fit = fit_verdict(MachineProfile((), 16 * GIB, GIB), {"size_bytes": None})
    assert fit.verdict is FitKind.UNKNOWN


def test_catalogue_variant_objects_are_accepted() -> None:
    from worker.catalogue import sample_catalogue_bytes
    from worker.catalogue.parse import parse_catalogue_bytes

    gemma = parse_catalogue_bytes(sample_catalogue_bytes()).models[0].variants[0]
    assert fit_verdict(MachineProfile((), 8 * GIB, 100 * GIB), gemma).verdict is FitKind.CPU


def test_detect_reads_this_machine(tmp_path: Path) -> None:
    profile = MachineProfile.detect(tmp_path / "not" / "yet" / "created")
    assert profile.ram_total > 0
    assert profile.disk_free is not None and profile.disk_free > 0
    assert free_disk(tmp_path) == profile.disk_free or free_disk(tmp_path) is not None
