"""The llama-cpp-python build choice for fake hosts (pure), plus the parsers and the venv stamp.

The hosts are fake because this machine has no GPU: each case is the facts nvidia-smi / the OS would
report on such a host.
"""

from __future__ import annotations

import http.server
import shlex
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from installer import accel
from installer.accel import AccelFacts, NvidiaInfo, choose_build

BASE = accel.WHEEL_INDEX_BASE


def linux(**kw: object) -> AccelFacts:
    fields: dict[str, object] = {"os": "linux", "arch": "x86_64", "python": (3, 11), "cpu_count": 2}
    return AccelFacts(**{**fields, **kw})  # type: ignore[arg-type]


def test_no_gpu_gets_the_cpu_build() -> None:
    choice = choose_build(linux())
    assert (choice.accel, choice.source_accel, choice.cmake_args) == ("cpu", "cpu", "")
    assert choice.index_url == f"{BASE}/cpu"
    assert choice.build_minutes == 8  # the measured ~7m45s on 2 cores
    assert choice.warnings == ()


def test_cuda_12_driver_picks_newest_cu12_index() -> None:
    nvidia = NvidiaInfo("550.54.15", cuda_version=(12, 4), compute_caps=((8, 9),), names=("L4",))
    choice = choose_build(linux(nvidia=nvidia, nvcc=True))
    assert choice.accel == "cuda"
    assert choice.index_url == f"{BASE}/cu124"
    assert choice.label == "CUDA 12.4"
    assert choice.source_accel == "cuda"
    assert choice.cmake_args == "-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=89-real"


def test_cuda_13_driver_on_hopper_picks_cu13_index() -> None:
    nvidia = NvidiaInfo("580.65.06", cuda_version=(13, 0), compute_caps=((9, 0),))
    choice = choose_build(linux(nvidia=nvidia))
    assert choice.index_url == f"{BASE}/cu130"
    assert choice.label == "CUDA 13.0"


def test_cuda_13_driver_with_pascal_gpu_stays_on_cuda_12() -> None:
    # cu13x wheels need compute capability >= 7.5; a P100 (6.0) must get cu12x.
    nvidia = NvidiaInfo("580.65.06", cuda_version=(13, 2), compute_caps=((6, 0),))
    assert choose_build(linux(nvidia=nvidia)).index_url == f"{BASE}/cu125"


def test_unknown_compute_capability_avoids_cuda_13() -> None:
    nvidia = NvidiaInfo("590.10", cuda_version=(13, 2))
    assert choose_build(linux(nvidia=nvidia)).index_url == f"{BASE}/cu125"


def test_cuda_version_inferred_from_driver_when_banner_lacks_it() -> None:
    nvidia = NvidiaInfo("535.104.05", compute_caps=((8, 0),))
    assert choose_build(linux(nvidia=nvidia)).index_url == f"{BASE}/cu122"


def test_mixed_gpus_honour_the_oldest_and_newest() -> None:
    # cu118 supports 6.0-8.9 only, so an H100 (9.0) next to a V100 on an 11.8 driver has no wheel.
    nvidia = NvidiaInfo("520.61.05", cuda_version=(11, 8), compute_caps=((7, 0), (9, 0)))
    choice = choose_build(linux(nvidia=nvidia))
    assert choice.accel == "cpu"
    assert any("no prebuilt CUDA wheel" in w for w in choice.warnings)


def test_old_driver_falls_back_to_cpu_with_a_clear_warning() -> None:
    nvidia = NvidiaInfo("470.223.02", compute_caps=((7, 5),), names=("Tesla T4",))
    choice = choose_build(linux(nvidia=nvidia))
    assert choice.accel == "cpu"
    assert choice.index_url == f"{BASE}/cpu"
    assert any("driver 470.223.02 is too old" in w and "525" in w for w in choice.warnings)


def test_old_driver_with_local_toolkit_builds_cuda_from_source() -> None:
    nvidia = NvidiaInfo("470.223.02", compute_caps=((7, 5),))
    choice = choose_build(linux(nvidia=nvidia, nvcc=True))
    assert (choice.accel, choice.source_accel) == ("cuda", "cuda")
    assert "-DGGML_CUDA=on" in choice.cmake_args
    assert "75-real" in choice.cmake_args


