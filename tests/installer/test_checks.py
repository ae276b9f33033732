"""Every prerequisite check in each of its states, with fake probes (this box has no GPU, no Docker
daemon and no internet, so those states can only be reached by faking what the tools report), plus
real runs of the checks and of ``pendra doctor`` on this machine."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from installer.checks import CHECKS, Probes, Status, exit_code, network, run_checks, system
from installer.checks import docker as docker_checks
from installer.checks import gpu as gpu_checks
from installer.checks.context import CheckContext
from installer.checks.probes import (
    CommandResult,
    DiskSpace,
    GpuSummary,
    HttpResult,
    LlamaBuild,
    disk_space,
    http_get,
)
from installer.checks.runner import make_context
from installer.platform import HostInfo
from worker.cli.doctor import render
from worker.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
GIB = 1024**3
DEBIAN = HostInfo(
    os="linux",
    arch="x86_64",
    distro_id="debian",
    distro_name="Debian GNU/Linux 12 (bookworm)",
    package_manager="apt",
    systemd=True,
    user="alice",
)
UBUNTU = replace(DEBIAN, distro_id="ubuntu", distro_like=("debian",), distro_name="Ubuntu 24.04")
FEDORA = replace(DEBIAN, distro_id="fedora", package_manager="dnf", distro_name="Fedora 40")
MAC = HostInfo(os="darwin", arch="arm64", package_manager="brew", user="alice")


def fake_probes(
    host: HostInfo = DEBIAN,
    commands: dict[tuple[str, ...], CommandResult] | None = None,
    tools: Sequence[str] = (),
    gpus: Sequence[GpuSummary] = (),
    driver: str | None = None,
    pci: bool = False,
    free: int = 500 * GIB,
    http: HttpResult = HttpResult(status=200),
    files: Sequence[str] = (),
    llama: LlamaBuild | None = LlamaBuild("0.3.36", "cpu"),
    python: tuple[int, int, int] = (3, 11, 7),
    environ: dict[str, str] | None = None,
) -> Probes:
    commands = commands or {}

    def run(argv: Sequence[str], timeout: float) -> CommandResult:
        if argv[0] not in tools:
            return CommandResult(None)
        return commands.get(tuple(argv), CommandResult(1, "", "unexpected command"))

    return Probes(
        host=host,
        run=run,
        which=lambda name: f"/usr/bin/{name}" if name in tools else None,
        gpus=lambda: list(gpus),
        nvidia_driver=lambda: driver,
        nvidia_pci=lambda: pci,
        disk=lambda path: DiskSpace(path, free, 1000 * GIB),
        http_get=lambda url, timeout: http,
        exists=lambda path: str(path) in files,
        llama=lambda: llama,
        python_version=python,
        environ=environ or {},
    )


def ctx_for(probes: Probes, tmp_path: Path, *, serving: bool = True) -> CheckContext:
    settings = Settings(
        home=tmp_path, models_dir=tmp_path / "models", api_url="https://api.example"
    )
    return CheckContext(probes=probes, settings=settings, serving=serving)


DOCKER_VERSION = ("docker", "version", "--format", "{{.Client.Version}}")
DOCKER_INFO = ("docker", "info", "--format", "{{.ServerVersion}}")
COMPOSE = ("docker", "compose", "version", "--short")


# --- OS / Python / config / key / disk / service manager -----------------------------------------


def test_os_states(tmp_path: Path) -> None:
    ok = system.check_os(ctx_for(fake_probes(), tmp_path))
    assert (ok.status, ok.required, ok.detail) == (
        Status.OK,
        True,
        "Debian GNU/Linux 12 (bookworm), x86_64",
    )
    wsl1 = system.check_os(ctx_for(fake_probes(host=replace(UBUNTU, wsl=1)), tmp_path))
    assert wsl1.status is Status.FAIL and "wsl --set-version" in (wsl1.fix or "")
    arm32 = system.check_os(ctx_for(fake_probes(host=replace(DEBIAN, arch="armv7l")), tmp_path))
    assert arm32.status is Status.FAIL and "armv7l" in arm32.detail
    win = system.check_os(ctx_for(fake_probes(host=replace(DEBIAN, os="windows")), tmp_path))
    assert win.status is Status.FAIL and "wsl --install" in (win.fix or "")
    wsl2 = system.check_os(ctx_for(fake_probes(host=replace(UBUNTU, wsl=2)), tmp_path))
    assert wsl2.status is Status.OK and "WSL2" in wsl2.detail


def test_python_states(tmp_path: Path) -> None:
    assert system.check_python(ctx_for(fake_probes(), tmp_path)).status is Status.OK
    old = system.check_python(ctx_for(fake_probes(python=(3, 9, 18)), tmp_path))
    assert old.status is Status.FAIL and old.blocking and "PENDRA_PYTHON" in (old.fix or "")
    new = system.check_python(ctx_for(fake_probes(python=(3, 13, 0)), tmp_path))
    assert new.status is Status.WARN and "3.10-3.12" in new.detail


def test_config_error_is_reported_not_raised(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("api_url = [broken\n", encoding="utf-8")  # migrated
    probes = fake_probes(environ={"PENDRA_HOME": str(tmp_path)})
    ctx = make_context(probes=probes)
    result = system.check_config(ctx)
    assert result.status is Status.FAIL and result.blocking
    assert "config.toml is not valid TOML" in result.detail
    assert ctx.settings.home == tmp_path  # the other checks still run with defaults
    fine = system.check_config(
        make_context(probes=fake_probes(environ={"PENDRA_HOME": str(tmp_path / "x")}))
    )
    assert fine.status is Status.OK and "not created yet" in fine.detail


def test_key_states_never_read_the_key(tmp_path: Path) -> None:
    ctx = ctx_for(fake_probes(), tmp_path)
    missing = system.check_key(ctx)
    assert (missing.status, missing.required) == (Status.WARN, False)
    assert "pendra key set" in (missing.fix or "")
    key = tmp_path / "worker.key"
    key.write_text("pk_secret_value_123", encoding="utf-8")
    key.chmod(0o644)
    loose = system.check_key(ctx)
    assert loose.status is Status.FAIL and loose.blocking and loose.fix == f"chmod 600 {key}"
    key.chmod(0o600)
    ok = system.check_key(ctx)
    assert ok.status is Status.OK and "0600" in ok.detail
    assert all("pk_secret" not in str(r.to_dict()) for r in (missing, loose, ok))


def test_key_in_config_yaml_is_checked_by_the_file_mode(tmp_path: Path) -> None:
    from worker.keys import generate_key

    key = generate_key(console_form=True).text
    config = tmp_path / "config.yaml"
    config.write_text(f"gpu_worker_private_key: {key}\n")
    config.chmod(0o644)
    ctx = make_context(probes=fake_probes(environ={"PENDRA_HOME": str(tmp_path)}))
    loose = system.check_key(ctx)
    assert loose.status is Status.FAIL and loose.fix == f"chmod 600 {config}"
    assert "gpu_worker_private_key in" in loose.detail
    config.chmod(0o600)
    ok = system.check_key(make_context(probes=fake_probes(environ={"PENDRA_HOME": str(tmp_path)})))
    assert ok.status is Status.OK and "0600" in ok.detail
    from_env = system.check_key(
        make_context(
            probes=fake_probes(
                environ={"PENDRA_HOME": str(tmp_path / "x"), "GPU_WORKER_PRIVATE_KEY": key}
            )
        )
    )
    assert from_env.status is Status.OK and "GPU_WORKER_PRIVATE_KEY" in from_env.detail
    assert all(key not in str(r.to_dict()) for r in (loose, ok, from_env))


def test_disk_states(tmp_path: Path) -> None:
    assert system.check_disk(ctx_for(fake_probes(free=100 * GIB), tmp_path)).status is Status.OK
    low = system.check_disk(ctx_for(fake_probes(free=5 * GIB), tmp_path))
    assert low.status is Status.WARN and "PENDRA_MODELS_DIR" in (low.fix or "")
    full = system.check_disk(ctx_for(fake_probes(free=GIB // 2), tmp_path))
    assert full.status is Status.FAIL and full.blocking and "0.5 GiB free" in full.detail


def test_disk_space_measures_nearest_existing_parent(tmp_path: Path) -> None:
    space = disk_space(tmp_path / "not" / "yet" / "models")
    assert space.path == tmp_path and 0 < space.free <= space.total


def test_service_manager_states(tmp_path: Path) -> None:
    assert system.check_service_manager(ctx_for(fake_probes(), tmp_path)).status is Status.OK
    assert (
        system.check_service_manager(ctx_for(fake_probes(host=MAC), tmp_path)).detail == "launchd"
    )
    none = system.check_service_manager(
        ctx_for(fake_probes(host=replace(DEBIAN, systemd=False)), tmp_path)
    )
    assert none.status is Status.WARN and not none.required and "pendra --no-ui" in (none.fix or "")


def test_llama_states(tmp_path: Path) -> None:
    ok = system.check_llama(ctx_for(fake_probes(), tmp_path))
    assert ok.status is Status.OK and ok.detail == "llama-cpp-python 0.3.36, cpu build"
    missing = system.check_llama(ctx_for(fake_probes(llama=None), tmp_path))
    assert missing.status is Status.WARN and not missing.required
    cpu_on_gpu = system.check_llama(
        ctx_for(fake_probes(gpus=[GpuSummary("NVIDIA L4", 24 * GIB)]), tmp_path)
    )
    assert cpu_on_gpu.status is Status.WARN and "PENDRA_ACCEL=cuda" in (cpu_on_gpu.fix or "")


# --- GPU ------------------------------------------------------------------------------------------


def test_gpu_states(tmp_path: Path) -> None:
    gpus = [
        GpuSummary("NVIDIA H100 80GB HBM3", 80 * GIB),
        GpuSummary("NVIDIA H100 80GB HBM3", 80 * GIB),
    ]
    ok = gpu_checks.check_gpu(ctx_for(fake_probes(gpus=gpus, driver="580.82.07"), tmp_path))
    assert ok.status is Status.OK
    assert (
        ok.detail
        == "2 NVIDIA GPUs: NVIDIA H100 80GB HBM3 (80 GiB), NVIDIA H100 80GB HBM3 (80 GiB); "
        "driver 580.82.07"
    )
    none = gpu_checks.check_gpu(ctx_for(fake_probes(), tmp_path))
    assert none.status is Status.WARN and not none.required and "CPU" in none.detail
    no_driver = gpu_checks.check_gpu(ctx_for(fake_probes(host=UBUNTU, pci=True), tmp_path))
    assert (
        no_driver.status is Status.WARN
        and no_driver.fix == "sudo ubuntu-drivers install   # then reboot"
    )
    fedora = gpu_checks.check_gpu(ctx_for(fake_probes(host=FEDORA, pci=True), tmp_path))
    assert "akmod-nvidia" in (fedora.fix or "")
    mac = gpu_checks.check_gpu(ctx_for(fake_probes(host=MAC), tmp_path))
    assert mac.status is Status.OK and "Metal" in mac.detail


# --- Docker ---------------------------------------------------------------------------------------


def docker_ctx(
    tmp_path: Path, info: CommandResult, compose: CommandResult | None = None, **kw: object
) -> CheckContext:
    commands = {DOCKER_VERSION: CommandResult(0, "27.3.1\n"), DOCKER_INFO: info}
    if compose is not None:
        commands[COMPOSE] = compose
    tools = ("docker", *kw.pop("tools", ()))  # type: ignore[misc]
    return ctx_for(fake_probes(commands=commands, tools=tools, **kw), tmp_path)  # type: ignore[arg-type]


def test_docker_missing(tmp_path: Path) -> None:
    ctx = ctx_for(fake_probes(), tmp_path)
    engine = docker_checks.check_docker_engine(ctx)
    assert engine.status is Status.WARN and not engine.required
    assert engine.fix and engine.fix.startswith("sudo apt-get install -y docker.io")
    assert docker_checks.check_docker_daemon(ctx).detail.startswith("not checked")
    assert docker_checks.check_compose(ctx).detail.startswith("not checked")
    mac = docker_checks.check_docker_engine(ctx_for(fake_probes(host=MAC), tmp_path))
    assert mac.fix and "brew install --cask docker" in mac.fix


def test_docker_daemon_states(tmp_path: Path) -> None:
    running = docker_checks.check_docker_daemon(docker_ctx(tmp_path, CommandResult(0, "27.3.1\n")))
    assert running.status is Status.OK and "27.3.1" in running.detail
    denied = docker_checks.check_docker_daemon(
        docker_ctx(
            tmp_path,
            CommandResult(
                1,
                "",
                "permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock",
            ),
        )
    )
    assert denied.status is Status.WARN and denied.fix and "usermod -aG docker alice" in denied.fix
    down = docker_checks.check_docker_daemon(
        docker_ctx(
            tmp_path,
            CommandResult(
                1,
                "",
                "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
                "Is the docker daemon running?",
            ),
        )
    )
    assert down.status is Status.WARN and down.fix == "sudo systemctl enable --now docker"
    hung = docker_checks.check_docker_daemon(
        docker_ctx(tmp_path, CommandResult(-1, "", "", timed_out=True))
    )
    assert hung.status is Status.WARN and "did not answer" in hung.detail
    odd = docker_checks.check_docker_daemon(
        docker_ctx(tmp_path, CommandResult(1, "", "\nsomething odd\n"))
    )
    assert "something odd" in odd.detail
    engine = docker_checks.check_docker_engine(docker_ctx(tmp_path, CommandResult(0, "x")))
    assert engine.detail == "docker client 27.3.1"


def test_compose_states(tmp_path: Path) -> None:
    v2 = docker_checks.check_compose(
        docker_ctx(tmp_path, CommandResult(0, "x"), CommandResult(0, "2.29.7\n"))
    )
    assert v2.status is Status.OK and v2.detail == "docker compose 2.29.7"
    missing = docker_checks.check_compose(
        docker_ctx(tmp_path, CommandResult(0, "x"), CommandResult(1, "", "docker: unknown command"))
    )
    assert missing.status is Status.WARN and "Docker API directly" in missing.detail
    legacy = docker_checks.check_compose(
        docker_ctx(
            tmp_path,
            CommandResult(0, "x"),
            CommandResult(1, "", ""),
            tools=("docker-compose",),
            host=UBUNTU,
        )
    )
    assert (
        "docker-compose v1" in legacy.detail
        and legacy.fix == "sudo apt-get install -y docker-compose-v2"
    )
    assert docker_checks.parse_compose_version("v2.27.1-desktop.1") == (2, 27, 1)
    assert docker_checks.parse_compose_version("nonsense") is None


def test_container_toolkit_states(tmp_path: Path) -> None:
    gpu = [GpuSummary("NVIDIA L4", 24 * GIB)]
    no_gpu = docker_checks.check_container_toolkit(docker_ctx(tmp_path, CommandResult(0, "x")))
    assert no_gpu.status is Status.OK and "not needed" in no_gpu.detail
    with_ctk = docker_checks.check_container_toolkit(
        docker_ctx(tmp_path, CommandResult(0, "x"), gpus=gpu, tools=("nvidia-ctk",))
    )
    assert with_ctk.status is Status.OK and "nvidia-ctk" in with_ctk.detail
    cdi = docker_checks.check_container_toolkit(
        docker_ctx(tmp_path, CommandResult(0, "x"), gpus=gpu, files=("/etc/cdi/nvidia.yaml",))
    )
    assert cdi.status is Status.OK and "/etc/cdi/nvidia.yaml" in cdi.detail
    absent = docker_checks.check_container_toolkit(
        docker_ctx(tmp_path, CommandResult(0, "x"), gpus=gpu, host=FEDORA)
    )
    assert absent.status is Status.WARN
    assert absent.fix and absent.fix.startswith("sudo dnf install -y nvidia-container-toolkit")
    no_docker = docker_checks.check_container_toolkit(ctx_for(fake_probes(gpus=gpu), tmp_path))
    assert no_docker.detail.startswith("not checked")


# --- Control plane --------------------------------------------------------------------------------


def test_control_plane_states(tmp_path: Path) -> None:
    ok = network.check_control_plane(ctx_for(fake_probes(), tmp_path))
    assert ok.status is Status.OK and ok.required
    dns = network.check_control_plane(
        ctx_for(fake_probes(http=HttpResult(error="dns", message="x")), tmp_path)
    )
    assert dns.status is Status.FAIL and dns.blocking and "cannot resolve api.example" in dns.detail
    assert "pendra sandbox" in (dns.fix or "")
    setup = network.check_control_plane(
        ctx_for(fake_probes(http=HttpResult(error="timeout")), tmp_path, serving=False)
    )
    assert setup.status is Status.FAIL and not setup.blocking and "later" in setup.detail
    tls = network.check_control_plane(
        ctx_for(fake_probes(http=HttpResult(error="tls", message="bad cert")), tmp_path)
    )
    assert "clock" in (tls.fix or "")
    down = network.check_control_plane(ctx_for(fake_probes(http=HttpResult(status=503)), tmp_path))
    assert down.status is Status.WARN
    proxied = network.check_control_plane(
        ctx_for(fake_probes(environ={"HTTPS_PROXY": "http://proxy:3128"}), tmp_path)
    )
    assert "via HTTPS_PROXY=http://proxy:3128" in proxied.detail


@pytest.fixture
def local_api() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/api/v1/catalogue" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"version": 1, "models": []}')

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_real_http_probe_against_local_server(local_api: str) -> None:
    assert http_get(f"{local_api}/api/v1/catalogue", 2).status == 200
    assert http_get(f"{local_api}/other", 2).status == 404
    refused = http_get("http://127.0.0.1:9/api/v1/catalogue", 2)
    assert refused.error == "refused"


# --- The whole run --------------------------------------------------------------------------------


def test_run_checks_order_and_exit_code(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, models_dir=tmp_path / "m", api_url="https://api.example")
    results = run_checks(settings, fake_probes())
    assert [r.id for r in results] == [
        "os",
        "python",
        "config",
        "worker_key",
        "disk",
        "llama_cpp",
        "gpu",
        "docker_engine",
        "docker_daemon",
        "docker_compose",
        "nvidia_container_toolkit",
        "service_manager",
        "control_plane",
    ]
    assert len(results) == len(CHECKS)
    assert exit_code(results) == 0
    offline = run_checks(settings, fake_probes(http=HttpResult(error="dns")))
    assert exit_code(offline) == 1
    assert (
        exit_code(run_checks(settings, fake_probes(http=HttpResult(error="dns")), serving=False))
        == 0
    )
    text = render(offline)
    assert "Not ready: 1 required check(s) failed: Control plane reachable." in text


def test_a_crashing_probe_becomes_a_failed_check(tmp_path: Path) -> None:
    probes = fake_probes()

    def boom() -> list[GpuSummary]:
        raise RuntimeError("NVML exploded")

    probes.gpus = boom
    settings = Settings(home=tmp_path, models_dir=tmp_path / "m")
    results = {r.id: r for r in run_checks(settings, probes)}
    assert results["gpu"].status is Status.FAIL and "NVML exploded" in results["gpu"].detail
    assert not results["gpu"].required


def test_real_checks_on_this_box(local_api: str, pendra_home: Path) -> None:
    # This machine: Debian, no GPU, no Docker daemon, no internet. The control plane here is a
    # local HTTP server, so the run must come out ready with GPU/Docker as warnings.
    probes = Probes.real()
    probes.environ = {"PENDRA_HOME": str(pendra_home), "PENDRA_API_URL": local_api}
    results = {r.id: r for r in run_checks(probes=probes)}
    assert results["os"].status is Status.OK
    assert results["control_plane"].status is Status.OK
    if not results["gpu"].detail.startswith(tuple("123456789")):
        assert results["gpu"].status is Status.WARN and not results["gpu"].required
    for key in ("docker_engine", "docker_daemon", "docker_compose"):
        assert results[key].status in {Status.OK, Status.WARN} and not results[key].required
    assert exit_code(list(results.values())) == 0


def test_pendra_doctor_real_run(clean_env: dict[str, str]) -> None:
    """`pendra doctor` for real: no internet here, so the control plane is the one failure."""
    env = {**clean_env, "PENDRA_API_URL": "https://api.pendra.invalid"}
    done = subprocess.run(
        [sys.executable, "-m", "worker", "doctor", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=90,
        cwd=ROOT,
    )
    document = json.loads(done.stdout)
    checks = {c["id"]: c for c in document["checks"]}
    assert set(checks["os"]) == {"id", "title", "status", "required", "detail", "fix"}
    assert checks["control_plane"]["status"] == "fail"
    assert document["required_failed"] == ["control_plane"]
    assert done.returncode == 1 and document["ok"] is False
    assert "Traceback" not in done.stderr
    human = subprocess.run(
        [sys.executable, "-m", "worker", "doctor", "--setup"],
        capture_output=True,
        text=True,
        env={**env, "PYTHONIOENCODING": "utf-8"},
        timeout=90,
        cwd=ROOT,
    )
    assert human.returncode == 0, human.stdout + human.stderr
    assert (
        "Control plane reachable" in human.stdout
        and "cannot resolve api.pendra.invalid" in human.stdout
    )
    assert "→ allow outbound HTTPS" in human.stdout
