"""Fit verdicts over hand-made machine profiles (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.fit import GIB, FitKind, fit_verdict, memory_needed
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
    assert memory_needed(GIB) == int(1.2 * GIB) + 512 * 1024 * 1024


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