def test_cuda_without_toolkit_source_build_falls_back_to_cpu() -> None:
    nvidia = NvidiaInfo("550.54.15", cuda_version=(12, 4), compute_caps=((8, 6),))
    choice = choose_build(linux(nvidia=nvidia, nvcc=False, cpu_count=16))
    assert choice.index_url == f"{BASE}/cu124"
    assert (choice.source_accel, choice.cmake_args) == ("cpu", "")
    assert choice.build_minutes == 2
    assert any("nvcc" in w for w in choice.warnings)


def test_apple_silicon_gets_metal() -> None:
    facts = AccelFacts(os="darwin", arch="arm64", python=(3, 12), xcode=True, macos_version=(14, 5))
    choice = choose_build(facts)
    assert (choice.accel, choice.index_url, choice.cmake_args) == (
        "metal",
        f"{BASE}/metal",
        "-DGGML_METAL=on",
    )


def test_rosetta_python_on_apple_silicon_gets_cpu_and_advice() -> None:
    facts = AccelFacts(os="darwin", arch="x86_64", python=(3, 12), rosetta=True)
    choice = choose_build(facts)
    assert choice.accel == "cpu"
    assert any("arm64 Python" in w for w in choice.warnings)


def test_intel_mac_gets_cpu() -> None:
    assert choose_build(AccelFacts(os="darwin", arch="x86_64", python=(3, 11))).accel == "cpu"


def test_vulkan_gpu_without_nvidia() -> None:
    choice = choose_build(linux(vulkan_runtime=True, vulkan_sdk=True))
    assert (choice.accel, choice.index_url, choice.cmake_args) == (
        "vulkan",
        f"{BASE}/vulkan",
        "-DGGML_VULKAN=on",
    )


def test_nvidia_wins_over_vulkan() -> None:
    nvidia = NvidiaInfo("550.54.15", cuda_version=(12, 4), compute_caps=((8, 9),))
    assert choose_build(linux(nvidia=nvidia, vulkan_runtime=True)).accel == "cuda"


def test_python_without_gpu_wheels_builds_from_source() -> None:
    nvidia = NvidiaInfo("550.54.15", cuda_version=(12, 4), compute_caps=((8, 9),))
    facts = AccelFacts(os="linux", arch="x86_64", python=(3, 13), nvidia=nvidia, nvcc=True)
    choice = choose_build(facts)
    assert choice.accel == "cuda"
    assert choice.index_url is None
    assert any("3.10-3.12" in r for r in choice.reasons)


def test_forced_cpu_and_disabled_index() -> None:
    nvidia = NvidiaInfo("550.54.15", cuda_version=(12, 4), compute_caps=((8, 9),))
    choice = choose_build(linux(nvidia=nvidia, forced="cpu", index_base=None))
    assert (choice.accel, choice.index_url) == ("cpu", None)


def test_parsers() -> None:
    banner = "| NVIDIA-SMI 550.54.15    Driver Version: 550.54.15    CUDA Version: 12.4     |\n"
    assert accel.parse_nvidia_smi_header(banner) == ("550.54.15", (12, 4))
    assert accel.parse_nvidia_smi_header("garbage") == (None, None)
    query = "550.54.15, 8.9, NVIDIA L4\n550.54.15, 9.0, NVIDIA H100 80GB HBM3\n"
    assert accel.parse_gpu_query(query) == (
        "550.54.15",
        ((8, 9), (9, 0)),
        ("NVIDIA L4", "NVIDIA H100 80GB HBM3"),
    )
    assert accel.parse_gpu_query("550.54.15, [N/A], Old GPU\n")[1] == ()
    assert accel.cuda_from_driver("580.65.06") == (13, 0)
    assert accel.cuda_from_driver("525.60.13") == (12, 0)
    assert accel.cuda_from_driver("470.1") is None
    assert accel.parse_version_tuple("560.35.03") == (560, 35, 3)


