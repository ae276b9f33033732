"""Each speed bench runs end to end in its ``--quick`` configuration, so the benches never rot.

Real processes throughout: ``pendra sandbox`` and ``pendra --no-ui`` from this checkout, the vLLM
emulator in its own process, the real Gemma 3 270M for the decode benches (marked slow). Numbers
from a quick run mean nothing; the test checks that every bench measures and prints its ratios.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(120)


def run_bench(name: str, *extra: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / f"bench_{name}.py"), "--quick", *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert proc.returncode == 0, f"bench_{name} failed:\n{proc.stderr[-3000:]}"
    return proc


def ratios(stderr: str) -> dict[str, str]:
    """The ``label=value`` pairs of the ratios line a bench prints on stderr."""
    line = next(ln for ln in stderr.splitlines() if ln.startswith("bench ratios | "))
    return dict(part.split("=", 1) for part in line.split(" | ", 2)[2].split("; "))


def test_relay_bench_measures_both_paths(clean_env: dict[str, str]) -> None:
    proc = run_bench("relay", env=clean_env)
    found = ratios(proc.stderr)
    assert float(found["throughput"].rstrip("x")) > 0
    assert found["added p50"].endswith(" ms")
    assert "| throughput |" in proc.stdout and "chunks/s" in proc.stdout


def test_ttft_relay_bench_splits_the_relayed_path_into_hops(clean_env: dict[str, str]) -> None:
    """Real sandbox and worker under the hop probes, the emulator in its own process: every hop
    of the relayed path is measured (a probe that stopped matching would drop its row)."""
    proc = run_bench("ttft_relay", env=clean_env)
    found = ratios(proc.stderr)
    assert found["added p50"].endswith(" ms") and float(found["TTFT p50"].rstrip("x")) > 0
    hops = [label for label in found if label.startswith("hop: ")]
    assert len(hops) == 10, sorted(found)
    assert "| hop: WebSocket → worker |" in proc.stdout


def test_private_bench_measures_both_paths(clean_env: dict[str, str]) -> None:
    proc = run_bench("private", env=clean_env)
    found = ratios(proc.stderr)
    assert float(found["throughput"].rstrip("x")) > 0
    assert float(found["unary round trip p50"].rstrip("x")) > 0
    assert "| throughput |" in proc.stdout and "| private | plaintext |" in proc.stdout


def test_idle_bench_measures_a_connected_worker(clean_env: dict[str, str]) -> None:
    proc = run_bench("idle", env=clean_env)
    found = ratios(proc.stderr)
    rss = float(found["RSS (peak) vs goal"].split()[0])
    assert 20 < rss < 2000  # a live Python worker, not a dead pid or a unit mix-up
    assert "| CPU (one core) |" in proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "labels"),
    [
        ("decode", {"vs raw loop, best round", "vs raw loop, median round"}),
        ("runner", {"single stream, best round", "resident memory (worker + runner)"}),
        (
            "engine_step",
            {
                "1 sequence(s)",
                "8 sequence(s)",
                "greedy pick per sequence (argmax vs llama.cpp's greedy chain)",
            },
        ),
        ("concurrency", {"1 stream(s)", "2 stream(s)"}),
        ("ttft", {"TTFT p50", "added p50"}),
        ("prefix_cache", {"2nd turn TTFT vs 1st turn", "no shared prefix: prefill, on vs off"}),
    ],
)
def test_model_benches_run_on_gemma(
    name: str, labels: set[str], gemma_gguf: Path, clean_env: dict[str, str]
) -> None:
    proc = run_bench(name, "--model", str(gemma_gguf), "--threads", "1", env=clean_env)
    found = ratios(proc.stderr)
    assert labels <= set(found)
    for label in labels:
        assert re.fullmatch(r"-?[\d.,]+(x| ms| tok/s| MB| µs)", found[label]), found[label]
    assert "| measure |" in proc.stdout


def test_run_py_collects_a_speed_section(clean_env: dict[str, str]) -> None:
    """``bench/run.py`` (the one command for every bench) runs ours and prints the section."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "idle", "--dry-run", "--quick"],
        cwd=ROOT,
        env={**clean_env, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])},
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "## Worker at idle" in proc.stdout
