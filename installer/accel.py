"""Which llama-cpp-python build this host should get, and how to install it.

llama-cpp-python ships only an sdist on PyPI; GPU builds come either from the project's prebuilt
wheel indexes (``https://abetlen.github.io/llama-cpp-python/whl/<cu124|cu130|metal|vulkan|cpu>``)
or from a source build with the right ``CMAKE_ARGS``. :func:`choose_build` turns the host's facts
into that decision and is pure, so every host shape (CUDA 12/13 by driver, Apple Silicon, Vulkan,
no GPU, an old driver) is a plain unit test.

get.sh uses this module before the distribution's dependencies exist (it installs the
``pendra-worker`` wheel with ``--no-deps`` first), so it imports only the standard library::

    eval "$(python -m installer.accel --shell --probe)"

prints shell assignments (``PENDRA_ACCEL``, ``PENDRA_WHEEL_URL`` …, every value quoted) that get.sh
acts on; ``--write-stamp`` records the installed build inside the venv so a re-run skips the
multi-minute reinstall when the right build is already there.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from worker.child_env import child_env  # standard library only, like this module

WHEEL_INDEX_BASE = "https://abetlen.github.io/llama-cpp-python/whl"
DEFAULT_LLAMA_REQUIREMENT = "llama-cpp-python>=0.3.23,<0.4"
STAMP_NAME = ".pendra-llama-build.json"
ACCELS = ("cpu", "cuda", "metal", "vulkan")

# Prebuilt CUDA wheel indexes: (tag, CUDA major.minor, min and max compute capability).
# From the llama-cpp-python README: cu118 supports 6.0-8.9, cu12x >= 6.0, cu13x >= 7.5.
CUDA_INDEXES: tuple[tuple[str, tuple[int, int], tuple[int, int], tuple[int, int] | None], ...] = (
    ("cu118", (11, 8), (6, 0), (8, 9)),
    ("cu121", (12, 1), (6, 0), None),
    ("cu122", (12, 2), (6, 0), None),
    ("cu123", (12, 3), (6, 0), None),
    ("cu124", (12, 4), (6, 0), None),
    ("cu125", (12, 5), (6, 0), None),
    ("cu130", (13, 0), (7, 5), None),
    ("cu132", (13, 2), (7, 5), None),
)

# Minimum Linux driver for each CUDA toolkit (NVIDIA's CUDA release notes, table 3). Used only when
# nvidia-smi does not print "CUDA Version" itself.
DRIVER_FOR_CUDA: tuple[tuple[tuple[int, int], tuple[int, ...]], ...] = (
    ((13, 0), (580, 65)),
    ((12, 8), (570, 26)),
    ((12, 6), (560, 28)),
    ((12, 5), (555, 42)),
    ((12, 4), (550, 54)),
    ((12, 3), (545, 23)),
    ((12, 2), (535, 54)),
    ((12, 1), (530, 30)),
    ((12, 0), (525, 60)),
    ((11, 8), (520, 61)),
)

# Prebuilt CUDA and Metal wheels exist for these Python versions only (README).
WHEEL_PYTHONS = ((3, 10), (3, 11), (3, 12))

# Rough single-core minutes of a source build; divided by the cores that will do it. The CPU figure
# is measured (7m45s wall on 2 cores, runtime.md §1.1); the others are estimates and say so.
_BUILD_CORE_MINUTES = {"cpu": 16, "vulkan": 24, "metal": 8, "cuda": 60}


@dataclass(frozen=True)
class NvidiaInfo:
    """What nvidia-smi says about the driver and the GPUs."""

    driver_version: str
    cuda_version: tuple[int, int] | None = None  # the newest CUDA the driver supports
    compute_caps: tuple[tuple[int, int], ...] = ()
    names: tuple[str, ...] = ()


@dataclass(frozen=True)
class AccelFacts:
    """Everything the build choice depends on; :func:`detect_facts` fills it from the host."""

    os: str
    arch: str
    python: tuple[int, int]
    cpu_count: int = 2
    nvidia: NvidiaInfo | None = None
    nvcc: bool = False  # a CUDA toolkit compiler for source builds
    vulkan_runtime: bool = False  # libvulkan and a render node (a GPU Vulkan can use)
    vulkan_sdk: bool = False  # glslc + headers, needed to build the Vulkan backend
    xcode: bool = False  # Xcode command line tools (Metal source builds)
    rosetta: bool = False
    macos_version: tuple[int, ...] = ()
    forced: str | None = None  # PENDRA_ACCEL
    index_base: str | None = WHEEL_INDEX_BASE  # None when PENDRA_WHEEL_INDEX=off


@dataclass(frozen=True)
class BuildChoice:
    """The decision: try ``index_url`` first, else build ``source_accel`` with ``cmake_args``."""

    accel: str  # what this host should run: cpu | cuda | metal | vulkan
    label: str  # for people: "CUDA 12.4", "Metal (Apple Silicon)", "CPU"
    index_url: str | None  # prebuilt wheel index to try first (None: go straight to source)
    source_accel: str  # what a source build produces here (cpu when the toolchain is missing)
    cmake_args: str
    build_minutes: int  # estimate for the source build, for the progress message
    reasons: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default_factory=tuple)


# --------------------------------------------------------------------------------------------------
# Pure parsing of tool output


def parse_version_tuple(text: str) -> tuple[int, ...]:
    """``"550.54.15"`` → ``(550, 54, 15)``; stops at the first non-numeric part."""
    parts: list[int] = []
    for piece in text.strip().split("."):
        match = re.match(r"\d+", piece)
        if not match:
            break
        parts.append(int(match.group()))
    return tuple(parts)


def parse_nvidia_smi_header(text: str) -> tuple[str | None, tuple[int, int] | None]:
    """Driver and CUDA version from the banner of plain ``nvidia-smi``."""
    driver = re.search(r"Driver Version:\s*([0-9.]+)", text)
    cuda = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", text)
    return (
        driver.group(1) if driver else None,
        (int(cuda.group(1)), int(cuda.group(2))) if cuda else None,
    )


def parse_gpu_query(text: str) -> tuple[str | None, tuple[tuple[int, int], ...], tuple[str, ...]]:
    """``nvidia-smi --query-gpu=driver_version,compute_cap,name --format=csv,noheader`` lines."""
    driver: str | None = None
    caps: list[tuple[int, int]] = []
    names: list[str] = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.split(",")]
        if len(cells) < 3 or not cells[0]:
            continue
        driver = driver or cells[0]
        cap = re.fullmatch(r"(\d+)\.(\d+)", cells[1])
        if cap:
            caps.append((int(cap.group(1)), int(cap.group(2))))
        names.append(",".join(cells[2:]))
    return driver, tuple(caps), tuple(names)


def cuda_from_driver(driver_version: str) -> tuple[int, int] | None:
    """The newest CUDA toolkit a Linux driver runs, from NVIDIA's minimum-driver table."""
    version = parse_version_tuple(driver_version)
    if not version:
        return None
    for cuda, minimum in DRIVER_FOR_CUDA:
        if version >= minimum:
            return cuda
    return None


