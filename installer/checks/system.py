"""Checks of the machine itself: OS, Python, configuration, key file, disk, service manager."""

from __future__ import annotations

import stat
from pathlib import Path

from installer.checks import fixes
from installer.checks.context import CheckContext
from installer.checks.result import CheckResult, Status

GIB = 1024**3
DISK_FAIL_BYTES = 1 * GIB  # below this not even a small model, logs and the venv fit
DISK_WARN_BYTES = 20 * GIB  # room for a few 7-8B Q4 models


def check_os(ctx: CheckContext) -> CheckResult:
    host = ctx.probes.host
    title = "Operating system"
    if host.os not in {"linux", "darwin"}:
        return CheckResult(
            "os",
            title,
            Status.FAIL,
            True,
            f"{host.os} is not supported by get.sh; the worker runs on Linux and macOS.",
            "on Windows, use WSL2: wsl --install",
        )
    if not host.supported_arch:
        return CheckResult(
            "os",
            title,
            Status.FAIL,
            True,
            f"{host.pretty}: the {host.arch} CPU architecture is not supported (x86_64 and arm64 "
            "are).",
            None,
        )
    if host.wsl == 1:
        return CheckResult(
            "os",
            title,
            Status.FAIL,
            True,
            f"{host.pretty}: WSL1 has no GPU access or systemd.",
            fixes.upgrade_wsl(),
        )
    return CheckResult("os", title, Status.OK, True, host.pretty)


def check_python(ctx: CheckContext) -> CheckResult:
    major, minor, micro = ctx.probes.python_version
    text = f"Python {major}.{minor}.{micro}"
    title = "Python"
    if (major, minor) < (3, 10):
        return CheckResult(
            "python",
            title,
            Status.FAIL,
            True,
            f"{text} is too old: the worker needs 3.10 or newer.",
            "re-run get.sh with a newer Python: PENDRA_PYTHON=/path/to/python3.12 ./get.sh",
        )
    if (major, minor) > (3, 12):
        return CheckResult(
            "python",
            title,
            Status.WARN,
            True,
            f"{text}: prebuilt GPU builds of llama.cpp exist for Python 3.10-3.12 only, so GPU "
            "builds compile from source here.",
            "PENDRA_PYTHON=python3.12 ./get.sh   # if a 3.12 interpreter is installed",
        )
    return CheckResult("python", title, Status.OK, True, text)


def check_config(ctx: CheckContext) -> CheckResult:
    title = "Configuration"
    if ctx.config_error:
        return CheckResult(
            "config",
            title,
            Status.FAIL,
            True,
            ctx.config_error,
            f"fix or remove {ctx.settings.config_file}",
        )
    where = ctx.settings.config_file
    detail = f"{where}" if ctx.probes.exists(where) else f"defaults ({where} not created yet)"
    return CheckResult("config", title, Status.OK, True, detail)


def check_key(ctx: CheckContext) -> CheckResult:
    """The worker key: configured, and in a private file. Only metadata is read, never the key."""
    title = "Worker key"
    location = ctx.settings.key_location()
    if location.kind == "inline" and location.path is None:
        return CheckResult(
            "worker_key", title, Status.OK, False, f"from {location.source} (not stored on disk)"
        )
    path = location.path or ctx.settings.resolved_key_file
    what = "gpu_worker_private_key in " if location.kind == "inline" else ""
    try:
        info = path.stat()
    except FileNotFoundError:
        return CheckResult(
            "worker_key",
            title,
            Status.WARN,
            False,
            f"no worker key yet (no gpu_worker_private_key in {ctx.settings.config_file}, no "
            f"key file at {path}): the worker cannot connect until it has one.",
            "pendra key set   # paste the key from the Pendra console",
        )
    except OSError as exc:
        return CheckResult(
            "worker_key",
            title,
            Status.FAIL,
            True,
            f"cannot read {path}: {exc.strerror}.",
            f"check the permissions of {path}",
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        return CheckResult(
            "worker_key",
            title,
            Status.FAIL,
            True,
            f"{what}{path} is readable by other users (mode {mode:04o}); the worker refuses to "
            "use a key others can read.",
            f"chmod 600 {path}",
        )
    return CheckResult("worker_key", title, Status.OK, False, f"{what}{path} (mode {mode:04o})")


def check_disk(ctx: CheckContext) -> CheckResult:
    title = "Disk space for models"
    models = ctx.settings.models_dir
    try:
        space = ctx.probes.disk(Path(models))
    except OSError as exc:
        return CheckResult(
            "disk",
            title,
            Status.FAIL,
            True,
            f"cannot measure free space for {models}: {exc.strerror or exc}.",
            f"check that {models} is on a mounted filesystem",
        )
    free = space.free / GIB
    where = f"{free:.1f} GiB free for {models}"
    if space.path != models:
        where += f" (measured at {space.path})"
    if space.free < DISK_FAIL_BYTES:
        return CheckResult(
            "disk",
            title,
            Status.FAIL,
            True,
            f"only {where}: not enough for any model.",
            "free space, or point PENDRA_MODELS_DIR at a larger disk",
        )
    if space.free < DISK_WARN_BYTES:
        return CheckResult(
            "disk",
            title,
            Status.WARN,
            True,
            f"{where}: room for small models only.",
            "point PENDRA_MODELS_DIR (or models_dir in config.yaml) at a larger disk",
        )
    return CheckResult("disk", title, Status.OK, True, where)


def check_service_manager(ctx: CheckContext) -> CheckResult:
    host = ctx.probes.host
    title = "Service manager"
    if host.os == "darwin":
        return CheckResult("service_manager", title, Status.OK, False, "launchd")
    if host.systemd:
        return CheckResult(
            "service_manager",
            title,
            Status.OK,
            False,
            "systemd: `pendra service install` keeps the worker running after you log out",
        )
    return CheckResult(
        "service_manager",
        title,
        Status.WARN,
        False,
        "systemd is not running here (a container, WSL without systemd, or another init): the "
        "worker runs in the foreground and does not start at boot.",
        "run `pendra --no-ui` under your own supervisor (tmux, runit, a container restart policy)",
    )


def check_llama(ctx: CheckContext) -> CheckResult:
    title = "Built-in backend (llama.cpp)"
    build = ctx.probes.llama()
    if build is None:
        return CheckResult(
            "llama_cpp",
            title,
            Status.WARN,
            False,
            "llama-cpp-python is not installed: the built-in backend is off; external backends "
            "(Ollama, vLLM …) still work.",
            "re-run get.sh (it installs the right llama.cpp build for this machine)",
        )
    kind = build.accel or "unknown"
    detail = f"llama-cpp-python {build.version}, {kind} build"
    if ctx.gpus and build.accel == "cpu":
        return CheckResult(
            "llama_cpp",
            title,
            Status.WARN,
            False,
            f"{detail} although an NVIDIA GPU is present: models run on the CPU.",
            "re-run get.sh (it picks the CUDA build when the driver allows), or "
            "PENDRA_ACCEL=cuda ./get.sh",
        )
    return CheckResult("llama_cpp", title, Status.OK, False, detail)
