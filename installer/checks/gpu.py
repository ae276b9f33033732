"""The NVIDIA driver and GPUs (Apple Silicon GPUs are used through Metal and need no driver)."""

from __future__ import annotations

from installer.checks import fixes
from installer.checks.context import CheckContext
from installer.checks.result import CheckResult, Status

GIB = 1024**3


def check_gpu(ctx: CheckContext) -> CheckResult:
    title = "GPU"
    host = ctx.probes.host
    if host.os == "darwin":
        if host.arch == "arm64":
            return CheckResult("gpu", title, Status.OK, False, "Apple Silicon GPU (Metal)")
        return CheckResult(
            "gpu",
            title,
            Status.WARN,
            False,
            "Intel Mac: no GPU llama.cpp can use; models run on the CPU.",
            None,
        )
    gpus = ctx.gpus
    if gpus:
        driver = ctx.probes.nvidia_driver()
        names = ", ".join(
            f"{g.name} ({g.memory_total / GIB:.0f} GiB)" if g.memory_total else g.name for g in gpus
        )
        count = f"{len(gpus)} NVIDIA GPU{'s' if len(gpus) != 1 else ''}"
        return CheckResult(
            "gpu",
            title,
            Status.OK,
            False,
            f"{count}: {names}" + (f"; driver {driver}" if driver else ""),
        )
    if ctx.probes.nvidia_pci():
        return CheckResult(
            "gpu",
            title,
            Status.WARN,
            False,
            "an NVIDIA GPU is on the PCI bus but no working driver answers (nvidia-smi/NVML): "
            "models run on the CPU until the driver is installed.",
            fixes.install_nvidia_driver(host),
        )
    return CheckResult(
        "gpu",
        title,
        Status.WARN,
        False,
        "no NVIDIA GPU found: the built-in backend runs models on the CPU (fine for small "
        "models, slow for large ones).",
        None,
    )
