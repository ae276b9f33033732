"""The exact command that fixes a missing prerequisite, per package manager.

Pure functions of :class:`~installer.platform.HostInfo`: the checks never install anything; they
tell the user what to run (Ollama's installer touching drivers without asking is the top complaint
its users have).
"""

from __future__ import annotations

from installer.platform import HostInfo

DOCKER_DOCS = "https://docs.docker.com/engine/install/"
TOOLKIT_DOCS = (
    "https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/install-guide.html"
)


def _sudo(host: HostInfo) -> str:
    return "" if host.is_root else "sudo "


def install_docker(host: HostInfo) -> str:
    s = _sudo(host)
    if host.os == "darwin":
        return "brew install --cask docker   # Docker Desktop; then open it once"
    if host.wsl:
        return "install Docker Desktop on Windows and enable WSL integration for this distro"
    return {
        "apt": f"{s}apt-get install -y docker.io   # or Docker CE: {DOCKER_DOCS}",
        "dnf": f"{s}dnf install -y moby-engine   # or Docker CE: {DOCKER_DOCS}",
        "zypper": f"{s}zypper install -y docker",
        "pacman": f"{s}pacman -S --needed docker",
        "apk": f"{s}apk add docker",
    }.get(host.package_manager or "", f"see {DOCKER_DOCS}")


def start_docker(host: HostInfo) -> str:
    if host.os == "darwin":
        return "open -a Docker   # start Docker Desktop"
    if host.systemd:
        return f"{_sudo(host)}systemctl enable --now docker"
    return (
        f"{_sudo(host)}service docker start   # or start dockerd however this system runs services"
    )


def docker_group(host: HostInfo) -> str:
    user = host.user or "$USER"
    return f"sudo usermod -aG docker {user}   # then log out and back in (or run: newgrp docker)"


def install_compose(host: HostInfo) -> str:
    s = _sudo(host)
    if host.os == "darwin":
        return "Compose v2 ships with Docker Desktop: update Docker Desktop"
    if host.distro_id == "ubuntu":
        return f"{s}apt-get install -y docker-compose-v2"
    return {
        "apt": f"{s}apt-get install -y docker-compose-plugin   # from Docker's apt repo: "
        f"{DOCKER_DOCS}",
        "dnf": f"{s}dnf install -y docker-compose-plugin   # from Docker's repo: {DOCKER_DOCS}",
        "zypper": f"{s}zypper install -y docker-compose",
        "pacman": f"{s}pacman -S --needed docker-compose",
        "apk": f"{s}apk add docker-cli-compose",
    }.get(host.package_manager or "", f"see {DOCKER_DOCS}")


def install_nvidia_driver(host: HostInfo) -> str:
    s = _sudo(host)
    if host.wsl:
        return (
            "install the NVIDIA driver on Windows (not inside WSL): https://www.nvidia.com/drivers"
        )
    if host.distro_id == "ubuntu":
        return f"{s}ubuntu-drivers install   # then reboot"
    return {
        "apt": f"{s}apt-get install -y nvidia-driver   # needs contrib/non-free; then reboot",
        "dnf": f"{s}dnf install -y akmod-nvidia   # from RPM Fusion; then reboot",
        "zypper": f"{s}zypper install -y nvidia-video-G06   # then reboot",
        "pacman": f"{s}pacman -S --needed nvidia   # then reboot",
    }.get(host.package_manager or "", "install the NVIDIA driver: https://www.nvidia.com/drivers")


def install_container_toolkit(host: HostInfo) -> str:
    s = _sudo(host)
    configure = f"{s}nvidia-ctk runtime configure --runtime=docker && {s}systemctl restart docker"
    manager = host.package_manager
    if manager == "apt":
        return (
            f"{s}apt-get install -y nvidia-container-toolkit && {configure}"
            f"   # after adding NVIDIA's apt repo: {TOOLKIT_DOCS}"
        )
    if manager == "dnf":
        return (
            f"{s}dnf install -y nvidia-container-toolkit && {configure}"
            f"   # after adding NVIDIA's repo: {TOOLKIT_DOCS}"
        )
    if manager == "zypper":
        return f"{s}zypper install -y nvidia-container-toolkit && {configure}"
    return f"install the NVIDIA Container Toolkit: {TOOLKIT_DOCS}"


def upgrade_wsl() -> str:
    return "in Windows PowerShell: wsl --set-version <distro> 2   # WSL1 has no GPU or systemd"