def test_detect_nvidia_with_fake_tool_output() -> None:
    # The real host has no NVIDIA driver: feed what nvidia-smi prints on one (H100, CUDA 13).
    outputs = {
        (): "| NVIDIA-SMI 580.82.07   Driver Version: 580.82.07   CUDA Version: 13.0 |",
        ("--query-gpu=driver_version,compute_cap,name", "--format=csv,noheader"): (
            "580.82.07, 9.0, NVIDIA H100 80GB HBM3\n"
        ),
    }

    def run(argv: Sequence[str]) -> str | None:
        return outputs.get(tuple(argv[1:]))

    info = accel.detect_nvidia(run, smi="/usr/bin/nvidia-smi")
    assert info == NvidiaInfo("580.82.07", (13, 0), ((9, 0),), ("NVIDIA H100 80GB HBM3",))
    assert accel.detect_nvidia(lambda argv: None, smi="/usr/bin/nvidia-smi") is None


def test_detect_facts_on_this_host_and_env_overrides() -> None:
    facts = accel.detect_facts({"PENDRA_ACCEL": "cpu", "PENDRA_WHEEL_INDEX": "off"})
    assert facts.forced == "cpu" and facts.index_base is None
    assert facts.python == sys.version_info[:2]
    with pytest.raises(ValueError, match="PENDRA_ACCEL='rocm'"):
        accel.detect_facts({"PENDRA_ACCEL": "rocm"})


def test_shell_output_is_safely_quoted() -> None:
    choice = accel.BuildChoice(
        accel="cuda",
        label="CUDA 12.4",
        index_url=f"{BASE}/cu124",
        source_accel="cpu",
        cmake_args="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=89-real;90-real",
        build_minutes=3,
        reasons=("it's $(reboot) `quoted`",),
    )
    text = accel.shell_assignments(choice, f"{BASE}/cu124", False, "llama-cpp-python<0.4,>=0.3.23")
    script = (
        text + 'printf "%s|%s|%s" "$PENDRA_CMAKE_ARGS" "$PENDRA_ACCEL_NOTES" "$PENDRA_ACCEL_TARGET"'
    )
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
    assert out == (
        "-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=89-real;90-real|it's $(reboot) `quoted`|cuda"
    )
    assert all(line.count("=") >= 1 for line in text.splitlines() if not line.startswith(" "))
    assert shlex.split(text)  # parses as shell words


@pytest.fixture
def index_server() -> Iterator[str]:
    """A real PEP 503 page on 127.0.0.1 standing in for the wheel index."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            ok = self.path == "/whl/cpu/llama-cpp-python/"
            self.send_response(200 if ok else 404)
            self.end_headers()
            if ok:
                self.wfile.write(b"<html><a href='x.whl'>x</a></html>")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/whl"
    server.shutdown()
    server.server_close()


def test_probe_index_against_real_local_server(index_server: str) -> None:
    assert accel.probe_index(f"{index_server}/cpu", timeout=2)
    assert not accel.probe_index(f"{index_server}/cu124", timeout=2)
    assert not accel.probe_index("http://127.0.0.1:9/whl/cpu", timeout=1)


def test_shell_cli_uses_reachable_index(index_server: str, clean_env: dict[str, str]) -> None:
    env = {**clean_env, "PENDRA_WHEEL_INDEX": index_server, "PENDRA_ACCEL": "cpu"}
    out = subprocess.run(
        [sys.executable, "-m", "installer.accel", "--shell", "--probe", "--timeout", "2"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    ).stdout
    assert f"PENDRA_WHEEL_URL={index_server}/cpu" in out
    assert "PENDRA_ACCEL_TARGET=cpu" in out


def test_stamp_round_trip(tmp_path: Path) -> None:
    assert accel.read_stamp(tmp_path) == {}
    assert not accel.build_present("cpu", tmp_path)
    version = accel.installed_llama_version()
    assert version is not None  # the dev venv has llama-cpp-python
    accel.write_stamp("cpu", "source", tmp_path)
    assert accel.read_stamp(tmp_path) == {"accel": "cpu", "version": version, "source": "source"}
    assert accel.build_present("cpu", tmp_path)
    assert not accel.build_present("cuda", tmp_path)
    (tmp_path / accel.STAMP_NAME).write_text("{broken", encoding="utf-8")
    assert not accel.build_present("cpu", tmp_path)


def test_llama_requirement_comes_from_the_distribution() -> None:
    req = accel.llama_requirement()
    assert req.replace(" ", "").startswith("llama-cpp-python")
    assert "0.4" in req