# --------------------------------------------------------------------------------------------------
# The decision


def _cuda_index(nvidia: NvidiaInfo) -> tuple[str | None, str]:
    """Pick the newest CUDA wheel index the driver and every GPU can run; (tag, why)."""
    cuda = nvidia.cuda_version or cuda_from_driver(nvidia.driver_version)
    if cuda is None:
        return None, f"driver {nvidia.driver_version} is too old for any prebuilt CUDA wheel"
    lowest_cap = min(nvidia.compute_caps) if nvidia.compute_caps else None
    highest_cap = max(nvidia.compute_caps) if nvidia.compute_caps else None
    best: str | None = None
    for tag, needs_cuda, min_cap, max_cap in CUDA_INDEXES:
        if needs_cuda > cuda:
            continue
        if lowest_cap is None:
            # Unknown compute capability: stay on CUDA 12 wheels, which also run on Pascal/Volta.
            if needs_cuda[0] >= 13:
                continue
        else:
            if lowest_cap < min_cap:
                continue
            if max_cap is not None and highest_cap is not None and highest_cap > max_cap:
                continue
        best = tag
    if best is None:
        return None, (
            f"no prebuilt CUDA wheel fits driver CUDA {cuda[0]}.{cuda[1]} and compute "
            f"capability {_cap_text(nvidia.compute_caps)}"
        )
    return best, f"driver {nvidia.driver_version} supports CUDA {cuda[0]}.{cuda[1]}"


def _cap_text(caps: Sequence[tuple[int, int]]) -> str:
    return ", ".join(f"{a}.{b}" for a, b in caps) or "unknown"


def _minutes(accel: str, cpu_count: int) -> int:
    return max(2, round(_BUILD_CORE_MINUTES[accel] / max(1, cpu_count)))


