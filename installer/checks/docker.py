"""Docker checks: engine, daemon (running, permission), Compose v2, NVIDIA Container Toolkit.

None of these is required: the built-in backend runs without Docker. They matter for backends in
containers and for the ``pendra stack`` path, so a missing piece is a warning with the exact fix.
"""

from __future__ import annotations

import re
from pathlib import Path

from installer.checks import fixes
from installer.checks.context import CheckContext
from installer.checks.result import CheckResult, Status

DOCKER_TIMEOUT_S = 10.0
CDI_SPECS = (
    Path("/etc/cdi/nvidia.yaml"),
    Path("/var/run/cdi/nvidia.yaml"),
    Path("/etc/cdi/nvidia.json"),
)
WHY = "only needed for backends in containers; the built-in backend works without it"


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def check_docker_engine(ctx: CheckContext) -> CheckResult:
    title = "Docker Engine"
    if ctx.docker_path is None:
        return CheckResult(
            "docker_engine",
            title,
            Status.WARN,
            False,
            f"Docker is not installed ({WHY}).",
            fixes.install_docker(ctx.probes.host),
        )
    result = ctx.probes.run(
        ["docker", "version", "--format", "{{.Client.Version}}"], DOCKER_TIMEOUT_S
    )
    version = result.stdout.strip() if result.stdout.strip() else "unknown version"
    return CheckResult("docker_engine", title, Status.OK, False, f"docker client {version}")


def check_docker_daemon(ctx: CheckContext) -> CheckResult:
    title = "Docker daemon"
    host = ctx.probes.host
    if ctx.docker_path is None:
        return CheckResult(
            "docker_daemon",
            title,
            Status.WARN,
            False,
            "not checked: Docker is not installed.",
            None,
        )
    result = ctx.probes.run(["docker", "info", "--format", "{{.ServerVersion}}"], DOCKER_TIMEOUT_S)
    if result.ok and result.stdout.strip():
        return CheckResult(
            "docker_daemon", title, Status.OK, False, f"running (server {result.stdout.strip()})"
        )
    error = (result.stderr + "\n" + result.stdout).lower()
    if result.timed_out:
        return CheckResult(
            "docker_daemon",
            title,
            Status.WARN,
            False,
            f"the daemon did not answer within {DOCKER_TIMEOUT_S:.0f} s.",
            fixes.start_docker(host),
        )
    if "permission denied" in error:
        return CheckResult(
            "docker_daemon",
            title,
            Status.WARN,
            False,
            f"the daemon runs but user {host.user or '(this user)'} may not use it (not in the "
            "docker group).",
            fixes.docker_group(host),
        )
    if (
        "cannot connect" in error
        or "is the docker daemon running" in error
        or "no such file" in error
    ):
        return CheckResult(
            "docker_daemon",
            title,
            Status.WARN,
            False,
            f"the daemon is not running ({WHY}).",
            fixes.start_docker(host),
        )
    return CheckResult(
        "docker_daemon",
        title,
        Status.WARN,
        False,
        f"`docker info` failed: {_first_line(result.stderr) or 'no output'}.",
        fixes.start_docker(host),
    )


def parse_compose_version(text: str) -> tuple[int, ...] | None:
    match = re.search(r"v?(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not match:
        return None
    return tuple(int(g) for g in match.groups() if g is not None)


def check_compose(ctx: CheckContext) -> CheckResult:
    title = "Docker Compose v2"
    host = ctx.probes.host
    if ctx.docker_path is None:
        return CheckResult(
            "docker_compose",
            title,
            Status.WARN,
            False,
            "not checked: Docker is not installed.",
            None,
        )
    result = ctx.probes.run(["docker", "compose", "version", "--short"], DOCKER_TIMEOUT_S)
    version = parse_compose_version(result.stdout) if result.ok else None
    if version and version[0] >= 2:
        return CheckResult(
            "docker_compose",
            title,
            Status.OK,
            False,
            "docker compose " + ".".join(map(str, version)),
        )
    legacy = ""
    if ctx.probes.which("docker-compose"):
        legacy = " Only the old docker-compose v1 is installed."
    return CheckResult(
        "docker_compose",
        title,
        Status.WARN,
        False,
        f"`docker compose` (v2) is not available.{legacy} Pendra's Docker stack then drives "
        "containers through the Docker API directly.",
        fixes.install_compose(host),
    )


def check_container_toolkit(ctx: CheckContext) -> CheckResult:
    title = "NVIDIA Container Toolkit"
    host = ctx.probes.host
    if not ctx.gpus:
        return CheckResult(
            "nvidia_container_toolkit", title, Status.OK, False, "not needed: no NVIDIA GPU."
        )
    if ctx.docker_path is None:
        return CheckResult(
            "nvidia_container_toolkit",
            title,
            Status.WARN,
            False,
            "not checked: Docker is not installed.",
            None,
        )
    found = [name for name in ("nvidia-ctk", "nvidia-container-runtime") if ctx.probes.which(name)]
    cdi = [str(p) for p in CDI_SPECS if ctx.probes.exists(p)]
    if found or cdi:
        return CheckResult(
            "nvidia_container_toolkit",
            title,
            Status.OK,
            False,
            "found: " + ", ".join([*found, *cdi]),
        )
    return CheckResult(
        "nvidia_container_toolkit",
        title,
        Status.WARN,
        False,
        "not installed: containers cannot use the GPUs (Docker reports 'could not select device "
        'driver "" with capabilities: [[gpu]]\').',
        fixes.install_container_toolkit(host),
    )