def _cuda_cmake_args(nvidia: NvidiaInfo | None) -> str:
    args = ["-DGGML_CUDA=on"]
    if nvidia and nvidia.compute_caps:
        # Only this host's architectures: a fraction of the build time of the full set.
        archs = sorted({f"{a}{b}-real" for a, b in nvidia.compute_caps})
        args.append("-DCMAKE_CUDA_ARCHITECTURES=" + ";".join(archs))
    return " ".join(args)


def choose_build(facts: AccelFacts) -> BuildChoice:
    """Decide the llama-cpp-python build for ``facts``; pure."""
    reasons: list[str] = []
    warnings: list[str] = []
    wheel_python = facts.python in WHEEL_PYTHONS
    index_base = facts.index_base.rstrip("/") if facts.index_base else None

    def index(tag: str) -> str | None:
        if index_base is None:
            return None
        if not wheel_python and tag != "cpu":
            return None
        return f"{index_base}/{tag}"

    accel = facts.forced
    tag: str | None = None
    label = "CPU"
    if accel is not None:
        reasons.append(f"PENDRA_ACCEL={accel} forces this build")
    if facts.os == "darwin":
        if facts.arch == "arm64" and (accel in (None, "metal")):
            if facts.macos_version and facts.macos_version < (11,):
                reasons.append("Metal wheels need macOS 11 or newer")
                accel = accel or "cpu"
            else:
                accel, tag, label = "metal", "metal", "Metal (Apple Silicon)"
                reasons.append("Apple Silicon: llama.cpp runs on the GPU through Metal")
        elif facts.rosetta:
            warnings.append(
                "this Python is x86_64 running under Rosetta on Apple Silicon: the Metal GPU "
                "backend needs an arm64 Python (e.g. `brew install python` on the arm64 Homebrew)"
            )
            accel = accel or "cpu"
        else:
            accel = accel or "cpu"
    elif accel in (None, "cuda") and facts.nvidia is not None:
        cuda_tag, why = _cuda_index(facts.nvidia)
        if cuda_tag is not None:
            accel, tag = "cuda", cuda_tag
            label = f"CUDA {cuda_tag[2:-1]}.{cuda_tag[-1]}"
            reasons.append(f"NVIDIA GPU ({', '.join(facts.nvidia.names) or 'found'}): {why}")
        elif facts.nvcc:
            accel, label = "cuda", "CUDA (local toolkit)"
            reasons.append(f"{why}; building against the installed CUDA toolkit")
        else:
            warnings.append(
                f"NVIDIA GPU found but {why}: using the CPU build. Update the NVIDIA driver "
                "(525 or newer) and re-run get.sh to get the GPU build"
            )
            accel = "cpu"
    elif accel in (None, "vulkan") and facts.os == "linux" and facts.vulkan_runtime:
        accel, tag, label = "vulkan", "vulkan", "Vulkan"
        reasons.append("a Vulkan-capable GPU (no NVIDIA driver): llama.cpp uses Vulkan")
    if accel is None:
        accel = "cpu"
        reasons.append("no GPU llama.cpp can use was found: CPU build")
    if accel == "cpu":
        tag, label = "cpu", "CPU"
    elif tag is None and accel in ("cuda", "metal", "vulkan"):
        tag = {"cuda": "cu124", "metal": "metal", "vulkan": "vulkan"}[accel]
        label = {"cuda": "CUDA", "metal": "Metal", "vulkan": "Vulkan"}[accel]

    if not wheel_python and accel != "cpu":
        reasons.append(
            f"no prebuilt {label} wheel for Python {facts.python[0]}.{facts.python[1]} "
            "(3.10-3.12 only): building from source"
        )

    # What a source build can produce on this host.
    source_accel, cmake_args = accel, ""
    if accel == "cuda":
        cmake_args = _cuda_cmake_args(facts.nvidia)
        if not facts.nvcc:
            source_accel, cmake_args = "cpu", ""
    elif accel == "metal":
        cmake_args = "-DGGML_METAL=on"
        if not facts.xcode:
            source_accel, cmake_args = "cpu", ""
    elif accel == "vulkan":
        cmake_args = "-DGGML_VULKAN=on"
        if not facts.vulkan_sdk:
            source_accel, cmake_args = "cpu", ""
    if source_accel != accel:
        toolchain = {
            "cuda": "the CUDA toolkit (nvcc)",
            "metal": "the Xcode command line tools (`xcode-select --install`)",
            "vulkan": "the Vulkan SDK (`libvulkan-dev glslc spirv-headers` on Debian/Ubuntu)",
        }[accel]
        warnings.append(
            f"if the prebuilt {label} wheels cannot be downloaded, the source build falls back "
            f"to CPU because {toolchain} is missing"
        )

    return BuildChoice(
        accel=accel,
        label=label,
        index_url=index(tag) if tag else None,
        source_accel=source_accel,
        cmake_args=cmake_args,
        build_minutes=_minutes(source_accel, facts.cpu_count),
        reasons=tuple(reasons),
        warnings=tuple(warnings),
    )


# --------------------------------------------------------------------------------------------------
# Host detection (impure; the runner is injectable for tests)

Runner = Callable[[Sequence[str]], "str | None"]


def run_tool(argv: Sequence[str], timeout: float = 10.0) -> str | None:
    """stdout of a tool, or None when it is missing, fails or hangs."""
    try:
        done = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
            env=child_env(),
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _nvidia_smi_path() -> str | None:
    # On WSL2 the tool lives in /usr/lib/wsl/lib and is often not on PATH.
    return shutil.which("nvidia-smi") or (
        "/usr/lib/wsl/lib/nvidia-smi" if Path("/usr/lib/wsl/lib/nvidia-smi").exists() else None
    )


def detect_nvidia(run: Runner = run_tool, smi: str | None = None) -> NvidiaInfo | None:
    """Driver, CUDA version and compute capabilities from nvidia-smi; None without a driver."""
    smi = smi or _nvidia_smi_path()
    if smi is None:
        return None
    banner = run([smi])
    if banner is None:
        return None
    driver, cuda = parse_nvidia_smi_header(banner)
    query = run([smi, "--query-gpu=driver_version,compute_cap,name", "--format=csv,noheader"])
    caps: tuple[tuple[int, int], ...] = ()
    names: tuple[str, ...] = ()
    if query:
        q_driver, caps, names = parse_gpu_query(query)
        driver = driver or q_driver
    if driver is None:
        return None
    return NvidiaInfo(driver_version=driver, cuda_version=cuda, compute_caps=caps, names=names)


def _vulkan_runtime() -> bool:
    import ctypes.util

    if ctypes.util.find_library("vulkan") is None:
        return False
    return any(Path("/dev/dri").glob("renderD*")) if Path("/dev/dri").is_dir() else False


def _nvcc() -> bool:
    return shutil.which("nvcc") is not None or Path("/usr/local/cuda/bin/nvcc").exists()


def detect_facts(environ: dict[str, str] | None = None, run: Runner = run_tool) -> AccelFacts:
    """The real host's facts, honouring ``PENDRA_ACCEL`` and ``PENDRA_WHEEL_INDEX``."""
    from installer.platform import detect_host

    env = dict(os.environ if environ is None else environ)
    host = detect_host()
    forced = env.get("PENDRA_ACCEL", "").strip().lower() or None
    if forced == "auto":
        forced = None
    if forced is not None and forced not in ACCELS:
        raise ValueError(f"PENDRA_ACCEL={forced!r} is not one of auto, {', '.join(ACCELS)}")
    index_raw = env.get("PENDRA_WHEEL_INDEX", "").strip()
    index_base: str | None = WHEEL_INDEX_BASE
    if index_raw.lower() in {"off", "none", "no", "0", "false"}:
        index_base = None
    elif index_raw:
        index_base = index_raw
    mac = ()
    if host.os == "darwin":
        import platform

        mac = parse_version_tuple(platform.mac_ver()[0])
    return AccelFacts(
        os=host.os,
        arch=host.arch,
        python=(sys.version_info.major, sys.version_info.minor),
        cpu_count=os.cpu_count() or 1,
        nvidia=detect_nvidia(run) if host.os in ("linux", "windows") else None,
        nvcc=_nvcc(),
        vulkan_runtime=host.os == "linux" and _vulkan_runtime(),
        vulkan_sdk=shutil.which("glslc") is not None
        and Path("/usr/include/vulkan/vulkan.h").exists(),
        xcode=host.os == "darwin" and shutil.which("xcrun") is not None,
        rosetta=host.rosetta,
        macos_version=mac,
        forced=forced,
        index_base=index_base,
    )


# --------------------------------------------------------------------------------------------------
# Wheel index probe and the installed-build stamp


def probe_index(url: str, timeout: float = 3.0) -> bool:
    """True when the PEP 503 page for llama-cpp-python answers on ``url`` within ``timeout``."""
    target = url.rstrip("/") + "/llama-cpp-python/"
    request = urllib.request.Request(target, method="GET", headers={"User-Agent": "pendra-get"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def llama_requirement() -> str:
    """The llama-cpp-python requirement of the installed ``pendra-worker`` (one source of truth)."""
    from importlib import metadata

    try:
        for req in metadata.requires("pendra-worker") or ():
            name = re.split(r"[\s<>=!~;\[]", req, maxsplit=1)[0]
            if name.lower().replace("_", "-") == "llama-cpp-python":
                return req.split(";", 1)[0].strip()
    except metadata.PackageNotFoundError:
        pass
    return DEFAULT_LLAMA_REQUIREMENT


def installed_llama_version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("llama-cpp-python")
    except metadata.PackageNotFoundError:
        return None


def stamp_path(prefix: str | Path | None = None) -> Path:
    return Path(prefix or sys.prefix) / STAMP_NAME


def read_stamp(prefix: str | Path | None = None) -> dict[str, str]:
    try:
        data = json.loads(stamp_path(prefix).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def build_present(wanted_accel: str, prefix: str | Path | None = None) -> bool:
    """The venv still holds the ``wanted_accel`` build that get.sh installed and stamped."""
    stamp = read_stamp(prefix)
    version = installed_llama_version()
    return bool(version) and stamp.get("accel") == wanted_accel and stamp.get("version") == version


def write_stamp(accel: str, source: str, prefix: str | Path | None = None) -> Path:
    version = installed_llama_version()
    if version is None:
        raise SystemExit("llama-cpp-python is not installed in this environment; nothing to record")
    path = stamp_path(prefix)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(
        json.dumps({"accel": accel, "version": version, "source": source}) + "\n", encoding="utf-8"
    )
    os.replace(tmp, path)
    return path


# --------------------------------------------------------------------------------------------------
# Command line for get.sh


def shell_assignments(choice: BuildChoice, wheel_url: str | None, present: bool, req: str) -> str:
    """Quoted ``NAME=value`` lines for ``eval`` in get.sh."""
    target = choice.accel if wheel_url else choice.source_accel
    values = {
        "PENDRA_ACCEL": choice.accel,
        "PENDRA_ACCEL_LABEL": choice.label,
        "PENDRA_ACCEL_TARGET": target,
        "PENDRA_WHEEL_URL": wheel_url or "",
        "PENDRA_SOURCE_ACCEL": choice.source_accel,
        "PENDRA_CMAKE_ARGS": choice.cmake_args,
        "PENDRA_BUILD_MINUTES": str(choice.build_minutes),
        "PENDRA_LLAMA_REQ": req,
        "PENDRA_LLAMA_PRESENT": "1" if present else "0",
        "PENDRA_ACCEL_NOTES": "\n".join(
            (*choice.reasons, *(f"warning: {w}" for w in choice.warnings))
        ),
    }
    return "\n".join(f"{name}={shlex.quote(value)}" for name, value in values.items()) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m installer.accel",
        description="Choose the llama-cpp-python build for this host (used by get.sh).",
    )
    parser.add_argument("--shell", action="store_true", help="print shell assignments for eval")
    parser.add_argument("--probe", action="store_true", help="check the prebuilt wheel index")
    parser.add_argument("--timeout", type=float, default=3.0, help="index probe timeout (s)")
    parser.add_argument(
        "--write-stamp",
        nargs=2,
        metavar=("ACCEL", "SOURCE"),
        help="record the llama-cpp-python build just installed into this environment",
    )
    args = parser.parse_args(argv)
    if args.write_stamp:
        accel, source = args.write_stamp
        if accel not in ACCELS:
            parser.error(f"ACCEL must be one of {', '.join(ACCELS)}")
        write_stamp(accel, source)
        return 0
    try:
        facts = detect_facts()
    except ValueError as exc:
        print(f"installer.accel: {exc}", file=sys.stderr)
        return 2
    choice = choose_build(facts)
    wheel_url = choice.index_url if args.probe and choice.index_url else None
    if wheel_url and not probe_index(wheel_url, args.timeout):
        wheel_url = None
    target = choice.accel if wheel_url else choice.source_accel
    present = build_present(target)
    if args.shell:
        sys.stdout.write(shell_assignments(choice, wheel_url, present, llama_requirement()))
    else:
        print(f"build: {choice.label} ({choice.accel})")
        for line in (*choice.reasons, *(f"warning: {w}" for w in choice.warnings)):
            print(f"  {line}")
        print(f"prebuilt index: {choice.index_url or 'none'}", end="")
        print(f" ({'reachable' if wheel_url else 'not reachable'})" if args.probe else "")
        print(f"source build: {choice.source_accel} {choice.cmake_args}".rstrip())
        print(f"installed build matches: {'yes' if present else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
